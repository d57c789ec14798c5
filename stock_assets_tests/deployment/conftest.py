"""Fixtures for the deployment path (docker/README.md): real PostgreSQL databases (one per store, dropped
afterwards), a real `mlflow server` on a free local port with a PostgreSQL backend, and a Dagster
instance on dagster-postgres configured by the deployment's docker/dagster.yaml.

PostgreSQL: 127.0.0.1:5432, user postgres, trust auth (override with TEST_POSTGRES_ADMIN_URL; not a
STOCK_ASSETS_* name, which the settings loader would reject as an unknown setting).
Tests skip with a reason that says how to enable them when it is not reachable.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from stock_assets_tests.helpers import POSTGRES_ADMIN_URL, postgres_unavailable

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_URL = POSTGRES_ADMIN_URL
MLFLOW_EXE = str(Path(sys.executable).with_name("mlflow"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def wait_for_http(proc: subprocess.Popen, url: str, log: Path, timeout: float, what: str, interval: float = 0.3):
    """Wait until `url` answers 200, failing early (with the log's tail) if `proc` exits."""

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    wait_for(up, timeout, f"{what} on {url} (log: {log})", interval=interval)


class Postgres:
    """Creates databases for one test (one per store) and drops them all (WITH FORCE) afterwards."""

    def __init__(self, admin_url: str):
        self.admin_url = sa.engine.make_url(admin_url)
        self.admin = sa.create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.databases: list[str] = []
        self._engines: dict[str, sa.Engine] = {}

    def create(self, purpose: str) -> str:
        name = f"sa_deploy_{purpose}_{uuid.uuid4().hex[:8]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.databases.append(name)
        return self.admin_url.set(database=name).render_as_string(hide_password=False)

    def engine(self, url: str) -> sa.Engine:
        """An autocommit engine of the test's own (for inspecting what the code stored)."""
        if url not in self._engines:
            self._engines[url] = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        return self._engines[url]

    def rows(self, url: str, query: str, **params) -> list[tuple]:
        with self.engine(url).connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(query), params)]

    def backends(self, url: str) -> list[dict]:
        """Other sessions connected to `url`'s database, with what they are running or waiting for."""
        database = sa.engine.make_url(url).database
        with self.admin.connect() as conn:
            result = conn.execute(
                sa.text(
                    "SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity "
                    "WHERE datname = :db AND pid <> pg_backend_pid()"
                ),
                {"db": database},
            )
            return [dict(r._mapping) for r in result]

    def locks_of(self, url: str, pid: int) -> set[tuple[str, str]]:
        """(table, mode) locks granted to backend `pid` on tables of `url`'s database."""
        return set(
            self.rows(
                url,
                "SELECT c.relname::text, l.mode FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = :pid AND l.granted",
                pid=pid,
            )
        )

    @contextlib.contextmanager
    def transaction(self, url: str):
        """A connection of the test's own inside an open transaction, rolled back at the end."""
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                tx = conn.begin()
                try:
                    yield conn
                finally:
                    if tx.is_active:
                        tx.rollback()
        finally:
            engine.dispose()

    def terminate(self, pid: int) -> bool:
        with self.admin.connect() as conn:
            return bool(conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar())

    def drop_all(self) -> None:
        from stock_assets.resources.warehouse import get_warehouse

        get_warehouse.cache_clear()
        for engine in self._engines.values():
            engine.dispose()
        with self.admin.connect() as conn:
            for name in self.databases:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture
def postgres():
    """Factory of fresh PostgreSQL databases for this test; all dropped afterwards."""
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    pg = Postgres(ADMIN_URL)
    try:
        yield pg
    finally:
        pg.drop_all()


@dataclass
class MlflowServer:
    """`mlflow server` with a PostgreSQL backend store and proxied artifacts in a temp dir, in its
    own process group (it spawns a uvicorn worker) so that stop() ends all of it."""

    backend_uri: str
    root: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def artifacts(self) -> Path:
        return self.root / "server_artifacts"

    @property
    def log(self) -> Path:
        return self.root / "mlflow_server.log"

    def start(self, timeout: float = 120) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            # The GenAI job runner spawns ~8 extra processes (~1.5 GB); nothing here uses it.
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        }
        cmd = [
            MLFLOW_EXE,
            "server",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            str(self.artifacts),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            # MLflow >= 3.5 rejects unexpected Host headers (DNS-rebinding guard).
            "--allowed-hosts",
            f"127.0.0.1:{self.port},127.0.0.1,localhost:{self.port},localhost",
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=env, start_new_session=True
            )

        wait_for_http(self.proc, f"{self.url}/health", self.log, timeout, "mlflow server")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        # Its uvicorn worker shares the process group: make sure nothing of it survives.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None


@pytest.fixture
def mlflow_server(postgres, tmp_path, monkeypatch):
    """A running MLflow tracking server (PostgreSQL backend store, proxied artifacts)."""
    # Fail in seconds, not minutes, when the server is gone (MLflow's default: 7 retries, 120 s timeout).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    server = MlflowServer(backend_uri=postgres.create("mlflow"), root=tmp_path / "mlflow_server")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_instance(postgres, tmp_path, monkeypatch):
    """A Dagster instance configured by docker/dagster.yaml (dagster-postgres run, event
    log and schedule storage) in a temp DAGSTER_HOME, its database given by DAGSTER_PG_* variables."""
    from dagster import DagsterInstance

    url = sa.engine.make_url(postgres.create("dagster"))
    home = tmp_path / "dagster_home_pg"
    home.mkdir()
    shutil.copy(REPO_ROOT / "docker" / "dagster.yaml", home / "dagster.yaml")
    env = {
        "DAGSTER_PG_USERNAME": url.username,
        "DAGSTER_PG_PASSWORD": url.password or "unused-with-trust-auth",
        "DAGSTER_PG_HOST": url.host,
        "DAGSTER_PG_DB": url.database,
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_HOME": str(home),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    instance = DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


@dataclass
class Stack:
    """The deployment configuration: every store on PostgreSQL, MLflow behind its server."""

    settings: object
    defs: object
    instance: object
    mlflow: MlflowServer
    postgres: Postgres
    urls: dict[str, str]

    @property
    def registry(self):
        return self.defs.resources["model_registry"]

    def rows(self, store: str, query: str, **params) -> list[tuple]:
        return self.postgres.rows(self.urls[store], query, **params)


@pytest.fixture
def postgres_stack(postgres, pg_instance, mlflow_server, settings) -> Stack:
    from stock_assets.defs import build_definitions

    urls = {
        "warehouse": postgres.create("warehouse"),
        "optuna": postgres.create("optuna"),
        "mlflow": mlflow_server.backend_uri,
        "dagster": pg_instance.run_storage.postgres_url,  # the database dagster.yaml resolved to
    }
    deployed = settings.model_copy(
        update={
            "database_url": urls["warehouse"],
            "optuna_storage": urls["optuna"],
            "mlflow_tracking_uri": mlflow_server.url,
        }
    )
    return Stack(deployed, build_definitions(deployed), pg_instance, mlflow_server, postgres, urls)


def seed_history(settings, first: str, last: str) -> dict[str, int]:
    """Store raw_prices and processed_features for the sessions first..last in `settings`'
    warehouse the way one range run would, without Dagster's per-partition bookkeeping: the real
    asset bodies invoked directly on a range context, written with the Warehouse API (partition
    ledger included, keyed as the IO manager keys them). Returns {table: rows written}."""
    from dagster import PartitionKeyRange, build_asset_context

    from stock_assets.defs.ingestion.config import build_raw_prices_config
    from stock_assets.partitions import session_keys
    from stock_assets.resources import build_resources
    from stock_assets.resources.warehouse import get_warehouse
    from stock_assets_tests.helpers import assets_of

    raw_prices, processed_features = assets_of(settings, "raw_prices", "processed_features")
    config = build_raw_prices_config(settings)(overlap_sessions=0)

    resources = build_resources(settings)
    keys = session_keys(first, last)

    def context():
        return build_asset_context(partition_key_range=PartitionKeyRange(first, last))

    written = {}
    for assets_def in (raw_prices, processed_features):  # features read the prices just written
        kwargs = {"config": config} if assets_def is raw_prices else {}
        output = assets_def(
            context(),
            basket=resources["basket"],
            price_source=resources["price_source"],
            warehouse=resources["warehouse"],
            **kwargs,
        )
        meta = assets_def.metadata_by_key[assets_def.key]
        written[assets_def.key.to_user_string()] = get_warehouse(settings.warehouse_url).write_partitions(
            assets_def.key.to_user_string(), output, meta["partition_expr"], keys, unique=meta["primary_key"]
        )
    return written


def error_text(result) -> str:
    """Every message (with causes) of the step failures of an in-process run."""
    parts = []
    for event in result.get_step_failure_events():
        error = event.event_specific_data.error
        while error is not None:
            parts.append(error.message)
            error = error.cause or error.context
    return "\n".join(parts)
