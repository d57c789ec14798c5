"""Shared fixtures: a private storage home per test session, real Dagster instances, real databases."""

import os
import tempfile
import uuid

# Before anything imports stock_assets: settings are read once per process, at code-location load.
_SESSION_HOME = tempfile.mkdtemp(prefix="stock_assets_tests_")
os.environ["STOCK_ASSETS_HOME"] = _SESSION_HOME
os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
os.environ.pop("MLFLOW_TRACKING_URI", None)

import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from stock_assets.settings import Settings, get_settings  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get("STOCK_ASSETS_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def settings(tmp_path) -> Settings:
    """The packaged defaults with every store under this test's tmp dir."""
    return get_settings().model_copy(update={"home": tmp_path / "home"})


@pytest.fixture
def resources(settings):
    from stock_assets.resources import build_resources

    return build_resources(settings)


@pytest.fixture
def instance(tmp_path):
    """A real, SQLite-backed Dagster instance in a temp DAGSTER_HOME."""
    from dagster import instance_for_test

    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as inst:
        yield inst


def _postgres_available() -> str | None:
    try:
        engine = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__}); start it or set STOCK_ASSETS_TEST_POSTGRES"


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    reason = _postgres_available()
    if reason:
        pytest.skip(reason)
    name = f"sa_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    from stock_assets.resources.warehouse import get_warehouse

    get_warehouse.cache_clear()
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
