import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from stock_assets.lib import trading_calendar
from stock_assets.partitions import build_trading_day_partitions, session_keys

trading_day_partitions = build_trading_day_partitions(dt.date(2004, 8, 19))


def test_partition_keys_are_exactly_the_sessions():
    keys = trading_day_partitions.get_partition_keys()
    assert keys[0] == "2004-08-19"
    expected = [d.isoformat() for d in trading_calendar.sessions_between("2004-08-19", keys[-1])]
    assert keys == expected
    # 2004-08-19..2013-03-01 is the bundled sample: 2,148 sessions
    assert len(session_keys("2004-08-19", "2013-03-01")) == 2148
    assert session_keys("2012-10-25", "2012-11-01") == ["2012-10-25", "2012-10-26", "2012-10-31", "2012-11-01"]


def test_end_offset_exposes_the_session_that_opens_today():
    partitions = build_trading_day_partitions(dt.date(2024, 1, 2))
    # On Friday 2024-06-14 at 10:00 New York time, that day's session is already a partition.
    now = dt.datetime(2024, 6, 14, 10, tzinfo=ZoneInfo("America/New_York"))
    keys = partitions.get_partition_keys(current_time=now)
    assert keys[-1] == "2024-06-14"
    assert "2024-06-15" not in keys


def test_start_date_must_be_a_session():
    with pytest.raises(ValueError, match=r"not an XNYS \(America/New_York\) session"):
        build_trading_day_partitions(dt.date(2004, 8, 21))


def test_partitions_end_with_the_data_the_source_serves():
    from stock_assets.settings import Settings

    sample = Settings()
    assert sample.last_session == dt.date(2013, 3, 1)  # the bundled sample's last session
    keys = build_trading_day_partitions(sample.start_date, sample.last_session).get_partition_keys()
    assert (keys[0], keys[-1], len(keys)) == ("2004-08-19", "2013-03-01", 2148)
    csv = Settings(source="csv", csv_path="prices", end_date="2010-12-31")
    keys = build_trading_day_partitions(csv.start_date, csv.last_session).get_partition_keys()
    assert keys[-1] == "2010-12-31"
    assert Settings(source="yfinance").last_session is None  # open-ended: today's session
    with pytest.raises(ValueError, match="end_date 2010-12-25 is not an XNYS"):
        build_trading_day_partitions(csv.start_date, dt.date(2010, 12, 25))
    with pytest.raises(ValueError, match="must lie between start_date"):
        Settings(source="csv", csv_path="prices", end_date="2003-01-02")
