"""Small helpers shared by the Dagster-level tests."""

import os

import sqlalchemy as sa
from dagster import materialize

from stock_assets.partitions import session_keys

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def range_tags(first: str, last: str) -> dict[str, str]:
    return {RANGE_START: first, RANGE_END: last}


def sessions_from_start(count: int) -> list[str]:
    """The first `count` partition keys."""
    return session_keys("2004-08-19", "2013-03-01")[:count]


def materialize_range(assets, first, last, *, resources, instance, selection=None, raise_on_error=True):
    """One single-run materialization of a partition range, the way a UI backfill runs it."""
    return materialize(
        assets,
        selection=selection,
        resources=resources,
        instance=instance,
        tags=range_tags(first, last),
        raise_on_error=raise_on_error,
    )


def assets_of(settings, *names: str) -> list:
    """The assets definitions named, built from `settings` without resources (tests pass their own;
    checks are module-level: import them)."""
    from stock_assets.defs import DOMAINS
    from stock_assets.partitions import build_trading_day_partitions

    partitions = build_trading_day_partitions(settings.start_date, settings.last_session)
    by_key = {}
    for domain in DOMAINS:
        for assets_def in domain.build_defs(settings, partitions).assets:
            by_key.update({key.to_user_string(): assets_def for key in assets_def.keys})
    return [by_key[name] for name in names]


POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
POSTGRES_ENABLE_HINT = (
    "start it (e.g. `pg_ctlcluster <version> main start`, as .ci/run does; user postgres with trust auth on "
    "127.0.0.1:5432) or point TEST_POSTGRES_ADMIN_URL at a superuser URL"
)


def postgres_unavailable(url: str = POSTGRES_ADMIN_URL) -> str | None:
    """None when PostgreSQL answers at `url`, else a skip reason that says how to enable the tests."""
    try:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return None
    except Exception as exc:
        safe = sa.engine.make_url(url).render_as_string(hide_password=True)
        return f"PostgreSQL not reachable at {safe} ({type(exc).__name__}); {POSTGRES_ENABLE_HINT}"


def random_training_arrays(n=120, tickers=2, features=3) -> dict:
    """Compact training sets of seeded noise, the shape `fit_model` and `run_study` take."""
    import numpy as np

    rng = np.random.default_rng(0)
    return {
        "scaled_features": rng.normal(size=(n, tickers, features)).astype("float32"),
        "scaled_targets": rng.normal(size=(n, tickers)).astype("float32"),
        "train": np.arange(9, 80),
        "validation": np.arange(90, 105),
    }
