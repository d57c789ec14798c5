"""Shared fixtures: a private storage home per test, real Dagster instances, real databases.

Tests build their definitions from a `Settings` object (small windows and budgets so the suite
stays fast): no environment juggling before imports, no patched module globals.
"""

import sqlite3
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from stock_assets.settings import MonitoringSettings, Settings, TrainingSettings
from stock_assets_tests.helpers import POSTGRES_ADMIN_URL, postgres_unavailable

TEST_SETTINGS = Settings(
    feature_lookback=220,  # features exist from the 220th session (2005-07-01) on
    training=TrainingSettings(
        training_window=150,
        sequence_lengths=(5, 10),
        n_trials=3,
        max_epochs=3,
        patience=2,
    ),
    monitoring=MonitoringSettings(window_sessions=5, cooldown_sessions=3, max_champion_age_sessions=40),
)


@pytest.fixture(autouse=True, scope="session")
def _mlflow_environment():
    """Models must load without unpickling; no tracking server leaks in from the shell."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        yield


@pytest.fixture
def settings(tmp_path) -> Settings:
    """The test settings with every store under this test's tmp dir."""
    return TEST_SETTINGS.model_copy(update={"home": tmp_path / "home"})


@pytest.fixture
def defs(settings):
    from stock_assets.defs import build_definitions

    return build_definitions(settings)


@pytest.fixture
def raw_prices(settings):
    """The `raw_prices` assets definition built from `settings`, without resources."""
    from stock_assets_tests.helpers import assets_of

    return assets_of(settings, "raw_prices")[0]


@pytest.fixture
def processed_features(settings):
    from stock_assets_tests.helpers import assets_of

    return assets_of(settings, "processed_features")[0]


HISTORY_SESSIONS = 440  # 2004-08-19 .. 2006-05-18: prices and features for training and replays


@pytest.fixture(scope="session")
def history_warehouse(tmp_path_factory) -> Path:
    """A warehouse with raw_prices and processed_features for the first HISTORY_SESSIONS sessions,
    built once by one real single-run backfill; tests get their own copy via `history`."""
    from dagster import instance_for_test

    from stock_assets.defs import build_definitions
    from stock_assets.partitions import session_keys
    from stock_assets_tests.helpers import range_tags

    root = tmp_path_factory.mktemp("history")
    settings = TEST_SETTINGS.model_copy(update={"home": root / "home"})
    keys = session_keys("2004-08-19", "2013-03-01")[:HISTORY_SESSIONS]
    (root / "dh").mkdir()
    with instance_for_test(temp_dir=str(root / "dh")) as inst:
        job = build_definitions(settings).resolve_job_def("price_history_job")
        result = job.execute_in_process(instance=inst, tags=range_tags(keys[0], keys[-1]))
        assert result.success
    return Path(settings.warehouse_url.removeprefix("sqlite:///"))


@pytest.fixture
def history(settings, history_warehouse, resources):
    """This test's home starts with a copy of the shared price/feature history."""
    from stock_assets.resources.warehouse import get_warehouse

    target = Path(settings.warehouse_url.removeprefix("sqlite:///"))
    target.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(history_warehouse) as source, sqlite3.connect(target) as copy:
        source.backup(copy)  # includes what still sits in the WAL
    get_warehouse.cache_clear()
    return settings


@pytest.fixture
def resources(settings):
    from stock_assets.resources import build_resources

    return build_resources(settings)


@pytest.fixture
def instance(tmp_path):
    """A real, SQLite-backed Dagster instance in a temp DAGSTER_HOME."""
    from dagster import instance_for_test

    home = tmp_path / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as inst:
        yield inst


@pytest.fixture
def postgres_url():
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    reason = postgres_unavailable()
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
