"""Shared fixtures: a private storage home per test session, real Dagster instances, real databases."""

import os
import sqlite3
import tempfile
import uuid
from pathlib import Path

# Before anything imports stock_assets: settings are read once per process, at code-location load.
# Tests run the real definitions with small windows and budgets so the suite stays fast.
_SESSION_HOME = tempfile.mkdtemp(prefix="stock_assets_tests_")
TEST_SETTINGS = {
    "STOCK_ASSETS_HOME": _SESSION_HOME,
    "STOCK_ASSETS_FEATURE_LOOKBACK": "220",  # features exist from the 220th session (2005-07-01) on
    "STOCK_ASSETS_TRAINING__TRAINING_WINDOW": "150",
    "STOCK_ASSETS_TRAINING__SEQUENCE_LENGTHS": "5,10",
    "STOCK_ASSETS_TRAINING__N_TRIALS": "3",
    "STOCK_ASSETS_TRAINING__MAX_EPOCHS": "3",
    "STOCK_ASSETS_TRAINING__PATIENCE": "2",
    # 3-epoch models are noisier than persistence; the bound itself is tested with a strict policy.
    "STOCK_ASSETS_TRAINING__MAX_MAE_RATIO_TO_PERSISTENCE": "3.0",
    "STOCK_ASSETS_MONITORING__WINDOW_SESSIONS": "5",
    "STOCK_ASSETS_MONITORING__MIN_SAMPLES": "8",
    "STOCK_ASSETS_MONITORING__COOLDOWN_SESSIONS": "3",
}
os.environ.update(TEST_SETTINGS)
os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] = "false"  # models must load without unpickling
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("STOCK_ASSETS_SETTINGS_FILE", None)

import pytest  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from stock_assets.settings import Settings, get_settings  # noqa: E402
from stock_assets_tests.helpers import POSTGRES_ADMIN_URL, postgres_unavailable  # noqa: E402



@pytest.fixture
def settings(tmp_path) -> Settings:
    """The packaged defaults with every store under this test's tmp dir."""
    return get_settings().model_copy(update={"home": tmp_path / "home"})


HISTORY_SESSIONS = 440  # 2004-08-19 .. 2006-05-18: prices and features for training and replays


@pytest.fixture(scope="session")
def history_warehouse(tmp_path_factory) -> Path:
    """A warehouse with raw_prices and processed_features for the first HISTORY_SESSIONS sessions,
    built once by one real single-run backfill; tests get their own copy via `history`."""
    from dagster import instance_for_test, materialize

    from stock_assets.defs.features.assets import processed_features
    from stock_assets.defs.ingestion.assets import raw_prices
    from stock_assets.partitions import session_keys
    from stock_assets.resources import build_resources

    root = tmp_path_factory.mktemp("history")
    settings = get_settings().model_copy(update={"home": root / "home"})
    keys = session_keys("2004-08-19", "2013-03-01")[:HISTORY_SESSIONS]
    (root / "dh").mkdir()
    with instance_for_test(temp_dir=str(root / "dh")) as inst:
        result = materialize(
            [raw_prices, processed_features],
            resources=build_resources(settings),
            instance=inst,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
        )
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
