"""Hyperparameter search with Optuna on the compact training sets of `datasets`.

The objective is the validation loss only (never the holdout); the pruner is fed every epoch's
validation loss; the study lives in relational storage so it can resume or run several workers.
A study only ever holds trials of one search (space, epochs budget, data): see `run_study`.

Several workers (`run_study(..., workers=N)`) are processes of `search_workers`; what both
share (space, storage, fingerprint, objective) is in `study`. A trial abandoned by a dead process is
retried with the same parameters by the next run (heartbeats: `study.open_storage`).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np

from stock_assets.lib.redaction import masked_url
from stock_assets.lib.search_workers import run_workers
from stock_assets.lib.study import (
    FINGERPRINT_ATTR,
    SEARCHED_ARRAYS,
    SearchBudget,
    SearchSpace,
    make_objective,
    make_pruner,
    make_sampler,
    open_storage,
    search_fingerprint,
    suggest_params,
)

# The search's shared parts live in lib/study.py; these names stay importable from here.
__all__ = [
    "FINGERPRINT_ATTR",
    "SEARCHED_ARRAYS",
    "SearchBudget",
    "SearchSpace",
    "make_objective",
    "open_storage",
    "open_study",
    "run_study",
    "search_fingerprint",
    "study_summary",
    "suggest_params",
]


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


class StudyStorageError(RuntimeError):
    """The Optuna storage failed during a search (removed, moved, read-only, unreachable)."""


def storage_problem(storage_url: str, exc: Exception) -> str | None:
    """What to tell the user when a search failed because of its storage, else None (not a storage
    failure). Optuna answers a SQLite file removed mid-search with "AssertionError: Should not reach." and
    its heartbeat thread with a StorageInternalError; neither says what happened."""
    import optuna
    import sqlalchemy as sa

    storage_errors = (optuna.exceptions.StorageInternalError, sa.exc.SQLAlchemyError)
    gone = None
    if isinstance(storage_url, str) and storage_url.startswith("sqlite:///"):
        import os

        path = storage_url.removeprefix("sqlite:///")
        if not os.path.exists(path):
            gone = f"its file {path} no longer exists"
        elif not os.access(path, os.W_OK):
            gone = f"its file {path} is not writable"
    if gone is None and not isinstance(exc, storage_errors):
        return None
    where = masked_url(storage_url) if isinstance(storage_url, str) else "the study storage"
    cause = gone or f"{type(exc).__name__}: {str(exc)[:200]}"
    return (
        f"the Optuna study storage {where} failed during the search ({cause}): it was removed, moved, made "
        "read-only or became unreachable while trials ran. Restore it, or point "
        "settings optuna_storage (STOCK_ASSETS_OPTUNA_STORAGE) at a writable store, then rerun retraining_job: "
        "the search resumes from the trials stored there (a new, empty store starts the search again)"
    )


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

    try:
        if remaining > 0 and workers > 1:
            run_workers(arrays, budget, storage_url, study, remaining, workers, on_trial)
        elif remaining > 0:
            callbacks = [lambda study, trial: on_trial(study.study_name, trial)] if on_trial else []
            objective = make_objective(space, budget, arrays, {})
            study.optimize(objective, n_trials=remaining, timeout=budget.timeout_seconds, callbacks=callbacks)
    except Exception as exc:
        problem = storage_problem(storage_url, exc)
        if problem is None:
            raise
        raise StudyStorageError(problem) from exc
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
