"""The trading calendar of the configured exchange: the one source of sessions, next/previous session
and holidays.

Everything that does date arithmetic (partitions, lookbacks, "the session a prediction targets")
goes through here, so Mondays never evaluate Sundays and Friday's predictions are scored on Monday.

The exchange is an `exchange_calendars` code (`XNYS` by default, `XKRX` Seoul, `XLON` London, ...):
the `exchange` setting. `settings.load_settings()` hands it to `use_exchange` once when the code
location loads (docs/inputs-and-secrets.md, "Any exchange"); every function here then answers for
that exchange, or for the one named by its optional `exchange=` argument, so callers keep their
signatures. `EXCHANGE`, `TIMEZONE` and `EARLIEST_SESSION` are the active exchange's.

Each calendar is loaded once from 1980 on (or from the exchange's own first date if later): long
histories validate, and the earlier start costs about 0.08 s more than a 2000 start at load time,
so a fixed start is simpler than widening on demand. Dates before the first session raise
`CalendarRangeError` instead of passing for "not a session".
"""

from __future__ import annotations

import datetime as dt
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_EXCHANGE = "XNYS"
CALENDAR_START = "1980-01-01"
# The daily run starts this long after the exchange's regular close (18:30 New York time for the NYSE).
RUN_AFTER_CLOSE = dt.timedelta(hours=2, minutes=30)
_active = [DEFAULT_EXCHANGE]


class CalendarRangeError(ValueError):
    """A date lies before the calendar's first session, so whether it is a session is unknown here."""


class UnknownExchangeError(ValueError):
    """The `exchange` setting is not an `exchange_calendars` code."""


def exchange_codes() -> list[str]:
    import exchange_calendars

    return sorted(exchange_calendars.get_calendar_names(include_aliases=False))


def check_exchange(code: str) -> str:
    """`code` if `exchange_calendars` ships a calendar for it, else `UnknownExchangeError` listing some."""
    import exchange_calendars

    if code in exchange_calendars.get_calendar_names(include_aliases=True):
        return code
    codes = exchange_codes()
    common = [c for c in ("XNYS", "XNAS", "XLON", "XKRX", "XTKS", "XHKG", "XPAR", "XETR", "XTSE", "XASX") if c in codes]
    raise UnknownExchangeError(
        f"exchange {code!r} is not an exchange_calendars code; use e.g. {', '.join(common)} ({len(codes)} in all: "
        "python -c 'import exchange_calendars; print(exchange_calendars.get_calendar_names())')"
    )


def use_exchange(code: str) -> None:
    """Make `code` the exchange every function here answers for (settings.load_settings calls it)."""
    _active[0] = check_exchange(code)


def active_exchange() -> str:
    return _active[0]


@contextmanager
def using_exchange(code: str):
    """`use_exchange(code)` for a block, then the previous exchange again (tests, scripts)."""
    previous = _active[0]
    use_exchange(code)
    try:
        yield
    finally:
        _active[0] = previous


def _code(exchange: str | None) -> str:
    return exchange or _active[0]


@lru_cache(maxsize=16)
def _calendar(exchange: str):
    import exchange_calendars

    start = max(pd.Timestamp(CALENDAR_START), pd.Timestamp(exchange_calendars.get_calendar(exchange).bound_min()))
    return exchange_calendars.get_calendar(exchange, start=start)


@lru_cache(maxsize=16)
def _facts(exchange: str) -> tuple[str, str, str, tuple]:
    """(time zone, weekmask, first date, regular close times) of `exchange`, cached on disk with the sessions."""
    calendar = _calendar(exchange)
    closes = tuple((None if start is None else str(start), time) for start, time in calendar.close_times)
    return str(calendar.tz), calendar.weekmask, str(calendar.first_session.date()), closes


def _calendar_start(exchange: str) -> str:
    if exchange == DEFAULT_EXCHANGE:
        return CALENDAR_START
    return max(CALENDAR_START, _facts(exchange)[2])


def _cache_file(exchange: str) -> Path:
    """One file per day and exchange_calendars version: the sessions it publishes (about a year
    ahead of today) change only with the date or a new release of its holiday rules."""
    from importlib.metadata import version

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stock_assets"
    return root / f"{exchange}-{CALENDAR_START}-{version('exchange_calendars')}-{dt.date.today()}.npy"


@lru_cache(maxsize=16)
def _sessions_of(exchange: str) -> pd.DatetimeIndex:
    """Building a calendar costs about 0.5 s, a third of the code location's import time; a cached
    copy loads in milliseconds. Any cache problem falls back to building it."""
    cache = _cache_file(exchange)
    try:
        return pd.DatetimeIndex(np.load(cache))
    except (OSError, ValueError):
        pass
    sessions = _calendar(exchange).sessions
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        partial = cache.with_name(f"{cache.stem}.{os.getpid()}.tmp.npy")
        np.save(partial, sessions.to_numpy(dtype="datetime64[ns]"))
        partial.replace(cache)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:
        pass
    return sessions


def _sessions(exchange: str | None = None) -> pd.DatetimeIndex:
    return _sessions_of(_code(exchange))


def earliest_session(exchange: str | None = None) -> dt.date:
    return _sessions(exchange)[0].date()


def timezone(exchange: str | None = None) -> str:
    """The exchange's time zone (America/New_York for XNYS); its session dates are local dates there."""
    code = _code(exchange)
    return "America/New_York" if code == DEFAULT_EXCHANGE else _facts(code)[0]


def weekmask(exchange: str | None = None) -> str:
    """Trading weekdays Monday..Sunday as '1111100' (most exchanges)."""
    code = _code(exchange)
    return "1111100" if code == DEFAULT_EXCHANGE else _facts(code)[1]


def close_time(exchange: str | None = None) -> dt.time:
    """The exchange's regular close today (local time); 16:00 for the NYSE."""
    code = _code(exchange)
    if code == DEFAULT_EXCHANGE:
        return dt.time(16, 0)
    return _facts(code)[3][-1][1]


def daily_run_time(exchange: str | None = None) -> tuple[int, int]:
    """(hour, minute) in the exchange's time zone at which the daily schedule runs: RUN_AFTER_CLOSE
    after the regular close (18:30 for the NYSE, 18:00 for Seoul, 19:00 for London). The schedule
    runs in the partitions' time zone, which is the exchange's."""
    closing = dt.datetime.combine(dt.date(2000, 1, 3), close_time(exchange)) + RUN_AFTER_CLOSE
    if closing.date() != dt.date(2000, 1, 3):
        return 23, 59
    return closing.hour, closing.minute


def weekend_cron(exchange: str | None = None) -> str:
    """A cron rule matching the exchange's non-trading weekdays ('0 0 * * 0,6' for Saturday and Sunday)."""
    cron_day = {0: 1, 1: 2, 2: 3, 3: 4, 4: 5, 5: 6, 6: 0}  # Monday=0 (weekmask) -> cron's Monday=1, Sunday=0
    closed = sorted(cron_day[i] for i, flag in enumerate(weekmask(exchange)) if flag == "0")
    return f"0 0 * * {','.join(map(str, closed))}" if closed else ""


def describe(exchange: str | None = None) -> str:
    """'XNYS (America/New_York)' for messages."""
    return f"{_code(exchange)} ({timezone(exchange)})"


def __getattr__(name: str):
    """EXCHANGE, TIMEZONE and EARLIEST_SESSION of the active exchange (read at use, not at import)."""
    if name == "EXCHANGE":
        return active_exchange()
    if name == "TIMEZONE":
        return timezone()
    if name == "EARLIEST_SESSION":
        return earliest_session()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _as_date(day: dt.date | str | pd.Timestamp) -> dt.date:
    if isinstance(day, str):
        return dt.date.fromisoformat(day)
    if isinstance(day, pd.Timestamp | dt.datetime):
        return day.date()
    return day


def _supported(day: dt.date | str | pd.Timestamp, exchange: str | None = None) -> pd.Timestamp:
    """The day as a timestamp, refusing days the loaded calendar cannot answer for."""
    date = _as_date(day)
    code = _code(exchange)
    if date < dt.date.fromisoformat(_calendar_start(code)):
        first = earliest_session(code)
        raise CalendarRangeError(
            f"{date} is before the start of the {code} calendar (first session {first}); use dates from {first} on"
        )
    return pd.Timestamp(date)


def last_known_session(exchange: str | None = None) -> dt.date:
    """The calendar publishes sessions about a year ahead; nothing beyond is known."""
    return _sessions(exchange)[-1].date()


def is_session(day: dt.date | str, exchange: str | None = None) -> bool:
    """Raises `CalendarRangeError` before the first session; False after the last known session."""
    return _supported(day, exchange) in _sessions(exchange)


def sessions_between(start: dt.date | str, end: dt.date | str, exchange: str | None = None) -> list[dt.date]:
    """All sessions with start <= session <= end."""
    sessions = _sessions(exchange)
    lo = sessions.searchsorted(_supported(start, exchange), side="left")
    hi = sessions.searchsorted(pd.Timestamp(_as_date(end)), side="right")
    return [ts.date() for ts in sessions[lo:hi]]


def next_session(day: dt.date | str, exchange: str | None = None) -> dt.date:
    """The first session strictly after `day` (Friday -> Monday, skipping holidays)."""
    sessions = _sessions(exchange)
    i = sessions.searchsorted(_supported(day, exchange), side="right")
    if i >= len(sessions):
        raise ValueError(
            f"no session known after {day}; the {_code(exchange)} calendar ends {last_known_session(exchange)}"
        )
    return sessions[i].date()


def previous_session(day: dt.date | str, exchange: str | None = None) -> dt.date:
    """The last session strictly before `day`."""
    sessions = _sessions(exchange)
    i = sessions.searchsorted(_supported(day, exchange), side="left")
    if i == 0:
        raise CalendarRangeError(f"no session known before {day}; the calendar starts {earliest_session(exchange)}")
    return sessions[i - 1].date()


def offset_session(day: dt.date | str, offset: int, exchange: str | None = None) -> dt.date:
    """The session `offset` sessions after (or before, if negative) the session `day`."""
    if not is_session(day, exchange):
        raise ValueError(f"{day} is not an {_code(exchange)} trading session")
    sessions = _sessions(exchange)
    i = sessions.get_loc(pd.Timestamp(_as_date(day))) + offset
    if i < 0:
        raise CalendarRangeError(
            f"{offset} sessions from {day} is before the calendar's start {earliest_session(exchange)}"
        )
    if i >= len(sessions):
        raise ValueError(f"{offset} sessions from {day} is after the last known session {last_known_session(exchange)}")
    return sessions[i].date()


def nearest_sessions(day: dt.date | str, exchange: str | None = None) -> tuple[dt.date | None, dt.date | None]:
    """(the last session before `day`, the first after it); None where the calendar has none."""
    try:
        before = previous_session(day, exchange)
    except CalendarRangeError:
        before = None
    try:
        after = next_session(day, exchange)
    except ValueError:
        after = None
    return before, after


def weekday_closures(start: dt.date | str, exchange: str | None = None) -> list[dt.date]:
    """Trading weekdays (by the exchange's weekmask) from `start` to the calendar's end on which the
    exchange is closed.

    Holidays and special closures (for the NYSE 2001-09-11..14, 2012-10-29/30, 2025-01-09) alike;
    weekends are excluded separately by a cron rule (`weekend_cron`).
    """
    sessions = _sessions(exchange)
    mask = " ".join(
        day for day, flag in zip(["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], weekmask(exchange)) if flag == "1"
    )
    weekdays = pd.bdate_range(_supported(start, exchange), sessions[-1], freq="C", weekmask=mask)
    closed = weekdays.difference(sessions)
    return [ts.date() for ts in closed]
