"""Any exchange (issue 23, item 5): the `exchange` setting drives the partitions, "next session", the
schedule's time zone and time, the validation messages, and tz-aware dates in the exchange's own zone
become its session dates. Synthetic Korean (XKRX) and London (XLON) baskets through a real instance
and warehouse, the stored rows read back."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import DagsterInstance

from stock_assets.defs import build_definitions
from stock_assets.lib import trading_calendar
from stock_assets.partitions import daily_schedule_time
from stock_assets.settings import SettingsError, load_settings
from stock_assets_tests.deployment.conftest import error_text
from stock_assets_tests.helpers import range_tags

FIRST, LAST = "2022-09-01", "2023-10-31"
BASKETS = {
    # exchange: (tickers, date format, a weekday that is no session there, a session that is an NYSE holiday)
    "XKRX": (("005930.KS", "000660.KS"), "{}T00:00:00+09:00", "2023-09-28", "2023-07-04"),  # Chuseok
    "XLON": (("VOD.L", "BP.L"), "{}", "2023-08-28", "2023-07-04"),  # summer bank holiday
}


def write_basket(folder, exchange):
    """One file per ticker named after it (no ticker column), dates as that market's vendors write them."""
    tickers, date_format, _, _ = BASKETS[exchange]
    sessions = [d.isoformat() for d in trading_calendar.sessions_between(FIRST, LAST, exchange)]
    rng = np.random.default_rng(1)
    folder.mkdir()
    for ticker in tickers:
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, len(sessions))))
        frame = pd.DataFrame(
            {
                "Date": [date_format.format(d) for d in sessions],
                "Open": close,
                "High": close * 1.01,
                "Low": close * 0.99,
                "Close": close,
                "Adj Close": close,
                "Volume": 1_000_000,
            }
        )
        frame.to_csv(folder / f"{ticker}.csv", index=False)
    return sessions


@pytest.fixture
def restore_exchange():
    """load_settings hands the exchange to the calendar for the process: put the previous one back."""
    with trading_calendar.using_exchange(trading_calendar.active_exchange()):
        yield


@pytest.mark.parametrize("exchange", sorted(BASKETS))
def test_a_basket_on_another_exchange_runs_on_its_calendar(tmp_path, restore_exchange, exchange):
    tickers, _, closed, open_there = BASKETS[exchange]
    sessions = write_basket(tmp_path / "prices", exchange)
    settings = load_settings(
        environ={
            "STOCK_ASSETS_EXCHANGE": exchange,
            "STOCK_ASSETS_SOURCE": "csv",
            "STOCK_ASSETS_CSV_PATH": str(tmp_path / "prices"),
            "STOCK_ASSETS_TICKERS": ",".join(tickers),
            "STOCK_ASSETS_START_DATE": sessions[0],
            "STOCK_ASSETS_END_DATE": sessions[-1],
            "STOCK_ASSETS_HOME": str(tmp_path / "home"),
            "STOCK_ASSETS_FEATURE_LOOKBACK": "220",
        }
    )
    assert trading_calendar.active_exchange() == exchange
    defs = build_definitions(settings)
    job = defs.resolve_job_def("price_history_job")
    keys = job.partitions_def.get_partition_keys()
    assert keys == sessions and closed not in keys and open_there in keys
    zone = {"XKRX": "Asia/Seoul", "XLON": "Europe/London"}[exchange]
    assert job.partitions_def.timezone == zone
    schedule = defs.resolve_schedule_def("daily_schedule")
    assert schedule.execution_timezone == zone  # the schedule runs in the exchange's time zone ...
    assert daily_schedule_time() == {"XKRX": (18, 0), "XLON": (19, 0)}[exchange]  # ... after its close
    assert (
        trading_calendar.next_session("2023-09-27")
        == {"XKRX": dt.date(2023, 10, 4), "XLON": dt.date(2023, 9, 28)}[exchange]
    )

    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, tags=range_tags(sessions[0], sessions[-1]))
        assert result.success
        refused = job.execute_in_process(instance=instance, tags={"dagster/partition": closed}, raise_on_error=False)
    assert not refused.success
    before, after = trading_calendar.nearest_sessions(closed)
    assert f"partition key {closed} is not a trading session of {exchange} ({zone})" in error_text(refused)
    assert f"the nearest sessions are {before} and {after}" in error_text(refused)

    with sa.create_engine(settings.warehouse_url).connect() as conn:
        prices = pd.read_sql("select date, ticker, close from raw_prices order by date, ticker", conn)
        features = pd.read_sql("select date, ticker from processed_features order by date, ticker", conn)
    assert sorted(prices["date"].unique()) == sessions  # tz-aware dates became the exchange's session dates
    assert set(prices["ticker"]) == set(tickers) and len(prices) == len(sessions) * len(tickers)
    assert len(features) > 0 and set(features["date"]) <= set(sessions[219:])


def test_a_file_of_another_market_names_the_exchange_setting(tmp_path, restore_exchange):
    """Korean dates (+09:00) with the default NYSE calendar: refused, saying what to set."""
    from stock_assets.lib.csv_source import CsvPriceSource
    from stock_assets.lib.prices import PriceDataError

    sessions = write_basket(tmp_path / "prices", "XKRX")
    with pytest.raises(PriceDataError) as caught:
        CsvPriceSource(tmp_path / "prices").fetch(["005930.KS"], dt.date(2023, 3, 2), dt.date(2023, 3, 10))
    message = str(caught.value)
    assert "XNYS (America/New_York)" in message and "set the `exchange` setting" in message and "XKRX" in message
    assert sessions


def test_the_exchange_setting_is_validated(tmp_path, restore_exchange):
    env = {"STOCK_ASSETS_HOME": str(tmp_path / "home")}
    with pytest.raises(SettingsError, match="'XXXX' is not an exchange_calendars code; use e.g. XNYS, XLON"):
        load_settings(environ={**env, "STOCK_ASSETS_EXCHANGE": "XXXX"})
    with pytest.raises(SettingsError, match="source 'sample' holds NYSE .XNYS. sessions but exchange is XKRX"):
        load_settings(environ={**env, "STOCK_ASSETS_EXCHANGE": "XKRX"})
    assert trading_calendar.active_exchange() == "XNYS"  # a refused setting changes nothing


def test_definitions_refuse_settings_whose_exchange_the_calendar_does_not_answer_for(tmp_path):
    from stock_assets_tests.conftest import TEST_SETTINGS

    settings = TEST_SETTINGS.model_copy(update={"home": tmp_path / "home", "exchange": "XLON"})
    with pytest.raises(ValueError, match="settings exchange is XLON but the trading calendar answers for XNYS"):
        build_definitions(settings)
