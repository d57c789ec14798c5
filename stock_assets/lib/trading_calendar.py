"""The NYSE trading calendar: the one source of sessions, next/previous session and holidays.

Everything that does date arithmetic (partitions, lookbacks, "the session a prediction targets")
goes through here, so Mondays never evaluate Sundays and Friday's predictions are scored on Monday.

The calendar is loaded once from 1980 on: long histories (back to the 1980s) validate, and the earlier
start costs about 0.08 s more than a 2000 start at load time (0.28 s instead of 0.20 s), so a fixed
start is simpler than widening on demand. Dates before `EARLIEST_SESSION` raise `CalendarRangeError`
instead of passing for "not a session".
"""

from __future__ import annotations

import datetime as dt
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

EXCHANGE = "XNYS"
TIMEZONE = "America/New_York"
CALENDAR_START = "1980-01-01"
# The first XNYS session on or after CALENDAR_START (a test keeps the two in step); settings validate against it.
EARLIEST_SESSION = dt.date(1980, 1, 2)


class CalendarRangeError(ValueError):
    """A date lies before the calendar's first session, so whether it is a session is unknown here."""


def _cache_file() -> Path:
    """One file per day and exchange_calendars version: the sessions it publishes (about a year
    ahead of today) change only with the date or a new release of its holiday rules."""
    from importlib.metadata import version

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stock_assets"
    return root / f"{EXCHANGE}-{CALENDAR_START}-{version('exchange_calendars')}-{dt.date.today()}.npy"


@lru_cache(maxsize=1)
def _sessions() -> pd.DatetimeIndex:
    """Building the calendar costs about 0.5 s, a third of the code location's import time; a
    cached copy loads in milliseconds. Any cache problem falls back to building it."""
    cache = _cache_file()
    try:
        return pd.DatetimeIndex(np.load(cache))
    except (OSError, ValueError):
        pass
    import exchange_calendars

    sessions = exchange_calendars.get_calendar(EXCHANGE, start=CALENDAR_START).sessions
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npy")
        np.save(partial, sessions.to_numpy(dtype="datetime64[ns]"))
        partial.replace(cache)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:
        pass
    return sessions


def _as_date(day: dt.date | str | pd.Timestamp) -> dt.date:
    if isinstance(day, str):
        return dt.date.fromisoformat(day)
    if isinstance(day, pd.Timestamp | dt.datetime):
        return day.date()
    return day


def _supported(day: dt.date | str | pd.Timestamp) -> pd.Timestamp:
    """The day as a timestamp, refusing days the loaded calendar cannot answer for."""
    date = _as_date(day)
    if date < dt.date.fromisoformat(CALENDAR_START):
        raise CalendarRangeError(
            f"{date} is before the start of the {EXCHANGE} calendar (first session {EARLIEST_SESSION}); "
            f"use dates from {EARLIEST_SESSION} on"
        )
    return pd.Timestamp(date)


def last_known_session() -> dt.date:
    """The calendar publishes sessions about a year ahead; nothing beyond is known."""
    return _sessions()[-1].date()


def is_session(day: dt.date | str) -> bool:
    """Raises `CalendarRangeError` before `EARLIEST_SESSION`; False after the last known session."""
    return _supported(day) in _sessions()


def sessions_between(start: dt.date | str, end: dt.date | str) -> list[dt.date]:
    """All sessions with start <= session <= end."""
    sessions = _sessions()
    lo = sessions.searchsorted(_supported(start), side="left")
    hi = sessions.searchsorted(pd.Timestamp(_as_date(end)), side="right")
    return [ts.date() for ts in sessions[lo:hi]]


def next_session(day: dt.date | str) -> dt.date:
    """The first session strictly after `day` (Friday -> Monday, skipping holidays)."""
    sessions = _sessions()
    i = sessions.searchsorted(_supported(day), side="right")
    if i >= len(sessions):
        raise ValueError(f"no session known after {day}; the {EXCHANGE} calendar ends {last_known_session()}")
    return sessions[i].date()


def previous_session(day: dt.date | str) -> dt.date:
    """The last session strictly before `day`."""
    sessions = _sessions()
    i = sessions.searchsorted(_supported(day), side="left")
    if i == 0:
        raise CalendarRangeError(f"no session known before {day}; the calendar starts {EARLIEST_SESSION}")
    return sessions[i - 1].date()


def offset_session(day: dt.date | str, offset: int) -> dt.date:
    """The session `offset` sessions after (or before, if negative) the session `day`."""
    if not is_session(day):
        raise ValueError(f"{day} is not an {EXCHANGE} trading session")
    sessions = _sessions()
    i = sessions.get_loc(pd.Timestamp(_as_date(day))) + offset
    if i < 0:
        raise CalendarRangeError(f"{offset} sessions from {day} is before the calendar's start {EARLIEST_SESSION}")
    if i >= len(sessions):
        raise ValueError(f"{offset} sessions from {day} is after the last known session {last_known_session()}")
    return sessions[i].date()


def weekday_closures(start: dt.date | str) -> list[dt.date]:
    """Weekdays from `start` to the calendar's end on which the exchange is closed.

    Holidays and special closures (2001-09-11..14, 2012-10-29/30, 2025-01-09) alike; weekends are
    excluded separately by a cron rule.
    """
    weekdays = pd.bdate_range(_supported(start), _sessions()[-1])
    closed = weekdays.difference(_sessions())
    return [ts.date() for ts in closed]
