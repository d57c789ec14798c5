"""Optuna search in 1 vs 2 worker processes (`search_workers`) on this machine.

The same search each time: the real `scaled_sets` of the bundled sample's 4 tickers as of one
session (features and training sets built by the project's lib functions, exactly as the
`processed_features` and `scaled_sets` assets do), the settings' search space and seed, a fresh
SQLite study per row. Prints wall seconds, trials finished / pruned, best validation loss,
trials per minute and the speed-up over 1 worker.

    python benchmarks/search_workers.py [--workers 1,2] [--trials 8] [--epochs 10] [--partition 2013-01-15]
                                        [--no-thread-control]

With 1 worker the search runs in this process (torch on all usable cores); with N workers each is a
process with cores // N torch threads. A control row runs 1 worker in process with 1 torch thread:
on a machine shared with other work, torch's threads on all cores can slow down badly (they wait
for cores that others hold), and the control separates that from the gain of parallel processes.
Worker 0 samples with the seed, worker i with seed + i, so the runs draw partly different
parameters: they compare equal trial budgets, not identical trials.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def scaled_sets(partition: str):
    """(arrays, settings) of the `scaled_sets` asset for `partition`, from the bundled sample."""
    from stock_assets.lib import trading_calendar
    from stock_assets.lib.datasets import build_training_sets
    from stock_assets.lib.indicators import FEATURE_COLUMNS, compute_features
    from stock_assets.lib.sources import load_sample_prices
    from stock_assets.settings import load_settings

    settings = load_settings(environ={})  # the shipped settings.yaml, whatever the shell exports
    training, tickers = settings.training, list(settings.tickers)
    sessions = [d.isoformat() for d in trading_calendar.sessions_between(settings.start_date, partition)]
    prices = load_sample_prices(max_abs_log_return=settings.max_abs_log_return)
    prices = prices[prices["ticker"].isin(tickers) & (prices["date"] <= partition)].reset_index(drop=True)
    targets = sessions[-training.training_window :]
    features = compute_features(prices, sessions, targets, tickers, settings.feature_lookback)
    _, arrays = build_training_sets(
        features, prices, tickers, FEATURE_COLUMNS, training.training_window, max(training.sequence_lengths)
    )
    return arrays, settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--partition", default="2013-01-15")
    parser.add_argument("--no-thread-control", action="store_true", help="skip the 1-worker, 1-thread row")
    args = parser.parse_args()
    import torch

    from stock_assets.lib.search import SearchBudget, SearchSpace, run_study, study_summary
    from stock_assets.lib.search_workers import usable_cores

    started = time.perf_counter()
    arrays, settings = scaled_sets(args.partition)
    training = settings.training
    prepared = time.perf_counter() - started
    space = SearchSpace(sequence_lengths=tuple(training.sequence_lengths))
    budget = SearchBudget(args.trials, 3600, args.epochs, training.patience, training.seed)
    print(
        f"scaled_sets {args.partition}: {len(arrays['dates'])} sessions x {arrays['scaled_features'].shape[1]} tickers "
        f"x {arrays['scaled_features'].shape[2]} features, {len(arrays['train'])} train / "
        f"{len(arrays['validation'])} validation samples (built in {prepared:.1f} s); "
        f"{usable_cores()} usable cores, load average {os.getloadavg()[0]:.2f} at start",
        file=sys.stderr,
    )
    default_threads = torch.get_num_threads()
    cases = [(int(w), None) for w in args.workers.split(",")]
    if not args.no_thread_control and default_threads > 1:
        cases.insert(1, (1, 1))
    rows = []
    for workers, threads in cases:
        label = f"{workers}" if threads is None else f"{workers} ({threads} torch thread)"
        torch.set_num_threads(threads or default_threads)  # the workers set their own
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="bench_search_") as tmp:
            storage = f"sqlite:///{Path(tmp) / 'optuna.db'}"
            started = time.perf_counter()
            study = run_study(arrays, space, budget, storage, "bench", workers=workers)
            seconds = time.perf_counter() - started
            summary = study_summary(study)
        torch.set_num_threads(default_threads)
        finished = summary["n_complete"] + summary["n_pruned"]
        rows.append((label, seconds, finished, summary["n_pruned"], summary["best_value"], load))
        print(f"  {label} worker(s): {seconds:.1f} s", file=sys.stderr)

    base = rows[0][1]
    print(
        f"\nOptuna search, {args.trials} trials x at most {args.epochs} epochs (patience {training.patience}), "
        f"window {training.training_window}, {usable_cores()} cores; speed-up against the first row\n"
    )
    header = ("workers", "wall s", "finished", "pruned", "best val loss", "trials/min", "speed-up", "load avg at start")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("-" * (len(h) + 2) for h in header) + "|")
    for workers, seconds, finished, pruned, best, load in rows:
        cells = (
            workers,
            f"{seconds:.1f}",
            str(finished),
            str(pruned),
            f"{best:.4f}",
            f"{finished / seconds * 60:.1f}",
            f"{base / seconds:.2f}x",
            f"{load:.2f}",
        )
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
