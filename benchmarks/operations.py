"""Retraining and daily-run benchmarks (README, "Benchmarks") on the whole bundled sample.

Copies the demo's warehouse (`.stock_assets/warehouse.db`, built by `make demo`) into a temp home
so nothing of the demo is touched, then on a fresh SQLite Dagster instance:
1. one retraining_job run with the settings' default budget (search + final fit + gate);
2. `--daily` daily_job runs after it, one session each.
Prints a table with wall time, peak RSS and the share of pruned trials.

    python benchmarks/operations.py [--partition 2013-01-15] [--daily 5] [--trials N --epochs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--partition", default="2013-01-15")
    parser.add_argument("--daily", type=int, default=5)
    parser.add_argument("--trials", type=int, help="override the settings' n_trials")
    parser.add_argument("--epochs", type=int, help="override the settings' max_epochs")
    parser.add_argument("--source", default=str(ROOT / ".stock_assets" / "warehouse.db"))
    args = parser.parse_args()
    if not Path(args.source).exists():
        sys.exit(f"{args.source} not found: run `make demo` first (it builds the sample's history)")
    home = Path(tempfile.mkdtemp(prefix="bench_ops_"))
    os.environ["STOCK_ASSETS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "dagster_home")
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with sqlite3.connect(args.source) as src, sqlite3.connect(home / "warehouse.db") as dst:
        src.backup(dst)

    from dagster import DagsterInstance

    from stock_assets.defs import build_definitions
    from stock_assets.settings import load_settings

    settings = load_settings()
    defs = build_definitions(settings)
    from stock_assets.lib import trading_calendar
    from stock_assets.run_config import QUIET

    instance = DagsterInstance.get()
    ops = {}
    if args.trials:
        ops.setdefault("best_params", {"config": {}})["config"]["n_trials"] = args.trials
    if args.epochs:
        ops.setdefault("best_params", {"config": {}})["config"]["max_epochs"] = args.epochs
        ops["candidate_model"] = {"config": {"max_epochs": args.epochs}}
    training = settings.training
    rows = []
    started = time.perf_counter()
    result = defs.resolve_job_def("retraining_job").execute_in_process(
        instance=instance, partition_key=args.partition, run_config={**QUIET, "ops": ops}, raise_on_error=False
    )
    seconds = time.perf_counter() - started
    best = next(e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "best_params")
    meta = {k: v.value for k, v in best.materialization.metadata.items()}
    gate = next((e for e in result.get_asset_check_evaluations() if e.check_name == "promotion_gate"), None)
    rows.append(
        (
            f"retraining_job {args.partition} ({args.trials or training.n_trials} trials x "
            f"{args.epochs or training.max_epochs} epochs, window {training.training_window})",
            seconds,
            f"trials {meta['n_trials']}, pruned {meta['n_pruned']} ({meta['pruned_share']:.0%}); "
            f"gate: {gate.description if gate else '-'}",
        )
    )
    rss_after_training = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if not result.success:
        print("note: the candidate was not promoted; daily runs need a champion", file=sys.stderr)
    day = args.partition
    for _ in range(args.daily if result.success else 0):
        day = trading_calendar.next_session(day).isoformat()
        t0 = time.perf_counter()
        ok = (
            defs.resolve_job_def("daily_job")
            .execute_in_process(instance=instance, partition_key=day, run_config=QUIET, raise_on_error=False)
            .success
        )
        rows.append((f"daily_job {day}", time.perf_counter() - t0, "ok" if ok else "FAILED"))
    print(f"\nOperations benchmark ({os.cpu_count()} cores, SQLite instance and warehouse, whole sample)")
    print("| run | wall s | notes |\n|---|---|---|")
    for name, secs, note in rows:
        print(f"| {name} | {secs:.1f} | {note} |")
    print(
        f"\npeak RSS after retraining: {rss_after_training:.0f} MB; at the end: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
