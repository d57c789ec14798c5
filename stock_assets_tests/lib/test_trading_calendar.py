import datetime as dt

import exchange_calendars
import pytest

from stock_assets.lib import trading_calendar

CLOSURES = ["2024-12-25", "2024-07-04", "2023-11-23", "2001-09-11", "2001-09-14", "2012-10-29", "2012-10-30"]
CLOSURES += ["2025-01-09", "1980-01-01"]


@pytest.mark.parametrize("day", CLOSURES)
def test_holidays_and_special_closures_are_not_sessions(day):
    assert not trading_calendar.is_session(day)
    assert day not in {d.isoformat() for d in trading_calendar.sessions_between("2000-01-03", "2026-01-01")}


def test_friday_to_monday_and_holiday_skips():
    assert trading_calendar.next_session("2024-06-14") == dt.date(2024, 6, 17)  # Friday -> Monday
    assert trading_calendar.next_session("2024-06-15") == dt.date(2024, 6, 17)  # Saturday -> Monday
    assert trading_calendar.previous_session("2024-06-17") == dt.date(2024, 6, 14)  # Monday -> Friday
    assert trading_calendar.next_session("2024-07-03") == dt.date(2024, 7, 5)  # over Independence Day
    assert trading_calendar.next_session("2012-10-26") == dt.date(2012, 10, 31)  # over hurricane Sandy
    assert trading_calendar.next_session("2025-01-08") == dt.date(2025, 1, 10)  # over the day of mourning
    assert trading_calendar.offset_session("2024-06-17", -1) == dt.date(2024, 6, 14)
    with pytest.raises(ValueError, match="not an XNYS trading session"):
        trading_calendar.offset_session("2024-06-15", 1)


def test_history_back_to_1980():
    first = exchange_calendars.get_calendar(
        trading_calendar.EXCHANGE, start=trading_calendar.CALENDAR_START
    ).first_session
    assert (
        first.date()
        == trading_calendar.EARLIEST_SESSION
        == trading_calendar.sessions_between("1980-01-01", "1980-01-10")[0]
    )
    assert trading_calendar.is_session("1985-01-02") and trading_calendar.is_session(
        "1987-10-19"
    )  # Black Monday traded
    for closed in ["1980-11-04", "1985-09-27", "1994-04-27"]:  # election day, hurricane Gloria, Nixon's funeral
        assert not trading_calendar.is_session(closed)
    assert trading_calendar.previous_session("1985-01-02") == dt.date(1984, 12, 31)
    assert trading_calendar.offset_session("1985-01-02", -1) == dt.date(1984, 12, 31)
    assert dt.date(1985, 9, 27) in trading_calendar.weekday_closures("1985-01-01")


@pytest.mark.parametrize(
    "call",
    [
        lambda: trading_calendar.is_session("1979-12-31"),
        lambda: trading_calendar.sessions_between("1979-12-31", "1980-01-10"),
        lambda: trading_calendar.is_session(dt.date(1900, 1, 2)),
        lambda: trading_calendar.next_session("1979-06-01"),
        lambda: trading_calendar.previous_session(trading_calendar.EARLIEST_SESSION),
        lambda: trading_calendar.offset_session(trading_calendar.EARLIEST_SESSION, -1),
        lambda: trading_calendar.weekday_closures("1975-01-01"),
    ],
)
def test_dates_before_the_calendar_say_so(call):
    with pytest.raises(trading_calendar.CalendarRangeError, match="1980-01-02"):
        call()
