"""Walk-forward evaluation of the whole loop on the configured source (settings.yaml or
STOCK_ASSETS_* variables: tickers, source, csv_path, home), the way a user judges it on their data.

1. a backfill of raw_prices + processed_features over [--first, --last], in range runs of a few
   hundred sessions (a line after each: sessions done / total and an ETA);
2. daily_job for the session before the replay: with no champion yet, the persistence-EWMA baseline is promoted;
3. a first retraining as of that session: an LSTM candidate judged by the promotion gate;
4. a replay of the last --sessions sessions the way the schedule and the daemon run them: daily_job
   every session, retraining_sensor after each, the retrainings it requests (and, with --drill-after,
   a deliberately biased champion installed mid-way that the detector must catch);
5. the scorecard: served forecasts against persistence, the persistence-EWMA baseline, the static interval
   and the up-share on the same rows (point and interval rows), and what
   the sensor and the gate decided.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
import warnings
from pathlib import Path

SAMPLE_FIRST, SAMPLE_LAST = "2004-08-19", "2013-03-01"


def parse(argv=None, **defaults) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--first", default=SAMPLE_FIRST, help="first session of the backfill (default: %(default)s)")
    parser.add_argument("--last", default=SAMPLE_LAST, help="last session of the backfill and the replay")
    parser.add_argument("--sessions", type=int, default=250, help="sessions replayed (default: %(default)s)")
    parser.add_argument("--trials", type=int, help="Optuna trials per retraining (default: the settings')")
    parser.add_argument("--epochs", type=int, help="max epochs per fit (default: the settings')")
    parser.add_argument("--drill-after", type=int, default=0, help="install a biased champion after N sessions")
    parser.add_argument("--drill-bias", type=float, default=0.05, help="the drill champion's log-return bias")
    parser.add_argument("--skip-backfill", action="store_true", help="reuse the history already in the warehouse")
    parser.add_argument("--verbose", action="store_true", help="Dagster's and the libraries' own logs too")
    parser.add_argument(
        "--heartbeat",
        type=float,
        default=10.0,
        help="seconds between progress lines of long runs (default: %(default)s)",
    )
    parser.set_defaults(**defaults)
    return parser.parse_args(argv)


def budget(trials: int | None, epochs: int | None) -> dict:
    ops = {}
    if trials is not None or epochs is not None:
        search = {k: v for k, v in {"n_trials": trials, "max_epochs": epochs}.items() if v is not None}
        ops = {"best_params": {"config": search}}
        if epochs is not None:
            ops["candidate_model"] = {"config": {"max_epochs": epochs}}
    return {"ops": ops} if ops else {}


def show(title: str, rows: dict) -> None:
    print(f"\n{title}")
    for key, value in rows.items():
        print(f"  {key:>34}: {value}")


def quiet() -> None:
    """Outcomes go to the report; library chatter a user cannot act on does not."""
    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # read when mlflow is first imported
    for name in ("dagster", "mlflow", "optuna", "alembic", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def say(line: str) -> None:
    print(line, flush=True)


def backfill(job, instance, keys: list[str], run_config: dict, heartbeat: float, target_seconds: float = 8.0) -> int:
    """raw_prices + processed_features over `keys` in consecutive range runs sized to take about
    `target_seconds` each (a range run's rows are identical whatever the chunking: docs/architecture.md,
    "Range backfills"), printing sessions done / total and an ETA after each. Returns the runs made."""
    from stock_assets.replay import execute_for_location

    done, size, runs, started = 0, 250, 0, time.perf_counter()
    while done < len(keys):
        chunk = keys[done : done + size]
        t0 = time.perf_counter()
        tags = {"dagster/asset_partition_range_start": chunk[0], "dagster/asset_partition_range_end": chunk[-1]}
        label = f"backfill {chunk[0]}..{chunk[-1]}"
        result = execute_for_location(job, instance, None, run_config, tags, say, label, heartbeat)
        runs += 1
        if not result.success:
            raise SystemExit(f"{label} failed: see run {result.run_id} in the Dagster UI (make ui)")
        done += len(chunk)
        elapsed, took = time.perf_counter() - started, time.perf_counter() - t0
        eta = elapsed / done * (len(keys) - done)
        say(
            f"  backfill: {done}/{len(keys)} sessions ({chunk[-1]}) in {elapsed:.0f} s"
            + (f", ETA {eta:.0f} s" if done < len(keys) else "")
        )
        size = max(100, min(1000, int(len(chunk) * target_seconds / max(took, 0.1))))
    return runs


def main(argv=None, **defaults) -> None:
    args = parse(argv, **defaults)
    say("stock_assets walk-forward: loading Dagster, MLflow and the project (a few seconds)...")
    if not args.verbose:
        warnings.filterwarnings("ignore")
    from dagster import DagsterInstance

    from stock_assets.defs import build_definitions
    from stock_assets.settings import load_settings

    settings = load_settings()
    defs = build_definitions(settings)
    from stock_assets.lib import trading_calendar
    from stock_assets.lib.scoring import static_interval_quantiles, walk_forward_summary
    from stock_assets.partitions import session_keys
    from stock_assets.replay import execute_for_location, replay, run_retraining
    from stock_assets.resources.warehouse import get_warehouse
    from stock_assets.run_config import QUIET

    if not args.verbose:
        quiet()
    home = Path(os.environ.setdefault("DAGSTER_HOME", str((settings.home / "dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():  # the local instance; never overwrite a user's config
        shutil.copyfile(Path(__file__).resolve().parents[1] / "dagster.yaml", home / "dagster.yaml")
    instance = DagsterInstance.get()
    warehouse = get_warehouse(settings.warehouse_url)
    run_config = {} if args.verbose else QUIET
    started = time.perf_counter()
    say(f"stock_assets walk-forward  home={settings.home.resolve()}  DAGSTER_HOME={home}")

    if not args.skip_backfill:
        t0 = time.perf_counter()
        keys = session_keys(args.first, args.last)
        say(f"\n1. Backfill of raw_prices + processed_features, {len(keys)} sessions {args.first}..{args.last}:")
        runs = backfill(defs.resolve_job_def("price_history_job"), instance, keys, run_config, args.heartbeat)
        prices = warehouse.read_range("raw_prices", "date", args.first, args.last)
        features = warehouse.read_range("processed_features", "date", args.first, args.last)
        show(
            "   stored:",
            {
                "sessions": len(keys),
                "range runs": runs,
                "tickers": ", ".join(sorted(prices["ticker"].unique())),
                "price rows": len(prices),
                "feature rows": len(features),
                "first feature session": features["date"].min() if len(features) else "-",
                "seconds": round(time.perf_counter() - t0, 1),
            },
        )

    replayed = session_keys(args.first, args.last)[-args.sessions :]
    start = trading_calendar.previous_session(replayed[0]).isoformat()
    registry = defs.resources["model_registry"]
    t0 = time.perf_counter()
    daily = execute_for_location(
        defs.resolve_job_def("daily_job"), instance, start, run_config, None, say, f"daily_job {start}", args.heartbeat
    )
    champion = registry.champion_as_of(start)
    show(
        f"2. daily_job for {start}, before any retraining:",
        {
            "success": daily.success,
            "champion": f"{champion.label}, promoted for {champion.partition}" if champion else "none",
            "seconds": round(time.perf_counter() - t0, 1),
        },
    )
    t0 = time.perf_counter()
    retraining_config = budget(args.trials, args.epochs)
    say(f"\n3. First retraining as of {start} ({args.trials or 'default'} trials x {args.epochs or 'default'} epochs):")
    first = run_retraining(defs, instance, start, retraining_config, progress=say, heartbeat_seconds=args.heartbeat)
    show(
        "   an LSTM candidate judged by the gate:",
        {"gate": first["gate"], "seconds": round(time.perf_counter() - t0, 1)},
    )

    def progress(day, report):
        rolling = report.last_rolling
        ratio, statistic = rolling.get("rolling_mae_ratio", float("nan")), rolling.get("detector_statistic", 0.0)
        pinball, coverage = rolling.get("rolling_pinball_ratio", float("nan")), rolling.get("rolling_coverage_90")
        print(
            f"  {day}: MAE/persistence {ratio:.3f}  pinball/baseline {pinball:.3f}"
            f"  90% coverage {coverage if coverage is not None else '-'}  CUSUM {statistic:5.2f}"
            f"  champion v{rolling.get('champion_version', '-')} ({rolling.get('champion_kind', '-')})"
            f"  retrainings {len(report.retrainings)}",
            flush=True,
        )

    drill = (replayed[args.drill_after], args.drill_bias) if 0 < args.drill_after < len(replayed) else None
    print(f"\n4. Replay of {len(replayed)} sessions {replayed[0]}..{replayed[-1]} (daily_job, sensor, retrainings):")
    if drill:
        print(f"   DRILL: from {drill[0]} a deliberately degraded champion (every forecast +{drill[1]:g} log return)")
    report = replay(
        defs,
        instance,
        replayed,
        retraining_config,
        on_session=progress,
        drill=drill,
        progress=say,
        heartbeat_seconds=args.heartbeat,
    )
    for r in report.retrainings:
        print(f"    retraining {r['partition']}: {r['gate']}")
    champion = registry.alias("champion")
    show(
        "Decisions:",
        {
            "retrainings requested by the sensor": len(report.retrainings),
            "candidates promoted": report.promotions,
            "candidates rejected": report.rejections,
            "of which a baseline took over": report.fallbacks,
            **({f"drill {k}": v for k, v in report.drill.items() if k != "caught_after_sessions"} if drill else {}),
            # "drill caught after N sessions": the sessions its forecasts were served (ReplayReport.drill_line)
            **({"drill caught after": report.drill_line.removeprefix("drill caught after ")} if drill else {}),
            "failed daily runs": len(report.failed_daily_runs),
            "reports refreshed": (", ".join(report.reports.get("requested", [])) or "none requested")
            + ("" if report.reports.get("success", True) else " (run failed: see reports_job in the UI)"),
            "champion now": champion.label if champion else "none",
        },
    )
    log = warehouse.read_range("performance_log", "target_date", replayed[1], replayed[-1])
    # The static interval: each ticker's previous 500 sessions' empirical quantiles, on the same rows.
    history_start = trading_calendar.offset_session(replayed[1], -502).isoformat()
    prices = warehouse.read_range("raw_prices", "date", history_start, replayed[-1])
    summary = walk_forward_summary(log, static_quantiles=static_interval_quantiles(prices, log))
    show(f"Walk-forward over the replay ({replayed[1]}..{replayed[-1]}):", summary)
    show("Time:", {"replay seconds": round(report.seconds, 1), "total seconds": round(time.perf_counter() - started)})
    print(
        "\nLook at it:\n"
        "  make ui         -> http://127.0.0.1:3000 (assets, partitions, runs, checks; each retraining run's\n"
        "                     tags say why the sensor asked for it)\n"
        "  make mlflow-ui  -> http://127.0.0.1:5000/#/experiments?workflowType=machine_learning\n"
        f"                     (runs, metrics, model '{registry.model_name}', aliases; model-training view)\n"
        "  reports         -> assets model_leaderboard and monitoring_report (group operations) in the Dagster UI"
    )


if __name__ == "__main__":
    main()
