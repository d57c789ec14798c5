"""Backfill benchmarks (README, "Benchmarks"). Each scenario runs in a fresh subprocess (clean peak memory) on a
fresh Dagster instance and warehouse; the parent prints the tables.

One run per partition is measured three ways against the single run: our job in-process (the
lower bound of a run's cost), our job in one process per run (`dagster job execute`: interpreter
start, code location import, run; what Dagster's default run launcher gives each run of a
per-partition backfill), and Dagster's trivial assets in-process (the ratio Dagster itself gives).

Instance storage is a dimension: on SQLite (a fresh file per scenario) every scenario runs; on
PostgreSQL Dagster's floor, our single-run backfill and our in-process runs per partition run again,
each on a throwaway database
(`bench_<random>`, created from `--postgres` and dropped afterwards), once without event batching and
once with `DAGSTER_EVENT_BATCH_SIZE` (default 500) in the scenario's environment: Dagster 1.13 reads
that variable when an event arrives (`dagster/_core/instance/methods/event_methods.py`) and, when it
is above 0, writes a step's per-partition materializations (and the run's planned materializations)
with one `store_event_batch` call per batch instead of one `store_event` each. PostgreSQL writes a
batch of materializations as one multi-row INSERT (other batches, and SQLite, loop over `store_event`),
so SQLite has no batched row.
The warehouse stays SQLite unless `--warehouse postgres` (then each backfill gets a throwaway
warehouse database too, via STOCK_ASSETS_DATABASE_URL).

    python benchmarks/backfill.py [--sessions N] [--per-partition 50] [--launched 10] [--storages sqlite,postgres]
                                  [--postgres postgresql://postgres@127.0.0.1:5432/postgres]
                                  [--event-batch-size 500] [--warehouse sqlite|postgres]

Timings depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from stock_assets.run_config import QUIET

SAMPLE_FIRST, SAMPLE_LAST = "2004-08-19", "2013-03-01"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
BATCH_ENV = "DAGSTER_EVENT_BATCH_SIZE"
# The Dagster instance's PostgreSQL URL in a scenario subprocess (set by the parent; unset: SQLite). Not
# STOCK_ASSETS_*: the settings read every such variable as a setting and reject unknown ones.
INSTANCE_URL_ENV = "BENCH_DAGSTER_INSTANCE_URL"


def _keys(n: int) -> list[str]:
    from stock_assets.partitions import session_keys

    return session_keys(SAMPLE_FIRST, SAMPLE_LAST)[:n]


def _instance(home: Path, postgres_url: str | None = None):
    """A fresh instance under `home`: SQLite storage, or PostgreSQL at `postgres_url` (default: the
    URL the parent put in BENCH_DAGSTER_INSTANCE_URL, if any)."""
    from dagster import DagsterInstance

    postgres_url = postgres_url or os.environ.get(INSTANCE_URL_ENV)
    dagster_home = home / "dagster_home"
    dagster_home.mkdir(parents=True, exist_ok=True)
    storage = f"storage:\n  postgres:\n    postgres_url: {json.dumps(postgres_url)}\n" if postgres_url else ""
    (dagster_home / "dagster.yaml").write_text(storage + "telemetry:\n  enabled: false\n")
    return DagsterInstance.from_config(str(dagster_home))


def _trivial_assets():
    """Dagster alone: two trivial single-run assets (one feeding the other) and their null IO manager."""
    from dagster import AssetIn, BackfillPolicy, IOManager, asset

    from stock_assets.settings import load_settings

    settings = load_settings()
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

    return [trivial_a, trivial_b], {"null": NullIO()}


def scenario_floor(home: Path, n: int) -> dict:
    """Dagster alone: the two trivial assets over n partitions in one run."""
    from dagster import materialize

    assets, resources = _trivial_assets()
    keys = _keys(n)
    instance = _instance(home)
    started = time.perf_counter()
    materialize(
        assets,
        resources=resources,
        instance=instance,
        run_config=QUIET,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
    )
    return {"seconds": time.perf_counter() - started, "partitions": len(keys)}


def scenario_floor_per_partition(home: Path, n: int, runs: int) -> dict:
    """Dagster alone, one in-process run per partition: the ratio Dagster itself gives."""
    from dagster import materialize

    assets, resources = _trivial_assets()
    instance = _instance(home)
    keys = _keys(n)[-runs:]
    started = time.perf_counter()
    for key in keys:
        materialize(assets, resources=resources, instance=instance, run_config=QUIET, partition_key=key)
    return {"seconds": time.perf_counter() - started, "partitions": len(keys)}


def scenario_single_run(home: Path, n: int) -> dict:
    """raw_prices + processed_features (+ checks) over n partitions in one run."""
    os.environ["STOCK_ASSETS_HOME"] = str(home)
    from stock_assets.definitions import defs as load_defs

    defs = load_defs()

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
    from stock_assets.definitions import defs as load_defs

    defs = load_defs()

    job = defs.resolve_job_def("price_history_job")
    instance = _instance(home)
    keys = _keys(n)[-runs:]
    started = time.perf_counter()
    for key in keys:
        assert job.execute_in_process(instance=instance, partition_key=key, run_config=QUIET).success
    return {"seconds": time.perf_counter() - started, "partitions": len(keys)}


def scenario_launched(home: Path, n: int, runs: int) -> dict:
    """One process per partition, as Dagster's default run launcher gives each run of a per-partition
    backfill its own process (interpreter start, code location import, run): `dagster job execute`
    for the last `runs` of the n sessions (history already stored), one after another."""
    instance = _instance(home)  # writes home/dagster_home/dagster.yaml (PostgreSQL if the parent said so)
    dagster_home = Path(instance.root_directory)
    instance.dispose()
    config = home / "quiet.json"
    config.write_text(json.dumps(QUIET))
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "STOCK_ASSETS_HOME": str(home)}
    cli = str(Path(sys.executable).with_name("dagster"))
    keys = _keys(n)[-runs:]
    started = time.perf_counter()
    for key in keys:
        cmd = [cli, "job", "execute", "-m", "stock_assets.definitions", "-j", "price_history_job"]
        cmd += ["--tags", json.dumps({"dagster/partition": key}), "-c", str(config)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"dagster job execute for {key} failed: {proc.stderr.strip()[-400:]}")
    return {"seconds": time.perf_counter() - started, "partitions": len(keys)}


def scenario_features(home: Path, n: int) -> dict:
    """Pure feature computation: 10 tickers x 2,500 sessions (the 4 sample tickers, re-scaled copies)."""
    import pandas as pd

    from stock_assets.lib import trading_calendar
    from stock_assets.lib.indicators import compute_features
    from stock_assets.lib.sources import load_sample_prices

    data = load_sample_prices()
    sessions = [d.isoformat() for d in trading_calendar.sessions_between("2003-03-06", "2013-03-01")][-2500:]
    base = data[data["date"].isin(sessions) & data["ticker"].isin(["AAPL", "MSFT", "IBM"])]
    frames = [base.assign(ticker=base["ticker"] + str(i), open=base["open"] * (1 + i)) for i in range(4)]
    prices = pd.concat(frames)
    tickers = sorted(prices["ticker"].unique())[:10]
    started = time.perf_counter()
    rows = compute_features(prices, sessions, sessions, tickers, 260)
    return {"seconds": time.perf_counter() - started, "partitions": len(sessions), "rows": len(rows)}


# --- parent: subprocesses, throwaway PostgreSQL databases, tables ---------------------------------------------


def _admin_connect(url: str):
    """A psycopg2 connection to the maintenance database at `url` (libpq or SQLAlchemy form)."""
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(url)
    params = {"host": u.host or "127.0.0.1", "port": u.port or 5432, "dbname": u.database or "postgres"}
    params.update({k: v for k, v in (("user", u.username), ("password", u.password)) if v})
    return psycopg2.connect(connect_timeout=5, **params)


def postgres_unreachable(url: str) -> str | None:
    """None when PostgreSQL answers at `url`, else a one-line reason."""
    try:
        _admin_connect(url).close()
    except Exception as exc:  # ImportError, OperationalError, a malformed URL: all mean "no PostgreSQL rows"
        lines = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {lines[0] if lines else exc!r}"
    return None


def _admin(url: str, statement: str) -> None:
    conn = _admin_connect(url)
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


@contextlib.contextmanager
def throwaway_database(url: str) -> Iterator[str]:
    """A fresh `bench_<random>` database on `url`'s server, as a SQLAlchemy psycopg2 URL; dropped on exit."""
    from sqlalchemy.engine import make_url

    name = f"bench_{secrets.token_hex(4)}"
    _admin(url, f'CREATE DATABASE "{name}"')
    try:
        # postgresql+psycopg2: SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3 (docker/dagster.yaml).
        yield make_url(url).set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
    finally:
        _admin(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _child(
    name: str,
    args: argparse.Namespace,
    home: str,
    *,
    label: str = "",
    instance_url: str | None = None,
    batch_size: int = 0,
    warehouse_url: str | None = None,
) -> dict | None:
    """Run one scenario in a fresh interpreter; its result row, or None (and a note) if it failed."""
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
        "--launched",
        str(args.launched),
    ]
    # Only what this row says: no batching, instance URL or warehouse URL inherited from the caller's shell.
    env = {k: v for k, v in os.environ.items() if k not in (BATCH_ENV, INSTANCE_URL_ENV, "STOCK_ASSETS_DATABASE_URL")}
    if instance_url:
        env[INSTANCE_URL_ENV] = instance_url
    if batch_size:
        env[BATCH_ENV] = str(batch_size)
    if warehouse_url:
        env["STOCK_ASSETS_DATABASE_URL"] = warehouse_url
    label = label or name
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"  {label}: FAILED (exit {proc.returncode}) {last}", file=sys.stderr)
        return None
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    print(
        f"  {label}: {row['seconds']:.1f} s over {row['partitions']} partitions, "
        f"peak RSS {row['peak_rss_mb']:.0f} MB ({elapsed:.0f} s with start-up)",
        file=sys.stderr,
    )
    return row


STORAGE_CHOICES = ("sqlite", "postgres", "postgres-unbatched", "postgres-batched")


def _storages(args: argparse.Namespace) -> list[str]:
    """The instance storages to run, in table order; PostgreSQL dropped with a one-line note if unreachable."""
    requested = args.storages.split(",") if args.storages else ["sqlite", "postgres"]
    bad = [s for s in requested if s.strip() not in STORAGE_CHOICES]
    if bad:
        sys.exit(f"--storages: unknown {bad}; choose from {', '.join(STORAGE_CHOICES)}")
    wanted = set()
    for s in (s.strip() for s in requested):
        wanted |= {"postgres-unbatched", "postgres-batched"} if s == "postgres" else {s}
    order = ["sqlite", "postgres-unbatched", "postgres-batched"]
    needs_pg = bool(wanted - {"sqlite"}) or args.warehouse == "postgres"
    reason = postgres_unreachable(args.postgres) if needs_pg else None
    if reason:
        if args.warehouse == "postgres":
            sys.exit(f"note: PostgreSQL at {args.postgres} is unreachable ({reason}); --warehouse postgres needs it")
        print(f"note: PostgreSQL at {args.postgres} is unreachable ({reason}); SQLite rows only", file=sys.stderr)
        wanted &= {"sqlite"}
        if not wanted:
            sys.exit("note: nothing to run without PostgreSQL (--storages asked for PostgreSQL only)")
    return [s for s in order if s in wanted]


def _fmt(row: dict | None, key: str, spec: str) -> str:
    return format(row[key], spec) if row else "failed"


def _per_run(per: dict | None, single: dict | None) -> str:
    """How many times one run per partition costs the single run, per partition."""
    if not per or not single:
        return "-"
    return f"{(per['seconds'] / per['partitions']) / (single['seconds'] / single['partitions']):.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=2148, help="partitions to backfill (default: whole sample)")
    parser.add_argument("--per-partition", type=int, default=50, help="one-run-per-partition runs (0: skip)")
    parser.add_argument(
        "--launched", type=int, default=10, help="of those, runs in a process each, as launched (0: skip)"
    )
    parser.add_argument(
        "--storages",
        help="instance storages, comma-separated: sqlite, postgres (= postgres-unbatched,postgres-batched), "
        "postgres-unbatched, postgres-batched (default: sqlite and postgres when PostgreSQL is reachable)",
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="maintenance database to create throwaway databases from (default: %(default)s)",
    )
    parser.add_argument("--event-batch-size", type=int, default=500, help=f"{BATCH_ENV} of the batched rows")
    parser.add_argument(
        "--warehouse", choices=("sqlite", "postgres"), default="sqlite", help="our table storage (default: sqlite)"
    )
    parser.add_argument("--no-features", action="store_true", help="skip the pure feature-computation row")
    parser.add_argument("--child")
    parser.add_argument("--home")
    args = parser.parse_args()
    if args.child:
        home = Path(args.home)
        fn = {"floor": scenario_floor, "single_run": scenario_single_run, "features": scenario_features}.get(args.child)
        per_run = {
            "per_partition": (scenario_per_partition, args.per_partition),
            "floor_per_partition": (scenario_floor_per_partition, args.per_partition),
            "launched": (scenario_launched, args.launched),
        }
        if fn:
            result = fn(home, args.sessions)
        else:
            scenario, runs = per_run[args.child]
            result = scenario(home, args.sessions, runs)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    storages = _storages(args)
    load = os.getloadavg()[0]
    print(f"backfill benchmark: storages {', '.join(storages)}, warehouse {args.warehouse}", file=sys.stderr)
    rows: dict[str, dict | None] = {}
    by_storage: dict[str, tuple[dict | None, ...]] = {}  # (floor, single run, one run per partition)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:

        def warehouse() -> str | None:
            return stack.enter_context(throwaway_database(args.postgres)) if args.warehouse == "postgres" else None

        if "sqlite" in storages:
            ours_warehouse = warehouse()  # shared by the single run and the per-partition runs after it
            rows["floor"] = _child("floor", args, f"{tmp}/floor", label="sqlite floor")
            if args.per_partition > 0:
                rows["floor_per_partition"] = _child(
                    "floor_per_partition", args, f"{tmp}/floor-per", label="sqlite floor, one run per partition"
                )
            rows["single_run"] = _child(
                "single_run", args, f"{tmp}/ours", label="sqlite ours, one run", warehouse_url=ours_warehouse
            )
            # Then, on the instance and warehouse the single run filled: one run per partition, in-process
            # and in a process each.
            for name, runs, what in (
                ("per_partition", args.per_partition, "one run per partition"),
                ("launched", args.launched, "one process per partition"),
            ):
                if runs > 0:
                    label = f"sqlite ours, {what}"
                    rows[name] = _child(name, args, f"{tmp}/ours", label=label, warehouse_url=ours_warehouse)
            by_storage["sqlite"] = (rows["floor"], rows["single_run"], rows.get("per_partition"))
        if not args.no_features:
            rows["features"] = _child("features", args, f"{tmp}/features", label="features only")
        for storage in storages[1:] if storages[0] == "sqlite" else storages:
            batch = args.event_batch_size if storage == "postgres-batched" else 0
            row = []
            for name, what in (("floor", "floor"), ("single_run", "ours, one run")):
                with throwaway_database(args.postgres) as instance_url:
                    ours_warehouse = warehouse() if name == "single_run" else None
                    home = f"{tmp}/{storage}-{name}"
                    kwargs = {"instance_url": instance_url, "batch_size": batch, "warehouse_url": ours_warehouse}
                    row.append(_child(name, args, home, label=f"{storage} {what}", **kwargs))
                    if name == "single_run":  # then one run per partition on the same instance and warehouse
                        what = "ours, one run per partition"
                        run_per = args.per_partition > 0 and row[-1] is not None
                        row.append(
                            _child("per_partition", args, home, label=f"{storage} {what}", **kwargs)
                            if run_per
                            else None
                        )
            by_storage[storage] = tuple(row)

    warehouse_name = "SQLite" if args.warehouse == "sqlite" else "PostgreSQL"
    machine = f"{os.cpu_count()} cores, load average {load:.1f} at start"
    if rows:
        print(f"\nBackfill benchmark ({machine}, SQLite instance, {warehouse_name} warehouse)")
        print("| scenario | partitions | wall s | s/partition | peak RSS MB |\n|---|---|---|---|---|")
        labels = {
            "floor": "Dagster floor: 2 trivial assets, one run",
            "single_run": "raw_prices + processed_features, one run",
            "floor_per_partition": "Dagster floor, one in-process run per partition",
            "per_partition": "raw_prices + processed_features, one in-process run per partition",
            "launched": "same, one process per partition (as a launched run)",
            "features": "features only: 10 tickers x 2,500 sessions (pure)",
        }
        for name, row in rows.items():
            if row is None:
                print(f"| {labels[name]} | failed | | | |")
                continue
            print(
                f"| {labels[name]} | {row['partitions']} | {row['seconds']:.1f} | "
                f"{row['seconds'] / row['partitions']:.4f} | {row['peak_rss_mb']:.0f} |"
            )
        floor, ours = rows.get("floor"), rows.get("single_run")
        if floor and ours:
            print(f"\nsingle run / floor = {ours['seconds'] / floor['seconds']:.2f}x (target <= ~1.1x)")
        for name, single, what in (
            ("per_partition", ours, "in-process runs"),
            ("launched", ours, "one process per run"),
            ("floor_per_partition", floor, "Dagster alone, in-process runs"),
        ):
            if single and rows.get(name):
                target = " (target >= 20x)" if name != "floor_per_partition" else " (what Dagster itself gives)"
                print(f"one run per partition / one run, per partition, {what}: {_per_run(rows[name], single)}{target}")

    if any(s != "sqlite" for s in by_storage):
        labels = {
            "sqlite": "SQLite",
            "postgres-unbatched": "PostgreSQL, unbatched",
            "postgres-batched": f"PostgreSQL, {BATCH_ENV}={args.event_batch_size}",
        }
        print(f"\nInstance storage ({machine}; {warehouse_name} warehouse; one run over the partitions)")
        print(
            "| instance storage | partitions | floor s | ours s | ours/floor | ours s/partition "
            "| one run per partition s/partition | per partition / one run "
            "| floor peak RSS MB | ours peak RSS MB |\n|---|---|---|---|---|---|---|---|---|---|"
        )
        for storage, (floor, ours, per) in by_storage.items():
            partitions = (ours or floor or {}).get("partitions", "failed")
            ratio = f"{ours['seconds'] / floor['seconds']:.2f}x" if floor and ours else "-"
            per_partition = f"{ours['seconds'] / ours['partitions']:.4f}" if ours else "failed"
            cells = [labels[storage], partitions, _fmt(floor, "seconds", ".1f"), _fmt(ours, "seconds", ".1f"), ratio]
            per_run = f"{per['seconds'] / per['partitions']:.3f}" if per else "-"
            cells += [per_partition, per_run, _per_run(per, ours)]
            cells += [_fmt(floor, "peak_rss_mb", ".0f"), _fmt(ours, "peak_rss_mb", ".0f")]
            print("| " + " | ".join(str(c) for c in cells) + " |")
        unbatched, batched = by_storage.get("postgres-unbatched"), by_storage.get("postgres-batched")
        if unbatched and batched:
            parts = [
                f"{what} {b['seconds'] / u['seconds']:.2f}x"
                for what, u, b in zip(("floor", "ours", "one run per partition"), unbatched, batched)
                if u and b
            ]
            if parts:
                print(f"\nbatched / unbatched on PostgreSQL: {', '.join(parts)}")


if __name__ == "__main__":
    main()
