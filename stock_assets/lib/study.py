"""What every process of a search shares: the space, the study's storage, sampler, pruner,
fingerprint and objective.

`search` (the caller's process) and `search_workers` (worker processes) both import this module
and not each other's internals, so there is no import cycle. Nothing here imports torch or optuna
at module level: the code location reads `SearchSpace`'s defaults for the Launchpad
(defs/training/config.py) without paying for them (docs/decisions.md, "In-process execution").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass

import numpy as np

# The names of lib/models.py's ARCHITECTURES, here so settings and run config know them without
# importing torch (a test keeps them equal). The networks train on the pinball loss over the forecast
# levels, so the loss is not searched (docs/decisions.md, "Forecasts are distributions").
ARCHITECTURE_NAMES = ("lstm", "lstm_attention", "ticker_attention", "pooled_lstm")


@dataclass(frozen=True)
class SearchSpace:
    """The searched hyperparameters. These defaults are the Launchpad's too (defs/training/config.py)."""

    architectures: tuple[str, ...] = ARCHITECTURE_NAMES
    hidden_sizes: tuple[int, ...] = (16, 32, 64)
    max_layers: int = 2
    max_dropout: float = 0.3
    learning_rate: tuple[float, float] = (3e-4, 3e-3)
    batch_sizes: tuple[int, ...] = (32, 64)
    sequence_lengths: tuple[int, ...] = (10, 20)

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
    }


# The arrays a trial trains and validates on (`fit_model`).
SEARCHED_ARRAYS = ("scaled_features", "scaled_targets", "train", "validation", "levels")  # levels: when given
FINGERPRINT_ATTR = "search_fingerprint"


def search_fingerprint(arrays: dict[str, np.ndarray], space: SearchSpace, budget: SearchBudget) -> tuple[str, dict]:
    """(short hash, description) of what a trial's value depends on: the search space, the epochs
    budget and the data. Not n_trials, the timeout or the seed: changing those resumes a search."""
    data = hashlib.sha256()
    for key in (k for k in SEARCHED_ARRAYS if k in arrays):
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
# A trial whose process died (SIGKILL, OOM, a lost node) stops sending heartbeats; once
# GRACE_PERIOD_SECONDS passed, the next trial started on the study marks it failed and queues a
# retry with the same parameters (at most MAX_RETRIES times). One heartbeat per 10 s per running
# trial costs nothing next to training.
HEARTBEAT_INTERVAL_SECONDS = 10
GRACE_PERIOD_SECONDS = 30
MAX_RETRIES = 2


def open_storage(
    storage_url,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_SECONDS,
    grace_period: int = GRACE_PERIOD_SECONDS,
):
    """The Optuna RDB storage of `storage_url` (an already opened storage is returned as is), with
    heartbeats and retries of abandoned trials (Optuna's own mechanism, see above).

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
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8 (quiet by default)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            storage_url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES),
        )


def make_sampler(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def make_pruner():
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)


def make_objective(space: SearchSpace, budget: SearchBudget, arrays: dict[str, np.ndarray], worker_attrs: dict):
    """The trial function: suggest, fit with every epoch's validation loss reported to the pruner."""
    import optuna

    from stock_assets.lib import fitting

    def objective(trial) -> float:
        for key, value in worker_attrs.items():
            trial.set_user_attr(key, value)
        params = suggest_params(trial, space)

        def report(epoch: int, train_loss: float, val_loss: float) -> None:
            trial.set_user_attr(f"train_loss_{epoch}", train_loss)
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (val loss {val_loss:.4f})")

        result = fitting.fit_model(
            arrays, params, max_epochs=budget.max_epochs, patience=budget.patience, seed=budget.seed, on_epoch=report
        )
        trial.set_user_attr("best_epoch", result.best_epoch)
        return result.best_val_loss

    return objective
