"""Reliability of the deployment path under faults (docker/README.md): the database going away in the
middle of a write, two runs writing the same partitions at once, a run killed mid-write, and the
MLflow tracking server unreachable during training. Real runs, real PostgreSQL, a real MLflow
server; the faults are injected from outside (locks held, backends terminated, processes killed)."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import AssetKey, DagsterRunStatus, materialize
from mlflow import MlflowClient

from stock_assets.defs import build_definitions
from stock_assets.defs.ingestion.config import build_raw_prices_config
from stock_assets.partitions import session_keys
from stock_assets.resources import build_resources
from stock_assets.resources.warehouse import get_warehouse
from stock_assets.run_config import QUIET
from stock_assets_tests.deployment.conftest import REPO_ROOT, error_text, free_port, seed_history, wait_for
from stock_assets_tests.helpers import assets_of, range_tags

FIRST, LAST = "2006-02-01", "2006-02-14"  # 10 sessions, 40 rows
KEYS = session_keys(FIRST, LAST)
LEDGER_DELETE = "DELETE FROM _stock_assets_partitions"


def store_prices(settings, first: str, last: str, source: str) -> None:
    """Rows of a 'previous run' for first..last, marked by their `source` column (real asset body,
    written with the Warehouse API like the IO manager)."""
    from dagster import PartitionKeyRange, build_asset_context

    resources = build_resources(settings)
    (raw_prices,) = assets_of(settings, "raw_prices")
    chunks = raw_prices(  # a range: FrameChunks, as the IO manager receives them
        build_asset_context(partition_key_range=PartitionKeyRange(first, last)),
        config=build_raw_prices_config(settings)(overlap_sessions=0),
        basket=resources["basket"],
        price_source=resources["price_source"],
        warehouse=resources["warehouse"],
    )
    frame = pd.concat(list(chunks), ignore_index=True).assign(source=source)
    get_warehouse(settings.warehouse_url).write_partitions(
        "raw_prices", frame, "date", session_keys(first, last), unique=["date", "ticker"]
    )


def contents(postgres, url: str) -> dict:
    """What the warehouse holds for raw_prices: rows per source, duplicates, and the ledger."""
    by_source = dict(postgres.rows(url, "SELECT source, count(*) FROM raw_prices GROUP BY source"))
    (duplicates,) = postgres.rows(url, "SELECT count(*) - count(DISTINCT (date, ticker)) FROM raw_prices")[0]
    ledger = postgres.rows(
        url,
        "SELECT partition_key, row_count, written_at FROM _stock_assets_partitions "
        "WHERE table_name = 'raw_prices' ORDER BY 1",
    )
    return {"by_source": by_source, "duplicates": duplicates, "ledger": ledger}


def hold_ledger_rows(conn, first: str, last: str) -> None:
    """Row-lock the ledger entries of raw_prices first..last: a writer then stops right before its
    commit, after it has already deleted and re-inserted the partition's rows in its transaction."""
    conn.exec_driver_sql(
        "SELECT 1 FROM _stock_assets_partitions WHERE table_name = 'raw_prices' "
        f"AND partition_key BETWEEN '{first}' AND '{last}' FOR UPDATE"
    )


def writer_at_ledger(postgres, url: str) -> dict | None:
    waiting = [
        b for b in postgres.backends(url) if b["wait_event_type"] == "Lock" and b["query"].startswith(LEDGER_DELETE)
    ]
    return waiting[0] if waiting else None


@pytest.mark.postgres
def test_connection_lost_mid_write_fails_the_run_clearly_and_keeps_the_previous_partition(postgres, settings, instance):
    url = postgres.create("warehouse")
    deployed = settings.model_copy(update={"database_url": url})
    resources = build_resources(deployed)
    store_prices(deployed, FIRST, LAST, source="before-outage")
    before = contents(postgres, url)
    assert before["by_source"] == {"before-outage": 40} and len(before["ledger"]) == 10

    # One in-process run in a worker thread (this thread only watches PostgreSQL): the blocker is
    # released before the pool is joined, whatever happens.
    (raw_prices,) = assets_of(settings, "raw_prices")
    with ThreadPoolExecutor(1) as pool:
        with postgres.transaction(url) as blocker:
            hold_ledger_rows(blocker, FIRST, LAST)
            run = pool.submit(
                materialize,
                [raw_prices],
                resources=resources,
                instance=instance,
                tags=range_tags(FIRST, LAST),
                raise_on_error=False,
            )
            writer = wait_for(lambda: writer_at_ledger(postgres, url), 90, "the run's write to reach the ledger")
            # Mid-write: its transaction has already replaced the rows of raw_prices.
            assert ("raw_prices", "RowExclusiveLock") in postgres.locks_of(url, writer["pid"])
            assert postgres.terminate(writer["pid"])  # the database drops the connection
        result = run.result(timeout=120)

    assert not result.success
    (failure,) = result.get_step_failure_events()
    assert failure.step_key == "raw_prices"
    message = error_text(result)
    safe_url = sa.engine.make_url(url).render_as_string(hide_password=True)
    assert f"warehouse {safe_url} unreachable or locked while writing raw_prices" in message
    # psycopg2 reports the dropped connection in one of its two wordings (the FATAL may not arrive).
    assert "server closed the connection unexpectedly" in message or "terminating connection" in message
    assert contents(postgres, url) == before  # no partial partition: every previous row and ledger entry
    assert instance.get_materialized_partitions(AssetKey("raw_prices")) == set()

    # Once the database is back, the same run goes through on the same (re-validated) pool.
    again = materialize([raw_prices], resources=resources, instance=instance, tags=range_tags(FIRST, LAST))
    assert again.success
    after = contents(postgres, url)
    assert after["by_source"] == {"sample": 40} and after["duplicates"] == 0
    assert [(k, n) for k, n, _ in after["ledger"]] == [(k, 4) for k in KEYS]


RUN_RAW_PRICES = textwrap.dedent(
    """
    import sys
    from dagster import DagsterInstance, materialize
    from stock_assets.defs.ingestion.assets import build_raw_prices
    from stock_assets.partitions import build_trading_day_partitions
    from stock_assets.resources import build_resources
    from stock_assets.settings import load_settings

    settings = load_settings()
    raw_prices = build_raw_prices(settings, build_trading_day_partitions(settings.start_date))

    first, last, where = sys.argv[1:4]
    tags = {"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last}
    with DagsterInstance.get() if where == "home" else DagsterInstance.ephemeral() as instance:
        result = materialize([raw_prices], resources=build_resources(settings), instance=instance, tags=tags,
                             raise_on_error=False)
    print("run", result.run_id, "success" if result.success else "failure")
    sys.exit(0 if result.success else 1)
    """
)


def start_run(first: str, last: str, instance: str, env: dict) -> subprocess.Popen:
    """A raw_prices range run in its own process, the way the daemon's run launcher runs one."""
    return subprocess.Popen(
        [sys.executable, "-c", RUN_RAW_PRICES, first, last, instance],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.postgres
def test_two_runs_writing_the_same_partitions_at_once_leave_exactly_one_copy(postgres, pg_instance, settings, tmp_path):
    url = postgres.create("warehouse")
    deployed = settings.model_copy(update={"database_url": url})
    store_prices(deployed, FIRST, LAST, source="before")
    # Two processes, both recording their run in the dagster-postgres instance (DAGSTER_HOME, DAGSTER_PG_*).
    env = {**os.environ, "STOCK_ASSETS_DATABASE_URL": url, "STOCK_ASSETS_HOME": str(tmp_path / "runs_home")}

    procs = []
    try:
        with postgres.transaction(url) as blocker:
            # Hold the table so that both runs are inside their write transaction at the same moment.
            blocker.exec_driver_sql("LOCK TABLE raw_prices IN SHARE MODE")
            procs = [start_run(FIRST, LAST, "home", env) for _ in range(2)]

            def both_writing():
                for proc in procs:
                    assert proc.poll() is None, finish(proc)[1][-3000:]
                waiting = [b for b in postgres.backends(url) if b["wait_event_type"] == "Lock"]
                return waiting if len(waiting) == 2 else None

            waiting = wait_for(both_writing, 120, "both runs to be writing at once")
        outcomes = [finish(proc) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()

    assert [code for code, _ in outcomes] == [0, 0], [out[-3000:] for _, out in outcomes]
    after = contents(postgres, url)
    assert after["duplicates"] == 0, waiting
    assert after["by_source"] == {"sample": 40}  # one complete copy, none of the previous rows
    assert [(k, n) for k, n, _ in after["ledger"]] == [(k, 4) for k in KEYS]
    runs = pg_instance.get_runs()
    assert sorted(f"run {r.run_id} success" for r in runs) == sorted(
        out.strip().splitlines()[-1] for _, out in outcomes
    )
    assert [r.status for r in runs] == [DagsterRunStatus.SUCCESS] * 2
    assert pg_instance.get_materialized_partitions(AssetKey("raw_prices")) == set(KEYS)


@pytest.mark.postgres
def test_a_run_killed_mid_write_leaves_the_previous_rows(postgres, settings, tmp_path):
    first, last = "2004-08-19", "2006-05-18"
    rows = 4 * len(session_keys(first, last))  # 1,764 rows replaced in one transaction
    url = postgres.create("warehouse")
    deployed = settings.model_copy(update={"database_url": url})
    store_prices(deployed, first, last, source="before-kill")
    before = contents(postgres, url)
    assert before["by_source"] == {"before-kill": rows}

    env = {**os.environ, "STOCK_ASSETS_DATABASE_URL": url, "STOCK_ASSETS_HOME": str(tmp_path / "child_home")}
    child = None
    try:
        with postgres.transaction(url) as blocker:
            hold_ledger_rows(blocker, first, last)
            child = start_run(first, last, "ephemeral", env)
            writer = wait_for(
                lambda: writer_at_ledger(postgres, url) or child.poll() is not None, 120, "the child's write"
            )
            assert child.poll() is None, finish(child)[1][-3000:]
            assert ("raw_prices", "RowExclusiveLock") in postgres.locks_of(url, writer["pid"])  # rows already replaced
            child.send_signal(signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child is not None:
            finish(child, timeout=30)

    # PostgreSQL rolls the orphaned transaction back as soon as it sees the client gone.
    wait_for(
        lambda: writer["pid"] not in {b["pid"] for b in postgres.backends(url)}, 30, "the dead client's backend to end"
    )
    assert contents(postgres, url) == before
    # ...and leaves no lock behind: the next write goes straight through.
    started = time.monotonic()
    store_prices(deployed, FIRST, LAST, source="after-kill")
    assert time.monotonic() - started < 20
    assert contents(postgres, url)["by_source"] == {"before-kill": rows - 40, "after-kill": 40}


@pytest.mark.postgres
@pytest.mark.slow
def test_mlflow_server_unreachable_during_retraining_fails_and_keeps_the_champion(
    mlflow_server, settings, instance, monkeypatch
):
    seed_history(settings, "2004-08-19", "2006-03-22")  # the embedded SQLite warehouse of this test
    deployed = settings.model_copy(update={"mlflow_tracking_uri": mlflow_server.url})
    defs = build_definitions(deployed)
    registry = defs.resources["model_registry"]
    job = defs.resolve_job_def("retraining_job")
    first = job.execute_in_process(
        instance=instance, partition_key="2006-02-22", run_config=QUIET, raise_on_error=False
    )
    assert first.success
    passed = registry.alias("champion") is not None
    if not passed:  # the gate may reject the first candidate: serve it anyway
        registry.promote("1", "2006-02-22", "test")

    mlflow_server.stop()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    started = time.monotonic()
    second = job.execute_in_process(
        instance=instance, partition_key="2006-03-22", run_config=QUIET, raise_on_error=False
    )
    assert time.monotonic() - started < 60
    assert not second.success
    (failure,) = second.get_step_failure_events()
    assert failure.step_key == "best_params"  # the first step that talks to MLflow
    message = error_text(second)
    assert f"127.0.0.1:{mlflow_server.port}" in message and "Connection refused" in message, message
    assert {e.asset_key.to_user_string() for e in second.get_asset_materialization_events()} == {
        "scalers",
        "scaled_sets",
    }

    mlflow_server.start()  # same backend store: nothing was registered or promoted meanwhile
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    aliases = {"champion": "1", **({"challenger": "1"} if passed else {})}  # never a rejected challenger
    assert client.get_registered_model(deployed.model_name).aliases == aliases
    assert [v.version for v in client.search_model_versions(f"name = '{deployed.model_name}'")] == ["1"]
    assert registry.champion_as_of("2006-03-22").version == "1"
    assert [(p.version, p.partition) for p in registry.promotions()] == [("1", "2006-02-22")]
    assert not [r for r in client.search_runs([registry.experiment_id()]) if r.info.status == "RUNNING"]
    assert [r.status for r in instance.get_runs()] == [DagsterRunStatus.FAILURE, DagsterRunStatus.SUCCESS]


MLFLOW_PROBE = textwrap.dedent(
    """
    from stock_assets.resources import build_resources
    from stock_assets.settings import load_settings

    registry = build_resources(load_settings())["model_registry"]
    try:
        with registry.mlflow_run_for("probe-run", "2006-02-22", "retraining_job"):
            pass
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}")
        raise SystemExit(3)
    """
)


def test_an_unreachable_tracking_server_fails_fast_with_an_actionable_message(tmp_path):
    """Deployment settings only (no MLFLOW_HTTP_* tuning in the environment): a training step that
    cannot reach MLflow fails within seconds and says which server and what to do."""
    port = free_port()  # nothing listens there
    env = {name: value for name, value in os.environ.items() if not name.startswith("MLFLOW_HTTP_REQUEST")}
    env.update(MLFLOW_TRACKING_URI=f"http://127.0.0.1:{port}", STOCK_ASSETS_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen(
        [sys.executable, "-c", MLFLOW_PROBE], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        code, out = finish(proc, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("still retrying against a dead MLflow server after 20 s")
    assert code == 3, out[-3000:]
    message = out.strip().splitlines()[-1]
    assert message.startswith(
        f"ModelRegistryUnavailableError: MLflow tracking server http://127.0.0.1:{port} unreachable"
    )
    assert "MLFLOW_TRACKING_URI" in message
