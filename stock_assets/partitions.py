"""The partitions definition of the whole asset graph: one partition per session of the configured
exchange (`exchange` setting, default XNYS; lib/trading_calendar.py)."""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition

from stock_assets.lib import trading_calendar


def build_trading_day_partitions(
    start_date: dt.date, last_session: dt.date | None = None, exchange: str | None = None
) -> DailyPartitionsDefinition:
    """Daily keys in the exchange's time zone without its weekends and closures, from `start_date` to
    `last_session` inclusive (the data's end, so the UI offers only servable partitions) or, when
    None, to today's session (`end_offset=1`: it exists as soon as it opens). `exchange`: default the
    active one (settings `exchange`, handed to the calendar by `load_settings`)."""
    name = trading_calendar.describe(exchange)
    if not trading_calendar.is_session(start_date, exchange):
        raise ValueError(f"settings start_date {start_date} is not an {name} session; pick a trading day")
    if last_session is not None and not trading_calendar.is_session(last_session, exchange):
        raise ValueError(f"settings end_date {last_session} is not an {name} session; pick a trading day")
    closures = [dt.datetime.combine(day, dt.time()) for day in trading_calendar.weekday_closures(start_date, exchange)]
    weekend = trading_calendar.weekend_cron(exchange)
    return DailyPartitionsDefinition(
        start_date=start_date.isoformat(),
        # Dagster's end_date is exclusive; end_offset still decides which partition is "current".
        end_date=(last_session + dt.timedelta(days=1)).isoformat() if last_session else None,
        timezone=trading_calendar.timezone(exchange),
        end_offset=1,
        exclusions=[*([weekend] if weekend else []), *closures],
    )


def daily_schedule_time(exchange: str | None = None) -> tuple[int, int]:
    """(hour_of_day, minute_of_hour) for `build_schedule_from_partitioned_job`: after the exchange's
    close, in the partitions' time zone, which is the exchange's (lib/trading_calendar.daily_run_time)."""
    return trading_calendar.daily_run_time(exchange)


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


class NotASessionError(PartitionRangeError):
    """A run's partition key is not a session of the configured exchange: Dagster would silently run
    the next session's window under it. Never retried (defs/failures.py): it fails the same way twice."""


# Dagster's per-run override of the instance's `run_retries.retry_on_asset_or_op_failure`: the instance
# decides whether to retry a failed run from its tags when the failure is recorded (defs/failures.py).
NO_RETRY_TAGS = {"dagster/retry_on_asset_or_op_failure": "false"}
# Run tags that carry a run's partition key(s), whichever path launched it: the CLI's `--tags`,
# GraphQL `launchRun`, a backfill (one run per key, or one range run), a schedule.
PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def not_a_session_message(key: str, exchange: str | None = None) -> str | None:
    """None if `key` is a session of the exchange, else the refusal naming the key and its nearest sessions."""
    try:
        day = dt.date.fromisoformat(key)
    except (TypeError, ValueError):
        return f"partition key {key!r} is not a date YYYY-MM-DD; launch the run for a trading session"
    try:
        if trading_calendar.is_session(day, exchange):
            return None
    except trading_calendar.CalendarRangeError as exc:
        return f"partition key {key} is not a trading session: {exc}"
    before, after = trading_calendar.nearest_sessions(day, exchange)
    nearest = " and ".join(str(d) for d in (before, after) if d is not None) or "none known"
    return (
        f"partition key {key} is not a trading session of {trading_calendar.describe(exchange)} "
        f"({day:%A}, or a holiday/closure); the nearest sessions are {nearest}. Launch the run for one of "
        "them; nothing was computed or stored for this key"
    )


def check_session_tags(tags: dict[str, str], exchange: str | None = None) -> None:
    """Raise `NotASessionError` if any partition tag of a run names a day that is not a session."""
    for name in PARTITION_TAGS:
        if name in tags:
            message = not_a_session_message(tags[name], exchange)
            if message:
                raise NotASessionError(message)


def run_partition_keys(context) -> list[str]:
    """The partition keys of an asset's run, first to last.

    Every key the run was launched with must be a session: Dagster maps a Saturday's key to
    Monday's window, so the run would store Monday's rows under Saturday's key (refused with
    `NotASessionError`). A range whose start lies after its end (e.g.
    `--partition-range 2010-03-05...2010-03-01`, or swapped range tags) selects nothing: refuse it
    naming both dates instead of failing later on an empty list."""
    first, last = context.partition_key_range.start, context.partition_key_range.end
    for key in dict.fromkeys((first, last)):
        message = not_a_session_message(key)
        if message:
            raise NotASessionError(message)
    keys = list(context.partition_keys)
    if keys:
        return keys
    if first > last:
        raise PartitionRangeError(
            f"partition range {first}...{last} is reversed: its start {first} is after its end {last}; "
            f"launch {last}...{first} instead"
        )
    raise PartitionRangeError(f"partition range {first}...{last} holds no trading session; check both dates")
