"""The partitions definition of the whole asset graph: one partition per NYSE session."""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition

from stock_assets.lib import trading_calendar


def build_trading_day_partitions(start_date: dt.date, last_session: dt.date | None = None) -> DailyPartitionsDefinition:
    """Daily keys in New York time without weekends and NYSE closures, from `start_date` to
    `last_session` inclusive (the data's end, so the UI offers only servable partitions) or, when
    None, to today's session (`end_offset=1`: it exists as soon as it opens)."""
    if not trading_calendar.is_session(start_date):
        raise ValueError(f"settings start_date {start_date} is not an NYSE session; pick a trading day")
    if last_session is not None and not trading_calendar.is_session(last_session):
        raise ValueError(f"settings end_date {last_session} is not an NYSE session; pick a trading day")
    closures = [dt.datetime.combine(day, dt.time()) for day in trading_calendar.weekday_closures(start_date)]
    return DailyPartitionsDefinition(
        start_date=start_date.isoformat(),
        # Dagster's end_date is exclusive; end_offset still decides which partition is "current".
        end_date=(last_session + dt.timedelta(days=1)).isoformat() if last_session else None,
        timezone=trading_calendar.TIMEZONE,
        end_offset=1,
        exclusions=["0 0 * * 0,6", *closures],
    )


def session_keys(first: str | dt.date, last: str | dt.date) -> list[str]:
    """Partition keys from `first` to `last` inclusive (the calendar's sessions as 'YYYY-MM-DD')."""
    return [d.isoformat() for d in trading_calendar.sessions_between(first, last)]


# A range run reads, computes and writes its rows this many sessions at a time, so its memory
# follows one chunk, not the range (docs/architecture.md, "Memory").
CHUNK_SESSIONS = 500


def chunked(keys: list[str], size: int | None = None) -> list[list[str]]:
    """Consecutive slices of `keys` of at most `size` (default CHUNK_SESSIONS) keys."""
    size = size or CHUNK_SESSIONS
    return [keys[i : i + size] for i in range(0, len(keys), size)]


class PartitionRangeError(ValueError):
    """A run's partition range selects no session; the message names both ends and the fix."""


def run_partition_keys(context) -> list[str]:
    """The partition keys of an asset's run, first to last. A range whose start lies after its end
    (e.g. `--partition-range 2010-03-05...2010-03-01`, or swapped range tags) selects nothing:
    refuse it naming both dates instead of failing later on an empty list."""
    keys = list(context.partition_keys)
    if keys:
        return keys
    first, last = context.partition_key_range.start, context.partition_key_range.end
    if first > last:
        raise PartitionRangeError(
            f"partition range {first}...{last} is reversed: its start {first} is after its end {last}; "
            f"launch {last}...{first} instead"
        )
    raise PartitionRangeError(f"partition range {first}...{last} holds no trading session; check both dates")
