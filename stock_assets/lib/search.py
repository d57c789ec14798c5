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
