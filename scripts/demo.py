"""`make demo`: the whole system on the bundled sample, offline, into the persistent local instance.

1. one single-run backfill of raw_prices + processed_features over the sample's sessions;
2. the first retraining (Optuna search, candidate in MLflow, promotion gate, champion alias);
3. a replay of the following sessions the way the schedule and the daemon would run them:
   daily_job every session, the retraining sensor after each, the retrainings it requests;
then a report of what happened and how to look at it in the Dagster and MLflow UIs.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from dagster import DagsterInstance

from stock_assets.definitions import defs, settings
from stock_assets.lib import calendar
from stock_assets.lib.monitoring import walk_forward_summary
from stock_assets.partitions import session_keys
from stock_assets.replay import QUIET, replay, run_retraining
from stock_assets.resources.warehouse import get_warehouse

SAMPLE_FIRST, SAMPLE_LAST = "2004-08-19", "2013-03-01"


def local_instance() -> DagsterInstance:
    """The persistent instance under $DAGSTER_HOME (SQLite storage), telemetry off."""
    home = Path(os.environ.setdefault("DAGSTER_HOME", str((settings.home / "dagster_home").resolve())))
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
    warehouse = get_warehouse(settings.warehouse_url)
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


def budget(trials: int, epochs: int) -> dict:
    return {
        "ops": {
            "best_params": {"config": {"n_trials": trials, "max_epochs": epochs}},
            "candidate_model": {"config": {"max_epochs": epochs}},
        }
    }


def show(title: str, rows: dict) -> None:
    print(f"\n{title}")
    for key, value in rows.items():
        print(f"  {key:>28}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", default=SAMPLE_FIRST, help="first session of the backfill")
    parser.add_argument("--last", default=SAMPLE_LAST, help="last session of the backfill (and of the replay)")
    parser.add_argument("--replay-sessions", type=int, default=30, help="sessions replayed after the first training")
    parser.add_argument(
        "--trials",
        type=int,
        default=4,
        help="Optuna trials per retraining (default: %(default)s, fewer than the settings' for a quick demo)",
    )
    parser.add_argument("--epochs", type=int, default=6, help="max epochs per fit")
    parser.add_argument("--skip-backfill", action="store_true", help="reuse the history already in the warehouse")
    args = parser.parse_args()

    instance = local_instance()
    started = time.perf_counter()
    print(f"stock_assets demo  home={settings.home.resolve()}  DAGSTER_HOME={os.environ['DAGSTER_HOME']}")

    if not args.skip_backfill:
        show("1. Backfill of raw_prices + processed_features (one run):", backfill(instance, args.first, args.last))

    replayed = session_keys(SAMPLE_FIRST, args.last)[-args.replay_sessions :]
    first_training = calendar.previous_session(replayed[0]).isoformat()
    registry = defs.resources["model_registry"]
    t0 = time.perf_counter()
    daily = defs.resolve_job_def("daily_job").execute_in_process(
        instance=instance, partition_key=first_training, run_config=QUIET, raise_on_error=False
    )
    champion = registry.champion_as_of(first_training)
    show(
        f"2. daily_job for {first_training}, before any retraining:",
        {
            "success": daily.success,
            "champion": f"{champion.label}, promoted for {champion.partition}" if champion else "none",
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )
    t0 = time.perf_counter()
    first = run_retraining(defs, instance, first_training, budget(args.trials, args.epochs))
    show(
        f"3. First retraining as of {first_training} (an LSTM candidate judged by the gate):",
        {"gate": first["gate"], "seconds": round(time.perf_counter() - t0, 1)},
    )

    def progress(day, report):
        rolling = report.last_rolling
        ratio, statistic = rolling.get("rolling_mae_ratio", float("nan")), rolling.get("detector_statistic", 0.0)
        print(
            f"  {day}: scored {report.predictions_scored:4d}  MAE/persistence {ratio:.3f}  CUSUM {statistic:5.2f}"
            f"  champion v{rolling.get('champion_version', '-')} ({rolling.get('champion_kind', '-')})"
            f"  retrainings {len(report.retrainings)}",
            flush=True,
        )

    print(f"\n4. Replay of {len(replayed)} sessions {replayed[0]}..{replayed[-1]} (daily_job, sensor, retrainings):")
    report = replay(defs, instance, replayed, budget(args.trials, args.epochs), on_session=progress)
    registry = defs.resources["model_registry"]
    champion = registry.alias("champion")
    show(
        "Report:",
        {
            "sessions replayed": len(report.sessions),
            "failed daily runs": len(report.failed_daily_runs),
            "predictions scored": report.predictions_scored,
            **{k: round(v, 4) if isinstance(v, float) else v for k, v in report.last_rolling.items()},
            "sensor retrainings": len(report.retrainings),
            "promotions": report.promotions,
            "rejections": report.rejections,
            "champion now": champion.label if champion else "none",
            "replay seconds": round(report.seconds, 1),
            "demo seconds": round(time.perf_counter() - started, 1),
        },
    )
    for r in report.retrainings:
        print(f"    retrain {r['partition']}: {r['gate']}")
    log = get_warehouse(settings.warehouse_url).read_range("performance_log", "target_date", replayed[1], replayed[-1])
    show(f"Walk-forward over the replay ({replayed[1]}..{replayed[-1]}):", walk_forward_summary(log))
    print(
        "\nLook at it:\n"
        "  make ui         -> http://127.0.0.1:3000 (assets, partitions, runs, checks, the sensor's ticks)\n"
        f"  make mlflow-ui  -> http://127.0.0.1:5000 (runs, metrics, model '{registry.model_name}' and its aliases)\n"
        f"  MLflow store: {settings.tracking_uri}"
    )


if __name__ == "__main__":
    main()
