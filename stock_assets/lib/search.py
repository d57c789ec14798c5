"""Hyperparameter search with Optuna on the compact training sets of `datasets`.

The objective is the validation loss only (never the holdout); the pruner is fed every epoch's
validation loss; the study lives in relational storage so it can resume or run several workers.
A study only ever holds trials of one search (space, epochs budget, data): see `run_study`.

Several workers (`run_study(..., workers=N)`) are processes of `search_workers`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from stock_assets.lib.fitting import LOSSES, fit_model
from stock_assets.lib.models import ARCHITECTURES


@dataclass(frozen=True)
class SearchSpace:
    architectures: tuple[str, ...] = ARCHITECTURES
    hidden_sizes: tuple[int, ...] = (16, 32, 64)
    max_layers: int = 2
    max_dropout: float = 0.3
    learning_rate: tuple[float, float] = (3e-4, 3e-3)
    batch_sizes: tuple[int, ...] = (32, 64)
    sequence_lengths: tuple[int, ...] = (10, 20)
    losses: tuple[str, ...] = LOSSES  # training losses; the objective stays validation MSE

    @property
    def max_sequence_length(self) -> int:
        return max(self.sequence_lengths)


@dataclass
class SearchBudget:
    n_trials: int
    timeout_seconds: float
    max_epochs: int
    patience: int
    seed: int = 7


def suggest_params(trial, space: SearchSpace) -> dict:
    return {
        "architecture": trial.suggest_categorical("architecture", list(space.architectures)),
        "hidden_size": trial.suggest_categorical("hidden_size", list(space.hidden_sizes)),
        "num_layers": trial.suggest_int("num_layers", 1, space.max_layers),
        "dropout": trial.suggest_float("dropout", 0.0, space.max_dropout),
        "learning_rate": trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        "batch_size": trial.suggest_categorical("batch_size", list(space.batch_sizes)),
        "sequence_length": trial.suggest_categorical("sequence_length", list(space.sequence_lengths)),
        "loss": trial.suggest_categorical("loss", list(space.losses)),
    }


# The arrays a trial trains and validates on (`fit_model`).
SEARCHED_ARRAYS = ("scaled_features", "scaled_targets", "train", "validation")
FINGERPRINT_ATTR = "search_fingerprint"


def search_fingerprint(arrays: dict[str, np.ndarray], space: SearchSpace, budget: SearchBudget) -> tuple[str, dict]:
    """(short hash, description) of what a trial's value depends on: the search space, the epochs
    budget and the data. Not n_trials, the timeout or the seed: changing those resumes a search."""
    data = hashlib.sha256()
    for key in SEARCHED_ARRAYS:
        array = np.ascontiguousarray(arrays[key])
        data.update(f"{key}{array.dtype}{array.shape}".encode())
        data.update(array.tobytes())
    described = {
        "space": dataclasses.asdict(space),
        "max_epochs": budget.max_epochs,
        "patience": budget.patience,
        "data_sha256": data.hexdigest(),
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True, default=list).encode()).hexdigest()
    return digest[:8], described


SQLITE_BUSY_TIMEOUT_SECONDS = 30


def open_storage(storage_url):
    """The Optuna RDB storage of `storage_url` (an already opened storage is returned as is).

    SQLite gets a 30 s busy timeout instead of sqlite3's 5 s, so that with several worker processes
    writing trials to one file a writer waits longer for the others before failing with "database
    is locked" (not seen here with 2, 4 or 8 workers on 2 cores: a guard for slower disks and more
    workers). One place for the in-process and the worker path."""
    import optuna

    if not isinstance(storage_url, str):
        return storage_url
    engine_kwargs = {}
    if storage_url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}}
    return optuna.storages.RDBStorage(storage_url, engine_kwargs=engine_kwargs)


def make_sampler(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def make_pruner():
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)


def open_study(storage_url, study_name: str, fingerprint: str, described: dict, budget: SearchBudget):
    """`study_name` if it is new or holds this search, else `<study_name>-<fingerprint>`.

    A partition searched again with another space (or epochs budget, or data) thus starts a study
    of its own instead of mixing trials of two searches, and returning to an earlier search resumes
    it. Each study records its fingerprint and search as user attributes. `storage_url` is a URL
    or a storage from `open_storage`."""
    import optuna

    storage = open_storage(storage_url)
    for name in (study_name, f"{study_name}-{fingerprint}"):
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="minimize",
            sampler=make_sampler(budget.seed),
            pruner=make_pruner(),
            load_if_exists=True,
        )
        stamped = study.user_attrs.get(FINGERPRINT_ATTR)
        if stamped is None and not study.trials:
            study.set_user_attr(FINGERPRINT_ATTR, fingerprint)
            study.set_user_attr("search", json.loads(json.dumps(described, default=list)))
            return study
        if stamped == fingerprint:
            return study
    raise RuntimeError(
        f"Optuna studies {study_name} and {name} both hold other searches than this one ({fingerprint}); "
        f"delete study {name} (`optuna delete-study --study-name {name} --storage <optuna_storage>`) and rerun"
    )


def make_objective(space: SearchSpace, budget: SearchBudget, arrays: dict[str, np.ndarray], worker_attrs: dict):
    """The trial function: suggest, fit with every epoch's validation loss reported to the pruner."""
    import optuna

    def objective(trial) -> float:
        for key, value in worker_attrs.items():
            trial.set_user_attr(key, value)
        params = suggest_params(trial, space)

        def report(epoch: int, train_loss: float, val_loss: float) -> None:
            trial.set_user_attr(f"train_loss_{epoch}", train_loss)
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (val loss {val_loss:.4f})")

        result = fit_model(
            arrays, params, max_epochs=budget.max_epochs, patience=budget.patience, seed=budget.seed, on_epoch=report
        )
        trial.set_user_attr("best_epoch", result.best_epoch)
        return result.best_val_loss

    return objective


def run_study(
    arrays: dict[str, np.ndarray],
    space: SearchSpace,
    budget: SearchBudget,
    storage_url: str,
    study_name: str,
    on_trial: Callable | None = None,
    workers: int = 1,
):
    """Create or resume the study of this search (`open_study`: `study_name`, or `study_name` with
    the search's fingerprint when `study_name` holds another search) and run the trials still
    missing from `budget.n_trials`. The study used is `study.study_name`.

    With `workers` > 1 the missing trials are shared out among that many worker processes
    (`run_workers`); `on_trial(study_name, trial)` then runs here, after they finished, for each
    trial they finished, in trial-number order. With 1 worker it runs after each trial, in process."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url)
    study = open_study(storage, study_name, *search_fingerprint(arrays, space, budget), budget)
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = budget.n_trials - len([t for t in study.trials if t.state in finished])

    if remaining > 0 and workers > 1:
        from stock_assets.lib.search_workers import run_workers

        run_workers(arrays, budget, storage_url, study, remaining, workers, on_trial)
    elif remaining > 0:
        callbacks = [lambda study, trial: on_trial(study.study_name, trial)] if on_trial else []
        objective = make_objective(space, budget, arrays, {})
        study.optimize(objective, n_trials=remaining, timeout=budget.timeout_seconds, callbacks=callbacks)
    if not [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]:
        raise RuntimeError(
            f"study {study.study_name}: no trial completed (all pruned or failed); raise n_trials or max_epochs"
        )
    return study


def study_summary(study) -> dict:
    import optuna

    states = [t.state for t in study.trials]
    return {
        "study_name": study.study_name,
        "n_trials": len(states),
        "n_complete": states.count(optuna.trial.TrialState.COMPLETE),
        "n_pruned": states.count(optuna.trial.TrialState.PRUNED),
        "n_failed": states.count(optuna.trial.TrialState.FAIL),
        "best_trial": study.best_trial.number,
        "best_value": float(study.best_value),
    }
