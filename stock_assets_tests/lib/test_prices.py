"""Input validation: every bad input is refused with a message that names what to fix."""

import datetime as dt
import gzip
import re

import numpy as np
import pandas as pd
import pytest

from stock_assets.lib import trading_calendar
from stock_assets.lib.csv_source import CsvPriceSource
from stock_assets.lib.prices import (
    ACCEPTED_COLUMNS,
    DIVIDEND_BOUND,
    DIVIDEND_IGNORED,
    MOVE_RULE,
    PRICE_FRAME_COLUMNS,
    SPLIT_BOUND,
    SPLIT_IGNORED,
    UNDECLARED_SPLIT,
    VOLUME_BOUND,
    PriceDataError,
    normalize_price_frame,
    price_problems,
)
from stock_assets.lib.sources import PriceSourceError, SamplePriceSource, load_sample_prices

D = dt.date.fromisoformat
SESSIONS = [d.isoformat() for d in trading_calendar.sessions_between("2024-06-03", "2024-06-14")]  # 10 sessions
HEADER = "date,ticker,open,high,low,close,adj_close,volume"


def rows(n=len(SESSIONS), ticker="ACME", fmt=str) -> list[str]:
    """n clean rows: open 10, high 11, low 9, close 10.5, adj_close 10.4, volume 1000."""
    return [f"{fmt(d)},{ticker},10,11,9,10.5,10.4,1000" for d in SESSIONS[:n]]


def csv(lines, header=HEADER) -> str:
    return "\n".join([header, *lines]) + "\n"


def swap(lines, i, old, new) -> list[str]:
    """Replace field `old` by `new` in row i (whole fields only)."""
    lines = list(lines)
    fields = lines[i].split(",")
    fields[fields.index(old)] = new
    lines[i] = ",".join(fields)
    return lines


def us_date(day: str) -> str:
    return f"{day[5:7]}/{day[8:10]}/{day[:4]}"


GOOD = csv(rows())
R = rows()


def case(name, files, *fragments):
    """A bad input: the files of a csv folder and fragments its error message must contain."""
    return pytest.param(files, fragments, id=name)


def one(text):
    return {"prices.csv": text}


def with_column(header, last_value, other_values="0"):
    """R plus one column whose last row holds `last_value`."""
    return csv([r + f",{other_values}" for r in R[:-1]] + [R[-1] + f",{last_value}"], f"{HEADER},{header}")


NO_ADJ_HEADER = HEADER.replace("adj_close,", "")
SPLIT_HEADER = HEADER + ",stock_splits"
# The last session halves close and adj_close alike: a 2-for-1 split the adjusted series does not reflect.
HALVED = f"{SESSIONS[-1]},ACME,5,5.5,4.5,5.25,5.2,1000"
# Issue 23: what vendors get wrong, each refusal naming ticker, session, value, rule and setting.
SANITY_INPUTS = [
    case(
        "split missing from adj_close",
        one(csv([r + ",0" for r in R[:-1]] + [HALVED + ",2"], SPLIT_HEADER)),
        SPLIT_IGNORED,
        f"{SESSIONS[-1]} ACME (stock_splits=2, previous_adj_close=10.4, adj_close=5.2, log_return=-0.69",
        "sanity.split_tolerance",
        f"accepted_moves: [[ACME, {SESSIONS[-1]}]]",
    ),
    case(
        "undeclared split",
        one(csv(R[:-1] + [HALVED])),
        UNDECLARED_SPLIT,
        f"{SESSIONS[-1]} ACME (previous_adj_close=10.4, adj_close=5.2",
        "sanity.undeclared_split_tolerance",
    ),
    case("volume 1e308", one(csv(swap(R, 4, "1000", "1e308"))), VOLUME_BOUND, f"{SESSIONS[4]} ACME (volume=1e+308)"),
    case(
        "dividends 1e6",
        one(with_column("Dividends", "1e6")),
        DIVIDEND_BOUND,
        f"{SESSIONS[-1]} ACME (dividends=1e+06, close=10.5)",
        "sanity.max_dividend_fraction",
    ),
    case(
        "splits 1e6",
        one(with_column("Stock Splits", "1e6")),
        SPLIT_BOUND,
        f"{SESSIONS[-1]} ACME (stock_splits=1e+06)",
        "sanity.max_split_ratio",
    ),
    case(
        "dividend missing from adj_close",
        one(with_column("Dividends", "0.5")),
        DIVIDEND_IGNORED,
        f"{SESSIONS[-1]} ACME (dividends=0.5, close=10.5, adj_close=10.4)",
        "sanity.dividend_min_fraction",
    ),
    case(
        "ticker disagrees with the file name",
        {"MSFT.csv": GOOD},
        "MSFT.csv: the file name says MSFT but its ticker column holds ['ACME']",
        "rename the file",
        "sanity.file_name_ticker",
    ),
    case(
        "index column",
        one(csv([f"{i},{r}" for i, r in enumerate(R)], "," + HEADER)),
        "prices.csv: a column has no name (read as 'Unnamed: 0')",
        "index=False",
    ),
    case(
        "Korean dates with the NYSE calendar",
        one(csv([r.replace(d, f"{d}T00:00:00+09:00") for r, d in zip(R, SESSIONS, strict=True)])),
        "not midnight in the exchange's time zone XNYS (America/New_York)",
        f"'{SESSIONS[0]}T00:00:00+09:00'",
        "set the `exchange` setting",
        "XKRX",
    ),
]
BAD_INPUTS = [
    case(
        "us dates",
        one(csv(rows(fmt=us_date))),
        "prices.csv",
        "10 row(s)",
        "row 1 ACME '06/03/2024'",
        "(+5 more)",
        "YYYY-MM-DD",
    ),
    case(
        "day-first date",
        one(csv(swap(R, 1, SESSIONS[1], "04/06/2024"))),
        "prices.csv",
        "1 row(s): row 2 ACME '04/06/2024'",
        "accepted format YYYY-MM-DD",
    ),
    case("unpadded date", one(csv(swap(R, 2, SESSIONS[2], "2024-6-5"))), "row 3 ACME '2024-6-5'", "YYYY-MM-DD"),
    case("compact date", one(csv(swap(R, 0, SESSIONS[0], "20240603"))), "row 1 ACME '20240603'", "YYYY-MM-DD"),
    case(
        "date with time",
        one(csv(swap(R, 0, SESSIONS[0], "2024-06-03 00:00:00"))),
        "'2024-06-03 00:00:00'",
        "YYYY-MM-DD",
    ),
    case("impossible date", one(csv(swap(R, 0, SESSIONS[0], "2024-02-30"))), "'2024-02-30'", "YYYY-MM-DD"),
    case("missing date", one(csv(swap(R, 0, SESSIONS[0], ""))), "row 1 ACME ''", "YYYY-MM-DD"),
    case(
        "time zone",
        one(csv(swap(R, 0, SESSIONS[0], "2024-06-03T00:00:00-04:00"))),
        "prices.csv",
        "time zone",
        "2024-06-03T00:00:00-04:00",
        "YYYY-MM-DD",
    ),
    case(
        "unknown column",
        one(csv([r + ",x" for r in R], HEADER + ",notes")),
        "prices.csv",
        "unknown columns ['notes']",
        ACCEPTED_COLUMNS,
    ),
    case(
        "ticker and symbol",
        one(csv([r + ",ACME" for r in R], HEADER + ",symbol")),
        "prices.csv",
        "['ticker', 'symbol'] all mean ticker",
        "keep only one",
    ),
    case(
        "two adjusted closes",
        one(csv([r + ",1" for r in R], HEADER + ",Adjusted")),
        "['adj_close', 'Adjusted'] all mean adj_close",
    ),
    case(
        "missing column",
        one("date,ticker,open,high,low,volume\n2024-06-14,ACME,1,2,1,5\n"),
        "prices.csv",
        "missing columns ['close']",
        ACCEPTED_COLUMNS,
    ),
    case(
        "stray text file in folder",
        {"ACME.csv": GOOD, "notes.csv": "remember to\nbuy low, sell high\n"},
        "notes.csv",
        "missing columns ['date', 'open', 'high', 'low', 'close', 'volume']",
        "unknown columns ['remember to']",
        "not a price file, move it out",
        ACCEPTED_COLUMNS,
    ),
    case(
        "bad file in folder is named",
        {"ACME.csv": GOOD, "bbb.csv.gz": csv(R, HEADER.replace("close,adj", "adj"))},
        "bbb.csv.gz:",
        "missing columns ['close']",
    ),
    case("unreadable file", one(""), "prices.csv", "cannot be read as CSV"),
    case("corrupt gzip", {"ACME.csv.gz": b"not gzip at all"}, "ACME.csv.gz", "cannot be read as CSV"),
    case(
        "split without adj_close",
        one(csv([r.replace(",10.4,", ",") + ",2" for r in R], NO_ADJ_HEADER + ",splits")),
        "prices.csv",
        "records stock splits but has no adj_close",
        "adj_close or adjusted or adjusted_close",
    ),
    case("missing ticker", one(csv(swap(R, 3, "ACME", ""))), "row(s) 4", "ticker (or symbol)"),
    case(
        "non-numeric",
        one(csv(swap(R, 1, "11", "$11"))),
        "prices.csv",
        "non-numeric high",
        "2024-06-04 ACME (high='$11')",
        "plain numbers",
    ),
    case(
        "high below open/close",
        one(csv(swap(R, 1, "11", "10.2"))),
        "high below open/close: 1 row(s): 2024-06-04 ACME (high=10.2, open=10, close=10.5)",
        "high must be >= max(open, close)",
    ),
    case(
        "low above open/close",
        one(csv(swap(R, 2, "9", "10.1"))),
        "low above open/close",
        "2024-06-05 ACME (low=10.1, open=10, close=10.5)",
        "low must be",
    ),
    case(
        "zero low",
        one(csv(swap(R, 2, "9", "0"))),
        "non-finite or non-positive price",
        "2024-06-05 ACME",
        "low=0",
        "finite number > 0",
    ),
    case("negative close", one(csv(swap(R, 2, "10.5", "-10.5"))), "non-positive price", "close=-10.5"),
    case("infinite price", one(csv(swap(R, 2, "10.4", "inf"))), "non-finite", "adj_close=inf"),
    case("empty price", one(csv(swap(R, 2, "10.4", ""))), "non-finite", "2024-06-05 ACME", "adj_close=nan"),
    case(
        "negative volume",
        one(csv(swap(R, 1, "1000", "-5"))),
        "missing or negative volume",
        "2024-06-04 ACME (volume=-5)",
        "volume must be a number >= 0",
    ),
    case(
        "negative dividends",
        one(with_column("Dividends", "-0.2")),
        "missing or negative dividends",
        "2024-06-14 ACME (dividends=-0.2)",
        "dividends must be",
    ),
    case(
        "negative split",
        one(with_column("Stock Splits", "-2")),
        "stock_splits",
        "2024-06-14 ACME (stock_splits=-2)",
        "0 (no split) or the split ratio > 0",
    ),
    case(
        "one-day move",
        one(csv(R[:4] + [r.replace(",10.4,", ",30,") for r in R[4:]])),
        "prices.csv",
        MOVE_RULE,
        "2024-06-07 ACME (previous_adj_close=10.4, adj_close=30, log_return=1.0",
        "accepted_moves: [[ACME, 2024-06-07]]",
        "max_abs_log_return",
    ),
    case(
        "before the calendar",
        one(csv([r.replace("2024-", "1979-") for r in R[:1]])),
        "prices.csv",
        "before 1980-01-02",
        "1979-06-03 ACME",
        "drop those rows",
    ),
    case(
        "not a session",
        one(csv(swap(R, 8, SESSIONS[8], "2024-06-15"))),
        "prices.csv",
        "not XNYS sessions",
        "set the `exchange` setting",
        "2024-06-15 ACME",
    ),
    case("duplicate row", one(csv(R + R[-1:])), "prices.csv", "duplicate (date, ticker)", "2024-06-14 ACME"),
    case("out of order", one(csv(R[::-1])), "prices.csv", "out of order for ['ACME']", "sort"),
    case(
        "same rows in two files",
        {"ACME.csv": GOOD, "ACME.csv.gz": GOOD},
        "ACME 2024-06-03 is in ['ACME.csv', 'ACME.csv.gz']",
        "10 (date, ticker) pair(s)",
        "one file",
    ),
]


BAD_INPUTS += SANITY_INPUTS


def write_folder(folder, files):
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        data = text if isinstance(text, bytes) else text.encode()
        if name.endswith(".gz") and not isinstance(text, bytes):
            data = gzip.compress(data)
        (folder / name).write_bytes(data)
    return folder


@pytest.mark.parametrize("files, fragments", BAD_INPUTS)
def test_bad_input_is_refused_with_what_to_fix(tmp_path, files, fragments):
    folder = write_folder(tmp_path / "prices", files)
    with pytest.raises((PriceDataError, PriceSourceError)) as caught:
        CsvPriceSource(folder).fetch(["ACME"], D("2024-06-03"), D("2024-06-14"))
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert len(message) < 900, message


def frame(**columns) -> pd.DataFrame:
    base = pd.read_csv(pd.io.common.StringIO(GOOD))
    return base.assign(**columns)


@pytest.mark.parametrize(
    "dates, fragment",
    [
        (pd.to_datetime(SESSIONS).tz_localize("Asia/Seoul"), "time zone"),
        (pd.to_datetime(SESSIONS) + pd.Timedelta(hours=16), "time of day"),
    ],
)
def test_datetime_columns_need_plain_dates(dates, fragment):
    with pytest.raises(PriceDataError, match=f"inline: .*{fragment}.*YYYY-MM-DD"):
        normalize_price_frame(frame(date=dates), "inline")


def test_datetime_column_at_midnight_is_accepted():
    assert normalize_price_frame(frame(date=pd.to_datetime(SESSIONS)), "inline")["date"].tolist() == SESSIONS


def test_yahoo_export_layout(tmp_path):
    """As saved by Yahoo or re-saved by Excel (with a byte-order mark)."""
    text = "\ufeffDate,Open,High,Low,Close,Adj Close,Volume\n" + "\n".join(
        f"{d},10,11,9,10.5,{10 + i / 100},1000" for i, d in enumerate(SESSIONS)
    )
    (tmp_path / "AAPL.csv").write_text(text + "\n")
    got = CsvPriceSource(tmp_path / "AAPL.csv").fetch(["AAPL"], D("2024-06-03"), D("2024-06-14"))
    assert list(got.columns) == PRICE_FRAME_COLUMNS
    assert got["ticker"].unique().tolist() == ["AAPL"]
    assert got["adj_close"].tolist() == [10 + i / 100 for i in range(len(SESSIONS))]
    assert got["dividends"].eq(0).all() and got["stock_splits"].eq(0).all()


def test_symbol_adjusted_layout_takes_adj_close_from_adjusted(tmp_path):
    text = "Symbol,Date,Open,High,Low,Close,Volume,Adjusted,Dividend,Stock_Splits\n" + "\n".join(
        f"msft,{d},10,11,9,10.5,1000,7.25,0,0" for d in SESSIONS
    )
    path = tmp_path / "vendor.csv"
    path.write_text(text + "\n")
    got = CsvPriceSource(path).fetch(["MSFT"], D("2024-06-03"), D("2024-06-14"))
    assert got["adj_close"].eq(7.25).all() and got["close"].eq(10.5).all()
    assert got["ticker"].unique().tolist() == ["MSFT"]


def test_csv_gz_folder_mixed_with_csv(tmp_path):
    no_ticker = csv(rows()).replace("ticker,", "").replace("ACME,", "")
    files = {
        "AAPL.csv.gz": GOOD.replace(",ACME,", ",AAPL,"),
        "MSFT.CSV": no_ticker,
        "BRK.B.csv.gz": no_ticker,
        "README.md": "not a price file",
        ".~lock.AAPL.csv": "ignored: hidden",
    }
    folder = write_folder(tmp_path / "mixed", files)
    got = CsvPriceSource(folder).fetch(["AAPL", "BRK.B", "MSFT"], D("2024-06-03"), D("2024-06-14"))
    assert got.groupby("ticker").size().to_dict() == {"AAPL": 10, "BRK.B": 10, "MSFT": 10}


def test_csv_without_adjusted_close_uses_close(tmp_path):
    path = tmp_path / "ACME.csv"
    path.write_text(csv([r.replace(",10.4,", ",") for r in rows()], HEADER.replace("adj_close,", "")))
    got = CsvPriceSource(path).fetch(["ACME"], D("2024-06-03"), D("2024-06-14"))
    assert (got["adj_close"] == got["close"]).all()


def test_a_1985_history_passes_the_calendar(tmp_path):
    days = [d.isoformat() for d in trading_calendar.sessions_between("1985-01-01", "1985-12-31")]
    assert "1985-09-27" not in days  # hurricane Gloria closed the exchange
    text = csv([f"{d},OLD,10,11,9,10.5,10.4,1000" for d in days])
    (tmp_path / "old.csv").write_text(text)
    got = CsvPriceSource(tmp_path / "old.csv").fetch(["OLD"], D("1985-01-01"), D("1985-12-31"))
    assert got["date"].tolist() == days and len(days) == 252


@pytest.mark.parametrize("day", ["2024-06-07", D("2024-06-07"), dt.datetime(2024, 6, 7)])
def test_an_accepted_move_passes(tmp_path, day):
    path = tmp_path / "ACME.csv"
    path.write_text(csv(R[:4] + [r.replace(",10.4,", ",30,") for r in R[4:]]))
    got = CsvPriceSource(path, accepted_moves=[("acme", day)]).fetch(["ACME"], D("2024-06-03"), D("2024-06-14"))
    assert len(got) == 10
    assert len(CsvPriceSource(path, max_abs_log_return=1.2).fetch(["ACME"], D("2024-06-03"), D("2024-06-14"))) == 10


def test_move_bound_is_checked_across_files(tmp_path):
    early = csv(R[:4])
    late = csv([r.replace(",10.4,", ",30,") for r in R[4:]])
    folder = write_folder(tmp_path / "years", {"a.csv": early, "b.csv": late})
    with pytest.raises(PriceDataError, match=re.escape(f"CSV {folder} (rows of all its files together): {MOVE_RULE}")):
        CsvPriceSource(folder).fetch(["ACME"], D("2024-06-03"), D("2024-06-14"))


@pytest.mark.parametrize("bad", [[("ACME", "07/06/2024")], [("ACME",)], ["ACME"]])
def test_malformed_accepted_moves_are_a_config_error(bad):
    with pytest.raises(ValueError, match="accepted_moves entry .* is not a \\(ticker, 'YYYY-MM-DD'\\) pair"):
        normalize_price_frame(frame(), "inline", accepted_moves=bad)


def test_sample_passes_every_rule_and_honours_the_move_settings():
    data = load_sample_prices()
    assert len(data) == 11958
    assert not any(price_problems(data, [], []).values())
    with pytest.raises(PriceDataError, match=r"sample.*2000-09-29 AAPL \(previous_adj_close=.*accepted_moves"):
        SamplePriceSource(max_abs_log_return=0.5).fetch(["AAPL"], D("2000-09-01"), D("2000-10-31"))
    source = SamplePriceSource(max_abs_log_return=0.5, accepted_moves=[("AAPL", "2000-09-29")])
    got = source.fetch(["AAPL"], D("2000-09-01"), D("2000-10-31"))
    assert len(got) == len(trading_calendar.sessions_between("2000-09-01", "2000-10-31"))


def test_price_problems_applies_the_same_rules():
    good = normalize_price_frame(frame(), "inline")
    bad = good.copy()
    bad.loc[1, "high"] = 10.2
    bad.loc[2, "volume"] = -1
    bad.loc[3, "dividends"] = np.nan
    bad.loc[4:, "adj_close"] = 30.0
    problems = price_problems(bad, ["ACME"], SESSIONS)
    failing = {name: found for name, found in problems.items() if found}
    assert failing == {
        "high below open/close": ["2024-06-04 ACME"],
        "missing or negative volume": ["2024-06-05 ACME"],
        "missing or negative dividends": ["2024-06-06 ACME"],
        MOVE_RULE: ["2024-06-07 ACME"],
    }
    fixed = bad.drop(index=[1, 2, 3])
    assert not any(price_problems(fixed, ["ACME"], [], accepted_moves=[("ACME", "2024-06-07")]).values())
    with pytest.raises(PriceDataError) as caught:
        normalize_price_frame(bad, "inline")
    assert all(name in str(caught.value) for name in failing)


def test_an_index_column_does_not_list_a_ticker_column_the_file_lacks(tmp_path):
    """A file named after its ticker (no ticker column) saved with its index."""
    (tmp_path / "ACME.csv").write_text(
        csv([f"{i},{r.replace(',ACME', '')}" for i, r in enumerate(R)], ",date,open,high,low,close,adj_close,volume")
    )
    (tmp_path / "other.csv").write_text(csv(R).replace("ticker", "weird"))
    with pytest.raises(PriceDataError) as caught:
        CsvPriceSource(tmp_path / "ACME.csv").fetch(["ACME"], D(SESSIONS[0]), D(SESSIONS[-1]))
    assert "has no name" in str(caught.value) and "ticker" not in str(caught.value).split("ACME.csv")[1]
    with pytest.raises(PriceDataError) as caught:
        CsvPriceSource(tmp_path / "other.csv").fetch(["ACME"], D(SESSIONS[0]), D(SESSIONS[-1]))
    assert "unknown columns ['weird']" in str(caught.value)
    assert "'ticker'" not in str(caught.value).split("found")[1].split("]")[0]  # found lists the file's own columns


@pytest.mark.parametrize(
    "case",
    ["split", "dividend", "undeclared"],
)
def test_correctly_adjusted_corporate_actions_pass(tmp_path, case):
    """The same events, adjusted as a vendor should: a split with adj_close continuous, a dividend
    whose factor shows in adj_close/close, a real halving listed in accepted_moves."""
    if case == "split":  # close halves (unadjusted), adj_close does not
        text = csv([r + ",0" for r in R[:-1]] + [f"{SESSIONS[-1]},ACME,5,5.5,4.5,5.25,10.4,1000,2"], SPLIT_HEADER)
        moves = ()
    elif case == "dividend":  # a 0.5 dividend: earlier adj_close scaled by 1 - 0.5/10.5
        factor = 1 - 0.5 / 10.5
        lines = [r.replace(",10.4,", f",{10.4 * factor:.6f},") + ",0" for r in R[:-1]] + [R[-1] + ",0.5"]
        text = csv(lines, HEADER + ",dividends")
        moves = ()
    else:
        text = csv(R[:-1] + [HALVED])
        moves = [("ACME", SESSIONS[-1])]
    (tmp_path / "ACME.csv").write_text(text)
    got = CsvPriceSource(tmp_path / "ACME.csv", accepted_moves=moves).fetch(["ACME"], D(SESSIONS[0]), D(SESSIONS[-1]))
    assert len(got) == len(SESSIONS)


def test_sanity_rules_are_settings_and_can_be_turned_off(tmp_path):
    from stock_assets.lib.prices import SanityRules

    (tmp_path / "ACME.csv").write_text(csv(swap(R, 4, "1000", "5e11")))
    with pytest.raises(PriceDataError, match="volume above sanity.max_volume"):
        CsvPriceSource(tmp_path / "ACME.csv").fetch(["ACME"], D(SESSIONS[0]), D(SESSIONS[-1]))
    loose = CsvPriceSource(tmp_path / "ACME.csv", rules=SanityRules(max_volume=1e12))
    assert loose.fetch(["ACME"], D(SESSIONS[0]), D(SESSIONS[-1]))["volume"].max() == 5e11


def test_a_first_row_is_checked_against_the_next_rows_even_when_only_it_is_fetched(tmp_path):
    (tmp_path / "ACME.csv").write_text(csv([all_prices(R[0], "1e12"), *R[1:]]))
    with pytest.raises(PriceDataError) as caught:
        CsvPriceSource(tmp_path / "ACME.csv").fetch(["ACME"], D(SESSIONS[0]), D(SESSIONS[0]))
    assert MOVE_RULE in str(caught.value) and "previous_adj_close=1e+12" in str(caught.value)


def all_prices(row: str, value: str) -> str:
    """`row` with open, high, low, close and adj_close all set to `value`."""
    date, ticker, *_, volume = row.split(",")
    return ",".join([date, ticker, *[value] * 5, volume])


@pytest.mark.parametrize(
    "exchange, stamps, expected",
    [
        ("XKRX", ["2023-09-27T00:00:00+09:00", "2023-10-04 00:00:00+0900"], ["2023-09-27", "2023-10-04"]),
        ("XLON", ["2023-08-25T00:00:00+01:00", "2023-12-01T00:00:00Z"], ["2023-08-25", "2023-12-01"]),
    ],
)
def test_tz_aware_dates_in_the_exchanges_zone_become_its_session_dates(exchange, stamps, expected):
    base = pd.DataFrame({"ticker": "X", "open": 10, "high": 11, "low": 9, "close": 10.5, "volume": 1}, index=[0, 1])
    with trading_calendar.using_exchange(exchange):
        got = normalize_price_frame(base.assign(date=stamps), "inline")
        assert got["date"].tolist() == expected
        aware = pd.to_datetime(expected).tz_localize(trading_calendar.TIMEZONE)
        assert normalize_price_frame(base.assign(date=aware), "inline")["date"].tolist() == expected
    with pytest.raises(PriceDataError, match="not midnight in the exchange's time zone XNYS"):
        normalize_price_frame(base.assign(date=stamps), "inline")


@pytest.mark.parametrize("jump", ["13.9", "12.9", "15.6"])  # +34%, +24%, +50%: 4:3, 5:4 and 3:2 look-alikes
def test_a_genuine_large_move_is_not_mistaken_for_a_split(tmp_path, jump):
    """Earnings and takeover days move 20-45%: only whole split ratios count as undeclared splits."""
    last = f"{SESSIONS[-1]},ACME,{jump},{jump},{jump},{jump},{jump},1000"
    (tmp_path / "ACME.csv").write_text(csv(R[:-1] + [last]))
    frame = CsvPriceSource(tmp_path / "ACME.csv").fetch(["ACME"], D(SESSIONS[0]), D(SESSIONS[-1]))
    assert frame["adj_close"].iloc[-1] == float(jump)
