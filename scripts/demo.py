"""`make demo`: the whole system on the bundled sample, offline, into the persistent local instance.

1. one single-run backfill of raw_prices + processed_features over the sample's sessions;
then prints what landed and how to look at it in the Dagster UI.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from dagster import DagsterInstance

from stock_assets.definitions import defs
from stock_assets.partitions import session_keys
from stock_assets.resources.warehouse import get_warehouse
from stock_assets.settings import get_settings

SAMPLE_FIRST, SAMPLE_LAST = "2004-08-19", "2013-03-01"


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def local_instance() -> DagsterInstance:
    """The persistent instance under $DAGSTER_HOME (SQLite storage), telemetry off."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str((get_settings().home / "dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text("telemetry:\n  enabled: false\n")
    return DagsterInstance.get()


def backfill(instance: DagsterInstance, first: str, last: str) -> dict:
    started = time.perf_counter()
    result = defs.resolve_job_def("price_history_job").execute_in_process(
        instance=instance,
        run_config=QUIET,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )
    warehouse = get_warehouse(get_settings().warehouse_url)
    prices = warehouse.read_range("raw_prices", "date", first, last)
    features = warehouse.read_range("processed_features", "date", first, last)
    return {
        "run_id": result.run_id,
        "sessions": len(session_keys(first, last)),
        "tickers": ", ".join(sorted(prices["ticker"].unique())),
        "price_rows": len(prices),
        "feature_rows": len(features),
        "first_feature_session": features["date"].min() if len(features) else "-",
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", default=SAMPLE_FIRST, help="first session of the backfill")
    parser.add_argument("--last", default=SAMPLE_LAST, help="last session of the backfill")
    args = parser.parse_args()
    settings = get_settings()
    instance = local_instance()
    print(f"stock_assets demo  home={settings.home.resolve()}  DAGSTER_HOME={os.environ.get('DAGSTER_HOME')}")
    summary = backfill(instance, args.first, args.last)
    print("\nBackfill of raw_prices + processed_features (one run):")
    for key, value in summary.items():
        print(f"  {key:>22}: {value}")
    print("\nLook at it: `make ui` then open http://127.0.0.1:3000 (Assets -> raw_prices -> Partitions).")


if __name__ == "__main__":
    main()
