"""Small helpers shared by the Dagster-level tests."""

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
