"""Several search workers: processes that share one Optuna study in the relational storage.

`run_study(..., workers=N)` starts N processes of this module's entry point (`worker_main`), each
loading the same study by name with its own sampler seed and its share of the cores and trials
(docs/decisions.md, "Several search workers"). The same entry point lets a worker on another
machine join a study:

    STOCK_ASSETS_OPTUNA_STORAGE=postgresql+psycopg2://... \
        python -m stock_assets.lib.search_workers --study NAME --arrays scaled_sets.npz --n-trials 4 --seed 8
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
)

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
    """CPUs this process may use: its affinity (`os.process_cpu_count`, Python 3.13+), capped by a
    container's CPU quota."""
    if hasattr(os, "process_cpu_count"):
        cores = os.process_cpu_count() or 1
    elif hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
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
    pickle. When a worker fails the others are stopped (SIGTERM: each marks its running trial
    failed, `worker_main`), the finished trials are still reported to `on_trial`, and a
    RuntimeError carries the worker's error. A worker that had to be killed leaves its trial to
    the heartbeat: the next run fails and retries it (`study.open_storage`)."""
    shares = trial_shares(remaining, workers)
    threads = max(1, usable_cores() // len(shares))
    before = len(study.trials)
    running: list[_Worker] = []
    with tempfile.TemporaryDirectory(prefix="search-workers-") as tmp:
        folder = Path(tmp)
        np.savez(folder / "arrays.npz", **{key: np.asarray(arrays[key]) for key in SEARCHED_ARRAYS if key in arrays})
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
                    sys.executable, "-m", "stock_assets.lib.search_workers",
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


def _space_and_budget(study, n_trials: int, timeout: float, seed: int) -> tuple[SearchSpace, SearchBudget]:
    """The search a study records (`open_study`'s "search" user attribute)."""
    described = study.user_attrs.get("search")
    if not described:
        raise RuntimeError(f"study {study.study_name} records no search: create it with run_study first")
    space = SearchSpace(**{k: tuple(v) if isinstance(v, list) else v for k, v in described["space"].items()})
    budget = SearchBudget(n_trials, timeout, described["max_epochs"], described["patience"], seed)
    return space, budget


def _interrupt(signum, frame):
    """SIGTERM as KeyboardInterrupt, which Optuna catches to mark the running trial FAIL."""
    raise KeyboardInterrupt(f"search worker stopped by signal {signum}")


def worker_main(argv: list[str] | None = None) -> int:
    """One search worker: load the study, check it holds this search on these arrays, run trials."""
    parser = argparse.ArgumentParser(prog="python -m stock_assets.lib.search_workers", description=worker_main.__doc__)
    parser.add_argument("--study", required=True, help="name of an existing study (run_study created it)")
    parser.add_argument("--arrays", required=True, help=".npz holding " + ", ".join(SEARCHED_ARRAYS))
    parser.add_argument("--n-trials", type=int, required=True, help="trials this worker runs")
    parser.add_argument("--seed", type=int, required=True, help="sampler seed, distinct per worker")
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which no new trial starts")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all usable cores)")
    parser.add_argument("--storage-env", default="STOCK_ASSETS_OPTUNA_STORAGE", help="variable holding the URL")
    parser.add_argument("--error-file", default=None, help="where to write the error message on failure")
    args = parser.parse_args(argv)
    if argv is None:  # the worker process (not a call in a test): stopping it fails its running trial
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        import optuna
        import torch

        torch.set_num_threads(args.threads or usable_cores())
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage_url = os.environ.get(args.storage_env)
        if not storage_url:
            raise RuntimeError(f"environment variable {args.storage_env} (the Optuna storage URL) is not set")
        study = optuna.load_study(
            study_name=args.study,
            storage=open_storage(storage_url),
            sampler=make_sampler(args.seed),
            pruner=make_pruner(),
        )
        with np.load(args.arrays, allow_pickle=False) as data:
            arrays = {key: data[key] for key in SEARCHED_ARRAYS if key in data}
        space, budget = _space_and_budget(study, args.n_trials, args.timeout, args.seed)
        fingerprint = search_fingerprint(arrays, space, budget)[0]
        if study.user_attrs.get(FINGERPRINT_ATTR) != fingerprint:
            raise RuntimeError(
                f"study {args.study} holds search {study.user_attrs.get(FINGERPRINT_ATTR)}, "
                f"not {fingerprint} (other data or space): refusing to mix trials"
            )
        objective = make_objective(space, budget, arrays, {WORKER_PID_ATTR: os.getpid()})
        study.optimize(objective, n_trials=args.n_trials, timeout=args.timeout)
    except BaseException as error:
        traceback.print_exc()
        if args.error_file:
            Path(args.error_file).write_text(f"{type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
