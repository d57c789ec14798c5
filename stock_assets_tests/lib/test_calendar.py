import datetime as dt

import pytest

from stock_assets.lib import calendar


@pytest.mark.parametrize(
    "day", ["2024-12-25", "2024-07-04", "2023-11-23", "2001-09-11", "2001-09-14", "2012-10-29", "2012-10-30", "2025-01-09"]
)
def test_holidays_and_special_closures_are_not_sessions(day):
    assert not calendar.is_session(day)
    assert day not in {d.isoformat() for d in calendar.sessions_between("2000-01-03", "2026-01-01")}


def test_friday_to_monday_and_holiday_skips():
    assert calendar.next_session("2024-06-14") == dt.date(2024, 6, 17)  # Friday -> Monday
    assert calendar.next_session("2024-06-15") == dt.date(2024, 6, 17)  # Saturday -> Monday
    assert calendar.previous_session("2024-06-17") == dt.date(2024, 6, 14)  # Monday -> Friday
    assert calendar.next_session("2024-07-03") == dt.date(2024, 7, 5)  # over Independence Day
    assert calendar.next_session("2012-10-26") == dt.date(2012, 10, 31)  # over hurricane Sandy
    assert calendar.next_session("2025-01-08") == dt.date(2025, 1, 10)  # over the day of mourning
    assert calendar.offset_session("2024-06-17", -1) == dt.date(2024, 6, 14)
    with pytest.raises(ValueError, match="not an XNYS trading session"):
        calendar.offset_session("2024-06-15", 1)
