"""Hyperparameter search with Optuna on the compact training sets of `datasets`.

The objective is the validation loss only (never the holdout); the pruner is fed every epoch's
validation loss; the study lives in relational storage so it can resume or run several workers.
A study only ever holds trials of one search (space, epochs budget, data): see `run_study`.

Several workers (`run_study(..., workers=N)`) are processes of this module's entry point
(`python -m stock_assets.lib.search`, `worker_main`), each loading the same study by name from the
same storage. The same entry point lets a worker on another machine join a study:

    STOCK_ASSETS_OPTUNA_STORAGE=postgresql+psycopg2://... \
        python -m stock_assets.lib.search --study NAME --arrays scaled_sets.npz --n-trials 4 --seed 8
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stock_assets.lib.models import ARCHITECTURES
from stock_assets.lib.training import LOSSES, fit_model


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


def _sampler(seed: int):
    import optuna

    return optuna.samplers.TPESampler(seed=seed)


def _pruner():
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
            sampler=_sampler(budget.seed),
            pruner=_pruner(),
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


def _objective(space: SearchSpace, budget: SearchBudget, arrays: dict[str, np.ndarray], worker_attrs: dict):
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
        run_workers(arrays, budget, storage_url, study, remaining, workers, on_trial)
    elif remaining > 0:
        callbacks = [lambda study, trial: on_trial(study.study_name, trial)] if on_trial else []
        objective = _objective(space, budget, arrays, {})
        study.optimize(objective, n_trials=remaining, timeout=budget.timeout_seconds, callbacks=callbacks)
    if not [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]:
        raise RuntimeError(
            f"study {study.study_name}: no trial completed (all pruned or failed); raise n_trials or max_epochs"
        )
    return study


# --- several workers ----------------------------------------------------------------------------
# The storage URL (it may hold a password) reaches a worker through this environment variable,
# never its argument list or a log line. A worker started by hand reads STOCK_ASSETS_OPTUNA_STORAGE.
WORKER_STORAGE_ENV = "SEARCH_WORKER_STORAGE_URL"
WORKER_PID_ATTR = "worker_pid"


def cgroup_cpu_limit(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs a container's CFS quota allows (docker --cpus, a Kubernetes CPU limit), None without one.

    The CPU affinity does not show such a quota: a pod limited to 2 CPUs on a 32-core node would
    otherwise start 32 // workers torch threads per worker. cgroup v2 `cpu.max`, else v1."""
    try:
        if (root / "cpu.max").exists():
            quota, period = (root / "cpu.max").read_text().split()[:2]
        else:
            v1 = root / "cpu"
            quota, period = (v1 / "cpu.cfs_quota_us").read_text(), (v1 / "cpu.cfs_period_us").read_text()
        quota, period = quota.strip(), period.strip()
        if quota in ("max", "-1") or float(period) <= 0:
            return None
        return float(quota) / float(period)
    except (OSError, ValueError):
        return None


def usable_cores() -> int:
    """CPUs this process may use: its affinity, capped by a container's CPU quota."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, int(limit))) if limit else cores


def trial_shares(remaining: int, workers: int) -> list[int]:
    """`remaining` trials split as evenly as possible, one share per worker that gets any."""
    workers = min(workers, remaining)
    return [remaining // workers + (1 if i < remaining % workers else 0) for i in range(workers)]


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen
    stderr: Path
    error: Path

    def failure(self) -> str:
        """The worker's own error message, else the end of its stderr."""
        if self.error.exists() and self.error.read_text().strip():
            return self.error.read_text().strip()
        tail = self.stderr.read_text(errors="replace").strip().splitlines()[-5:] if self.stderr.exists() else []
        return " | ".join(tail) or "no error message"


def run_workers(
    arrays: dict[str, np.ndarray],
    budget: SearchBudget,
    storage_url: str,
    study,
    remaining: int,
    workers: int,
    on_trial: Callable | None = None,
) -> None:
    """Run `remaining` trials of `study` in `workers` processes and wait for them.

    Each worker loads the study by name with its own sampler seed (`budget.seed` + its index:
    with one seed every TPE sampler would propose the same parameters), runs its share of the
    trials (`trial_shares`: the total is exact) within `budget.timeout_seconds`, and trains with
    its share of the cores. The arrays reach the workers as an .npz file, read back without
    pickle. When a worker fails the others are stopped, their unfinished trials marked failed,
    the finished ones still reported to `on_trial`, and a RuntimeError carries the worker's error."""
    shares = trial_shares(remaining, workers)
    threads = max(1, usable_cores() // len(shares))
    before = len(study.trials)
    running: list[_Worker] = []
    with tempfile.TemporaryDirectory(prefix="search-workers-") as tmp:
        folder = Path(tmp)
        np.savez(folder / "arrays.npz", **{key: np.asarray(arrays[key]) for key in SEARCHED_ARRAYS})
        env = {
            **os.environ,
            WORKER_STORAGE_ENV: storage_url,
            "OMP_NUM_THREADS": str(threads),
            "MKL_NUM_THREADS": str(threads),
        }
        failed: list[tuple[_Worker, str]] = []
        try:
            for index, share in enumerate(shares):
                stderr, error = folder / f"worker-{index}.stderr", folder / f"worker-{index}.error"
                argv = [
                    sys.executable, "-m", "stock_assets.lib.search",
                    "--study", study.study_name,
                    "--arrays", str(folder / "arrays.npz"),
                    "--n-trials", str(share),
                    "--seed", str(budget.seed + index),
                    "--timeout", str(budget.timeout_seconds),
                    "--threads", str(threads),
                    "--storage-env", WORKER_STORAGE_ENV,
                    "--error-file", str(error),
                ]  # fmt: skip
                with open(stderr, "wb") as err:
                    process = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
                running.append(_Worker(index, process, stderr, error))
            while any(w.process.poll() is None for w in running) and not failed:
                failed = [(w, w.failure()) for w in running if w.process.poll() not in (None, 0)]
                time.sleep(0.2)
            failed = failed or [(w, w.failure()) for w in running if w.process.returncode != 0]
        finally:
            for worker in running:  # a failed sibling, or this process interrupted
                if worker.process.poll() is None:
                    worker.process.terminate()
            for worker in running:
                try:
                    worker.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    worker.process.kill()
                    worker.process.wait()
            _fail_abandoned_trials(storage_url, study, {w.process.pid for w in running})
    if on_trial:
        for trial in sorted(study.trials[before:], key=lambda t: t.number):
            if trial.state.is_finished():
                on_trial(study.study_name, trial)
    if failed:
        worker, message = failed[0]
        raise RuntimeError(
            f"search worker {worker.index} of {len(shares)} (study {study.study_name}) failed "
            f"with exit code {worker.process.returncode}: {message}"
        )


def _fail_abandoned_trials(storage_url: str, study, pids: set[int]) -> None:
    """Trials our stopped workers left RUNNING would stay so forever: mark them failed."""
    import optuna

    abandoned = [
        trial
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        if trial.user_attrs.get(WORKER_PID_ATTR) in pids
    ]
    if not abandoned:
        return
    storage = open_storage(storage_url)
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in abandoned:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)


def _space_and_budget(study, n_trials: int, timeout: float, seed: int) -> tuple[SearchSpace, SearchBudget]:
    """The search a study records (`open_study`'s "search" user attribute)."""
    described = study.user_attrs.get("search")
    if not described:
        raise RuntimeError(f"study {study.study_name} records no search: create it with run_study first")
    space = SearchSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in described["space"].items()})
    budget = SearchBudget(n_trials, timeout, described["max_epochs"], described["patience"], seed)
    return space, budget


def worker_main(argv: list[str] | None = None) -> int:
    """One search worker: load the study, check it holds this search on these arrays, run trials."""
    parser = argparse.ArgumentParser(prog="python -m stock_assets.lib.search", description=worker_main.__doc__)
    parser.add_argument("--study", required=True, help="name of an existing study (run_study created it)")
    parser.add_argument("--arrays", required=True, help=".npz holding " + ", ".join(SEARCHED_ARRAYS))
    parser.add_argument("--n-trials", type=int, required=True, help="trials this worker runs")
    parser.add_argument("--seed", type=int, required=True, help="sampler seed, distinct per worker")
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all usable cores)")
    parser.add_argument("--storage-env", default="STOCK_ASSETS_OPTUNA_STORAGE", help="variable holding the URL")
    parser.add_argument("--error-file", default=None, help="where to write the error message on failure")
    args = parser.parse_args(argv)
    try:
        import optuna
        import torch

        torch.set_num_threads(args.threads or usable_cores())
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage_url = os.environ.get(args.storage_env)
        if not storage_url:
            raise RuntimeError(f"environment variable {args.storage_env} (the Optuna storage URL) is not set")
        study = optuna.load_study(
            study_name=args.study, storage=open_storage(storage_url), sampler=_sampler(args.seed), pruner=_pruner()
        )
        with np.load(args.arrays, allow_pickle=False) as data:
            arrays = {key: data[key] for key in SEARCHED_ARRAYS}
        space, budget = _space_and_budget(study, args.n_trials, args.timeout, args.seed)
        fingerprint = search_fingerprint(arrays, space, budget)[0]
        if study.user_attrs.get(FINGERPRINT_ATTR) != fingerprint:
            raise RuntimeError(
                f"study {args.study} holds search {study.user_attrs.get(FINGERPRINT_ATTR)}, "
                f"not {fingerprint} (other data or space): refusing to mix trials"
            )
        objective = _objective(space, budget, arrays, {WORKER_PID_ATTR: os.getpid()})
        study.optimize(objective, n_trials=args.n_trials, timeout=args.timeout)
    except BaseException as error:
        traceback.print_exc()
        if args.error_file:
            Path(args.error_file).write_text(f"{type(error).__name__}: {error}")
        return 1
    return 0


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


if __name__ == "__main__":
    sys.exit(worker_main())
