"""The partitions definition of the whole asset graph: one partition per NYSE session."""

from __future__ import annotations

import datetime as dt

from dagster import DailyPartitionsDefinition

from stock_assets.lib import calendar


def build_trading_day_partitions(start_date: dt.date) -> DailyPartitionsDefinition:
    """Daily keys in New York time without weekends and NYSE closures; `end_offset=1` so that
    today's session exists as soon as it opens."""
    if not calendar.is_session(start_date):
        raise ValueError(f"settings start_date {start_date} is not an NYSE session; pick a trading day")
    closures = [dt.datetime.combine(day, dt.time()) for day in calendar.weekday_closures(start_date)]
    return DailyPartitionsDefinition(
        start_date=start_date.isoformat(),
        timezone=calendar.TIMEZONE,
        end_offset=1,
        exclusions=["0 0 * * 0,6", *closures],
    )


def session_keys(first: str | dt.date, last: str | dt.date) -> list[str]:
    """Partition keys from `first` to `last` inclusive (the calendar's sessions as 'YYYY-MM-DD')."""
    return [d.isoformat() for d in calendar.sessions_between(first, last)]
