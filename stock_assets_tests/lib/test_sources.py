import datetime as dt
import re
import time

import numpy as np
import pandas as pd
import pytest
from yfinance.exceptions import YFRateLimitError, YFTickerMissingError

from stock_assets.lib import csv_source, trading_calendar
from stock_assets.lib.csv_source import CsvPriceSource
from stock_assets.lib.prices import MOVE_RULE, PRICE_FRAME_COLUMNS, PriceDataError, normalize_price_frame
from stock_assets.lib.sources import (
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


# --- csv source: a fetch validates its window (issue 12) -----------------------------------------
SESSIONS = [d.isoformat() for d in trading_calendar.sessions_between("2024-01-02", "2024-03-28")]
HEADER = "date,ticker,open,high,low,close,adj_close,volume"


def _bars(ticker: str, days, seed: int, adj=None) -> list[str]:
    """Valid rows for `days`: a random walk (daily moves ~2%), OHLC around it; adj_close fixed if given."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
    opens = close * np.exp(rng.normal(0, 0.005, len(days)))
    rows = []
    for day, o, c in zip(days, opens, close, strict=True):
        a = adj if adj is not None else round(c * 0.98, 6)
        high, low = max(o, c) * 1.01, min(o, c) * 0.99
        rows.append(f"{day},{ticker},{o:.6f},{high:.6f},{low:.6f},{c:.6f},{a},{rng.integers(100, 10_000)}")
    return rows


NO_ADJ = "date,ticker,open,high,low,close,volume,splits"


def _without_adj_close(row: str) -> str:
    fields = row.split(",")
    return ",".join(fields[:6] + fields[7:])


def _csv(lines, header=HEADER) -> str:
    return "\n".join([header, *lines]) + "\n"


def _folder(tmp_path, files: dict[str, str]):
    folder = tmp_path / "prices"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _basket_folder(tmp_path):
    """Several layouts: one ticker per file, two tickers in one file (one with a gap, one starting late),
    a ticker split over two files, a Yahoo export without a ticker column, one without an adjusted close."""
    s = SESSIONS
    bbb = {d: r for d, r in zip(s, _bars("BBB", s, 2), strict=True)}
    ccc = {d: r for d, r in zip(s[30:], _bars("CCC", s[30:], 3), strict=True)}
    multi = [row for d in s for row in (bbb.get(d) if not 20 <= s.index(d) < 30 else None, ccc.get(d)) if row]
    ddd = _bars("DDD", s, 4)
    yahoo = [r.replace(",EEE,", ",") for r in _bars("EEE", s, 5)]
    files = {
        "AAA.csv": _csv(_bars("AAA", s, 1)),
        "multi.csv": _csv(multi),
        "DDD-1.csv": _csv(ddd[:40]),
        "DDD-2.csv": _csv(ddd[40:]),
        "EEE.csv": _csv(yahoo, "Date,Open,High,Low,Close,Adj Close,Volume"),
        "ZZZ.csv": _csv([_without_adj_close(r).replace(",ZZZ,", ",zzz ,") + ",0" for r in _bars("ZZZ", s, 6)], NO_ADJ),
    }
    return _folder(tmp_path, files)


def _validate_everything_then_filter(folder, tickers, start, end) -> pd.DataFrame:
    """What the csv source returned before issue 12: every file's whole history validated, then the window."""
    frames = []
    for file in sorted(folder.iterdir()):
        raw = pd.read_csv(file, dtype=str)
        if "ticker" not in raw.columns:
            raw["ticker"] = file.stem
        frames.append(normalize_price_frame(raw, file.name))
    data = normalize_price_frame(pd.concat(frames, ignore_index=True), "all files")
    mask = data["ticker"].isin(tickers) & (data["date"] >= start) & (data["date"] <= end)
    return data.loc[mask].reset_index(drop=True)


def test_csv_fetch_of_any_window_equals_validating_everything_then_filtering(tmp_path):
    folder = _basket_folder(tmp_path)
    s = SESSIONS
    windows = [
        (s[0], s[-1]),  # everything
        (s[0], s[0]),  # the first session: no previous row
        (s[25], s[25]),  # BBB in its gap, CCC not listed yet
        (s[30], s[30]),  # BBB back after the gap (its previous row 10 sessions earlier), CCC's first day
        (s[31], s[33]),
        (s[40], s[40]),  # DDD's first row in its second file; the previous one is in the first
        (s[10], s[45]),
        (s[-1], s[-1]),
        ("2024-02-17", "2024-02-19"),  # a weekend and Presidents' Day: no session
        ("2023-11-01", "2023-12-29"),  # before every file
        ("2024-04-01", "2024-04-30"),  # after every file
    ]
    baskets = [["AAA", "BBB", "CCC", "DDD", "EEE"], ["CCC"], ["DDD", "EEE"], ["ZZZ", "BBB"]]
    for tickers in baskets:
        for first, last in windows:
            got = CsvPriceSource(folder).fetch(tickers, D(first), D(last))
            expected = _validate_everything_then_filter(folder, tickers, first, last)
            pd.testing.assert_frame_equal(got, expected, obj=f"{tickers} {first}..{last}")
    assert len(CsvPriceSource(folder).fetch(baskets[0], D(s[0]), D(s[-1]))) == 5 * len(s) - 10 - 30


def test_csv_validates_the_window_once_and_only_the_requested_rows(tmp_path, monkeypatch):
    folder = _basket_folder(tmp_path)
    seen = []

    def counting(frame, origin, **kwargs):
        seen.append(len(frame))
        return normalize_price_frame(frame, origin, **kwargs)

    monkeypatch.setattr(csv_source, "normalize_price_frame", counting)
    got = CsvPriceSource(folder).fetch(["AAA", "BBB", "DDD", "EEE"], D(SESSIONS[40]), D(SESSIONS[41]))
    assert len(got) == 8
    # One validation: two sessions of 4 tickers and each one's previous row, plus the 5 rows after the window
    # of DDD-2.csv, whose first row is in the window (sanity.first_row_sessions: a first row is checked too).
    assert seen == [4 * 3 + 5]


def test_csv_bad_row_outside_the_window_is_reported_when_its_window_is_fetched(tmp_path):
    bad = _bars("BBB", SESSIONS, 2)
    bad[5] = bad[5].rsplit(",", 1)[0] + ",-5"
    folder = _folder(tmp_path, {"AAA.csv": _csv(_bars("AAA", SESSIONS, 1)), "BBB.csv": _csv(bad)})
    source = CsvPriceSource(folder)
    assert len(source.fetch(["AAA", "BBB"], D(SESSIONS[20]), D(SESSIONS[25]))) == 12
    assert len(source.fetch(["AAA"], D(SESSIONS[5]), D(SESSIONS[5]))) == 1  # BBB not asked for
    message = f"BBB.csv: missing or negative volume: 1 row(s): {SESSIONS[5]} BBB (volume=-5)"
    for first, last in [(SESSIONS[0], SESSIONS[5]), (SESSIONS[5], SESSIONS[5]), (SESSIONS[6], SESSIONS[9])]:
        with pytest.raises(PriceDataError, match=re.escape(message)):  # the last row before the window counts
            source.fetch(["AAA", "BBB"], D(first), D(last))


@pytest.mark.parametrize(
    "date, fragment",
    [
        ("01/05/2024", "dates not in the accepted format YYYY-MM-DD (e.g. 2010-03-02) in 1 row(s): row 4 ZZZ"),
        ("2024-02-30", "row 4 ZZZ '2024-02-30'"),
        ("", "row 4 ZZZ ''"),
        ("2024-01-06", "dates that are not XNYS sessions (weekends/holidays) in 1 row(s): 2024-01-06 ZZZ"),
        ("1979-06-01", "dates before 1980-01-02"),
    ],
)
def test_csv_bad_dates_are_reported_for_any_window(tmp_path, date, fragment):
    """Unparseable, ambiguous or off-calendar dates: in any file, for any window and basket."""
    zzz = _bars("ZZZ", SESSIONS, 6)
    zzz[3] = zzz[3].replace(SESSIONS[3], date)
    folder = _folder(tmp_path, {"AAA.csv": _csv(_bars("AAA", SESSIONS, 1)), "ZZZ.csv": _csv(zzz)})
    with pytest.raises(PriceDataError, match=re.escape(f"CSV {folder / 'ZZZ.csv'}: ") + ".*" + re.escape(fragment)):
        CsvPriceSource(folder).fetch(["AAA"], D(SESSIONS[-1]), D(SESSIONS[-1]))


def test_csv_move_into_the_window_is_checked_against_the_last_row_before_it(tmp_path):
    early = _bars("DDD", SESSIONS[:10], 4, adj=10.0)
    late = _bars("DDD", SESSIONS[15:21], 4, adj=30.0)  # a gap of 5 sessions, then a jump
    folder = _folder(tmp_path, {"a.csv": _csv(early), "b.csv": _csv(late)})
    day = SESSIONS[15]
    with pytest.raises(PriceDataError, match=re.escape(f"(rows of all its files together): {MOVE_RULE}")) as caught:
        CsvPriceSource(folder).fetch(["DDD"], D(day), D(day))
    assert f"{day} DDD (previous_adj_close=10, adj_close=30" in str(caught.value)
    assert len(CsvPriceSource(folder).fetch(["DDD"], D(SESSIONS[16]), D(SESSIONS[20]))) == 5
    assert len(CsvPriceSource(folder, accepted_moves=[("DDD", day)]).fetch(["DDD"], D(day), D(day))) == 1


def test_csv_same_row_in_two_files_is_refused_within_the_window(tmp_path):
    rows = _bars("XYZ", SESSIONS[:10], 7)
    folder = _folder(tmp_path, {"XYZ.csv": _csv(rows), "XYZ-copy.csv": _csv(rows[7:])})
    source = CsvPriceSource(folder)
    assert len(source.fetch(["XYZ"], D(SESSIONS[2]), D(SESSIONS[5]))) == 4
    for first, last in [(SESSIONS[8], SESSIONS[9]), (SESSIONS[0], SESSIONS[9]), (SESSIONS[10], SESSIONS[12])]:
        with pytest.raises(PriceDataError, match=r"is in \['XYZ-copy.csv', 'XYZ.csv'\].*pair\(s\) in more than one"):
            source.fetch(["XYZ"], D(first), D(last))


def test_csv_ticker_listed_before_its_first_date_is_not_unknown(tmp_path):
    """A window before a ticker's first row is empty for it (the caller names the missing sessions);
    a ticker in no file at all is unknown."""
    folder = _folder(
        tmp_path, {"NEW.csv": _csv(_bars("NEW", SESSIONS[30:], 8)), "OLD.csv": _csv(_bars("OLD", SESSIONS, 9))}
    )
    got = CsvPriceSource(folder).fetch(["NEW", "OLD"], D(SESSIONS[10]), D(SESSIONS[11]))
    assert got["ticker"].tolist() == ["OLD", "OLD"]
    assert CsvPriceSource(folder).fetch(["NEW"], D(SESSIONS[10]), D(SESSIONS[11])).empty
    with pytest.raises(PriceSourceError, match=r"has no rows for \['NOPE'\]; found \['NEW', 'OLD'\]"):
        CsvPriceSource(folder).fetch(["NEW", "NOPE"], D(SESSIONS[10]), D(SESSIONS[11]))


def test_csv_splits_without_adjusted_close_are_refused_in_a_mixed_folder(tmp_path):
    old = [_without_adj_close(r) + ",0" for r in _bars("OLD", SESSIONS[:10], 9)]
    files = {"AAA.csv": _csv(_bars("AAA", SESSIONS[:10], 1)), "OLD.csv": _csv(old, NO_ADJ)}
    got = CsvPriceSource(_folder(tmp_path / "zero", files)).fetch(["AAA", "OLD"], D(SESSIONS[8]), D(SESSIONS[9]))
    assert (got.loc[got["ticker"] == "OLD", "adj_close"] == got.loc[got["ticker"] == "OLD", "close"]).all()
    old[9] = old[9][: -len(",0")] + ",2"
    folder = _folder(tmp_path / "split", {**files, "OLD.csv": _csv(old, NO_ADJ)})
    with pytest.raises(PriceDataError, match=r"OLD.csv: records stock splits but has no adj_close column"):
        CsvPriceSource(folder).fetch(["AAA", "OLD"], D(SESSIONS[8]), D(SESSIONS[9]))
