"""Backfill benchmarks (SPEC §16). Each scenario runs in a fresh subprocess (clean peak memory) on a
fresh SQLite Dagster instance and warehouse; the parent prints one table.

    python benchmarks/backfill.py [--sessions N] [--per-partition 50]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE_FIRST, SAMPLE_LAST = "2004-08-19", "2013-03-01"


def _keys(n: int) -> list[str]:
    from stock_assets.partitions import session_keys

    return session_keys(SAMPLE_FIRST, SAMPLE_LAST)[:n]


def _instance(home: Path):
    from dagster import DagsterInstance

    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.from_config(str(dagster_home))


QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def scenario_floor(home: Path, n: int) -> dict:
    """Dagster alone: two trivial single-run assets (one feeding the other) over n partitions."""
    from dagster import AssetIn, BackfillPolicy, IOManager, asset, materialize

    from stock_assets.definitions import settings
    from stock_assets.partitions import build_trading_day_partitions

    trading_day_partitions = build_trading_day_partitions(settings.start_date)

    class NullIO(IOManager):
        def handle_output(self, context, obj):
            pass

        def load_input(self, context):
            return None

    @asset(partitions_def=trading_day_partitions, backfill_policy=BackfillPolicy.single_run(), io_manager_key="null")
    def trivial_a():
        return 1

    @asset(
        partitions_def=trading_day_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        io_manager_key="null",
        ins={"trivial_a": AssetIn()},
    )
    def trivial_b(trivial_a):
        return 1

    keys = _keys(n)
    instance = _instance(home)
    started = time.perf_counter()
    materialize(
        [trivial_a, trivial_b],
        resources={"null": NullIO()},
        instance=instance,
        run_config=QUIET,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    return {"seconds": time.perf_counter() - started, "partitions": len(keys)}


def scenario_single_run(home: Path, n: int) -> dict:
    """raw_prices + processed_features (+ checks) over n partitions in one run."""
    os.environ["STOCK_ASSETS_HOME"] = str(home)
    from stock_assets.definitions import defs

    keys = _keys(n)
    instance = _instance(home)
    started = time.perf_counter()
    result = defs.resolve_job_def("price_history_job").execute_in_process(
        instance=instance,
        run_config=QUIET,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    assert result.success
    return {"seconds": time.perf_counter() - started, "partitions": len(keys)}


def scenario_per_partition(home: Path, n: int, runs: int) -> dict:
    """One run per partition for the last `runs` of the n sessions (history already stored)."""
    os.environ["STOCK_ASSETS_HOME"] = str(home)
    from stock_assets.definitions import defs

    job = defs.resolve_job_def("price_history_job")
    instance = _instance(home)
    keys = _keys(n)[-runs:]
    started = time.perf_counter()
    for key in keys:
        assert job.execute_in_process(instance=instance, partition_key=key, run_config=QUIET).success
    return {"seconds": time.perf_counter() - started, "partitions": len(keys)}


def scenario_features(home: Path, n: int) -> dict:
    """Pure feature computation: 10 tickers x 2,500 sessions (the 4 sample tickers, re-scaled copies)."""
    import pandas as pd

    from stock_assets.lib import calendar
    from stock_assets.lib.indicators import compute_features
    from stock_assets.lib.sources import load_sample_prices

    data = load_sample_prices()
    sessions = [d.isoformat() for d in calendar.sessions_between("2003-03-06", "2013-03-01")][-2500:]
    base = data[data["date"].isin(sessions) & data["ticker"].isin(["AAPL", "MSFT", "IBM"])]
    frames = [base.assign(ticker=base["ticker"] + str(i), open=base["open"] * (1 + i)) for i in range(4)]
    prices = pd.concat(frames)
    tickers = sorted(prices["ticker"].unique())[:10]
    started = time.perf_counter()
    rows = compute_features(prices, sessions, sessions, tickers, 260)
    return {"seconds": time.perf_counter() - started, "partitions": len(sessions), "rows": len(rows)}


def _child(name: str, args: argparse.Namespace, home: str) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        name,
        "--home",
        home,
        "--sessions",
        str(args.sessions),
        "--per-partition",
        str(args.per_partition),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=2148, help="partitions to backfill (default: whole sample)")
    parser.add_argument("--per-partition", type=int, default=50)
    parser.add_argument("--child")
    parser.add_argument("--home")
    args = parser.parse_args()
    if args.child:
        home = Path(args.home)
        fn = {"floor": scenario_floor, "single_run": scenario_single_run, "features": scenario_features}.get(args.child)
        result = fn(home, args.sessions) if fn else scenario_per_partition(home, args.sessions, args.per_partition)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    with tempfile.TemporaryDirectory() as tmp:
        rows = {
            "floor": _child("floor", args, f"{tmp}/floor"),
            "single_run": _child("single_run", args, f"{tmp}/ours"),
            "per_partition": _child("per_partition", args, f"{tmp}/ours"),
            "features": _child("features", args, f"{tmp}/features"),
        }
    floor, ours, per = rows["floor"], rows["single_run"], rows["per_partition"]
    per_rate = per["seconds"] / per["partitions"]
    print(f"\nBackfill benchmark ({os.cpu_count()} cores, SQLite instance and warehouse)")
    print("| scenario | partitions | wall s | s/partition | peak RSS MB |\n|---|---|---|---|---|")
    labels = {
        "floor": "Dagster floor: 2 trivial assets, one run",
        "single_run": "raw_prices + processed_features, one run",
        "per_partition": "same, one run per partition",
        "features": "features only: 10 tickers x 2,500 sessions (pure)",
    }
    for name, row in rows.items():
        print(
            f"| {labels[name]} | {row['partitions']} | {row['seconds']:.1f} | "
            f"{row['seconds'] / row['partitions']:.4f} | {row['peak_rss_mb']:.0f} |"
        )
    print(f"\nsingle run / floor = {ours['seconds'] / floor['seconds']:.2f}x (target <= ~1.25x)")
    ratio = per_rate / (ours["seconds"] / ours["partitions"])
    print(f"per-partition runs / single run, per partition = {ratio:.1f}x (target >= 20x)")


if __name__ == "__main__":
    main()
