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


# --- any exchange (issue 23) -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "exchange, zone, run_at, closed, traded",
    [
        ("XNYS", "America/New_York", (18, 30), "2023-07-04", "2023-09-28"),
        ("XKRX", "Asia/Seoul", (18, 0), "2023-09-28", "2023-07-04"),  # Chuseok; the NYSE's Independence Day
        ("XLON", "Europe/London", (19, 0), "2023-08-28", "2023-07-04"),  # summer bank holiday
    ],
)
def test_each_exchange_has_its_own_sessions_zone_and_run_time(exchange, zone, run_at, closed, traded):
    assert trading_calendar.timezone(exchange) == zone
    assert trading_calendar.daily_run_time(exchange) == run_at
    assert not trading_calendar.is_session(closed, exchange) and trading_calendar.is_session(traded, exchange)
    expected = exchange_calendars.get_calendar(exchange, start="2022-01-03").sessions_in_range(
        "2023-01-02", "2023-12-29"
    )
    assert trading_calendar.sessions_between("2023-01-02", "2023-12-29", exchange) == [d.date() for d in expected]
    with trading_calendar.using_exchange(exchange):
        assert (exchange, zone) == (trading_calendar.EXCHANGE, trading_calendar.TIMEZONE)
        assert trading_calendar.previous_session(trading_calendar.next_session(closed)) < dt.date.fromisoformat(closed)
        assert dt.date.fromisoformat(closed) in trading_calendar.weekday_closures("2023-01-02")
    assert trading_calendar.EXCHANGE == "XNYS"  # restored


def test_the_nyse_partitions_are_unchanged_by_the_exchange_setting():
    """XNYS stays the default with the same weekend rule, closures and zone as before the setting."""
    assert trading_calendar.active_exchange() == "XNYS"
    assert trading_calendar.weekend_cron() == "0 0 * * 0,6"
    assert dt.date(1980, 1, 2) == trading_calendar.EARLIEST_SESSION
    from stock_assets.partitions import build_trading_day_partitions

    nyse = build_trading_day_partitions(dt.date(2004, 8, 19), dt.date(2013, 3, 1))
    london = build_trading_day_partitions(dt.date(2004, 8, 19), dt.date(2013, 3, 1), exchange="XLON")
    assert nyse.timezone == "America/New_York" and london.timezone == "Europe/London"
    assert len(nyse.get_partition_keys()) == 2148 and "2012-10-29" not in nyse.get_partition_keys()
    assert "2012-10-29" in london.get_partition_keys()  # London traded through hurricane Sandy


def test_an_unknown_exchange_lists_the_codes():
    with pytest.raises(trading_calendar.UnknownExchangeError, match="'NOPE' is not an exchange_calendars code.*XNYS"):
        trading_calendar.use_exchange("NOPE")
    assert trading_calendar.active_exchange() == "XNYS"


def test_nearest_sessions_of_a_closure():
    assert trading_calendar.nearest_sessions("2012-10-29") == (dt.date(2012, 10, 26), dt.date(2012, 10, 31))
