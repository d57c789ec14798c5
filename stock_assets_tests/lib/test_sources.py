import datetime as dt
import time

import pandas as pd
import pytest
from yfinance.exceptions import YFRateLimitError, YFTickerMissingError

from stock_assets.lib.prices import PRICE_FRAME_COLUMNS, PriceDataError, normalize_price_frame
from stock_assets.lib.sources import (
    CsvPriceSource,
    PriceSourceError,
    SamplePriceSource,
    YFinancePriceSource,
    load_sample_prices,
)

D = dt.date.fromisoformat
GOOD_CSV = """date,ticker,open,high,low,close,adj_close,volume
2024-06-13,ACME,10,11,9.5,10.5,10.4,1000
2024-06-14,ACME,10.5,11.2,10.1,11,10.9,1200
2024-06-17,ACME,11,11.5,10.8,11.2,11.1,900
"""


def test_sample_is_the_documented_public_domain_series():
    data = load_sample_prices()
    counts = data.groupby("ticker")["date"].agg(["min", "max", "count"])
    assert counts.loc["AAPL"].tolist() == ["2000-03-01", "2013-03-01", 3270]
    assert counts.loc["GOOG"].tolist() == ["2004-08-19", "2013-03-01", 2148]
    assert list(data.columns) == PRICE_FRAME_COLUMNS
    frame = SamplePriceSource().fetch(["AAPL", "MSFT"], D("2012-10-25"), D("2012-11-01"))
    assert sorted(frame["date"].unique()) == ["2012-10-25", "2012-10-26", "2012-10-31", "2012-11-01"]
    assert len(frame) == 8


def test_sample_unknown_ticker_names_what_exists():
    with pytest.raises(PriceSourceError, match=r"no data for \['TSLA'\].*ships \['AAPL', 'GOOG', 'IBM', 'MSFT'\]"):
        SamplePriceSource().fetch(["AAPL", "TSLA"], D("2010-01-04"), D("2010-01-08"))


def _write(tmp_path, text, name="prices.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_file_and_directory(tmp_path):
    frame = CsvPriceSource(_write(tmp_path, GOOD_CSV)).fetch(["ACME"], D("2024-06-14"), D("2024-06-17"))
    assert frame["date"].tolist() == ["2024-06-14", "2024-06-17"]
    assert frame["dividends"].tolist() == [0.0, 0.0]
    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "ZZZ.csv").write_text(GOOD_CSV.replace(",ACME", "").replace("ticker,", ""))
    frame = CsvPriceSource(folder).fetch(["ZZZ"], D("2024-06-13"), D("2024-06-17"))
    assert frame["ticker"].unique().tolist() == ["ZZZ"] and len(frame) == 3


def test_csv_missing_path_and_ticker(tmp_path):
    with pytest.raises(PriceSourceError, match="does not exist"):
        CsvPriceSource(tmp_path / "nope.csv").fetch(["ACME"], D("2024-06-13"), D("2024-06-17"))
    with pytest.raises(PriceSourceError, match=r"no rows for \['XYZ'\]"):
        CsvPriceSource(_write(tmp_path, GOOD_CSV)).fetch(["XYZ"], D("2024-06-13"), D("2024-06-17"))


def _history(dates, tz="America/New_York"):
    index = pd.DatetimeIndex(pd.to_datetime(dates)).tz_localize(tz)
    n = len(dates)
    columns = {"Open": 10.0, "High": 11.0, "Low": 9.0, "Close": 10.5, "Adj Close": 10.4, "Volume": 100}
    columns |= {"Dividends": 0.0, "Stock Splits": 0.0}
    return pd.DataFrame({name: [value] * n for name, value in columns.items()}, index=index)


class FakeTicker:
    """Stands in for yfinance.Ticker at its function boundary; records every call."""

    def __init__(self, script):
        self.script = script
        self.calls = []

    def __call__(self, symbol):
        outer = self

        class _T:
            def history(self, **kwargs):
                outer.calls.append((symbol, kwargs))
                step = outer.script.pop(0) if outer.script else "ok"
                if isinstance(step, BaseException):
                    raise step
                if step == "stall":
                    time.sleep(30)
                if step == "empty":
                    return pd.DataFrame()
                history = _history(["2024-06-13", "2024-06-14", "2024-06-17"])
                if step == "fund":
                    history["Capital Gains"] = 0.0
                if step == "jump":
                    history["Adj Close"] = [10.4, 30.0, 30.0]
                return history

        return _T()


def test_yfinance_pins_behaviour_and_converts_exchange_dates():
    fake = FakeTicker([])
    frame = YFinancePriceSource(ticker_factory=fake).fetch(["ACME"], D("2024-06-13"), D("2024-06-17"))
    assert frame["date"].tolist() == ["2024-06-13", "2024-06-14", "2024-06-17"]
    assert frame["adj_close"].tolist() == [10.4] * 3
    _, kwargs = fake.calls[0]
    assert kwargs["auto_adjust"] is False and kwargs["actions"] is True and kwargs["raise_errors"] is True
    assert kwargs["end"] == "2024-06-18"  # yfinance's end is exclusive


def test_yfinance_fund_columns_and_move_settings():
    frame = YFinancePriceSource(ticker_factory=FakeTicker(["fund"])).fetch(["ACME"], D("2024-06-13"), D("2024-06-17"))
    assert list(frame.columns) == PRICE_FRAME_COLUMNS
    with pytest.raises(PriceDataError, match=r"yfinance \['ACME'\]: one-day adj_close move.*2024-06-14 ACME"):
        YFinancePriceSource(ticker_factory=FakeTicker(["jump"])).fetch(["ACME"], D("2024-06-13"), D("2024-06-17"))
    source = YFinancePriceSource(ticker_factory=FakeTicker(["jump"]), accepted_moves=[("ACME", "2024-06-14")])
    assert len(source.fetch(["ACME"], D("2024-06-13"), D("2024-06-17"))) == 3


def test_yfinance_retries_rate_limits_with_backoff():
    sleeps = []
    fake = FakeTicker([YFRateLimitError(), YFRateLimitError()])
    source = YFinancePriceSource(ticker_factory=fake, backoff_seconds=1.5, sleep=sleeps.append)
    assert len(source.fetch(["ACME"], D("2024-06-13"), D("2024-06-17"))) == 3
    assert sleeps == [1.5, 3.0]
    fake = FakeTicker([YFRateLimitError()] * 3)
    with pytest.raises(PriceSourceError, match="rate-limited 3 times"):
        source = YFinancePriceSource(ticker_factory=fake, max_retries=2, sleep=lambda s: None)
        source.fetch(["ACME"], D("2024-06-13"), D("2024-06-17"))


def test_yfinance_network_down_fails_within_seconds():
    source = YFinancePriceSource(ticker_factory=FakeTicker(["stall"]), timeout_seconds=1)
    start = time.monotonic()
    with pytest.raises(PriceSourceError, match="no answer within 1 s"):
        source.fetch(["ACME"], D("2024-06-13"), D("2024-06-17"))
    assert time.monotonic() - start < 5


def test_yfinance_empty_answer_on_trading_days_is_an_error():
    with pytest.raises(PriceSourceError, match="empty answer for 3 trading session"):
        YFinancePriceSource(ticker_factory=FakeTicker(["empty"])).fetch(["ACME"], D("2024-06-13"), D("2024-06-17"))


def test_yfinance_unknown_ticker():
    fake = FakeTicker([YFTickerMissingError("NOPE", "possibly delisted")])
    with pytest.raises(PriceSourceError, match="unknown or delisted"):
        YFinancePriceSource(ticker_factory=fake).fetch(["NOPE"], D("2024-06-13"), D("2024-06-17"))


def test_normalize_keeps_schema_order():
    frame = normalize_price_frame(pd.read_csv(pd.io.common.StringIO(GOOD_CSV)), "inline")
    assert list(frame.columns) == PRICE_FRAME_COLUMNS and len(frame) == 3
