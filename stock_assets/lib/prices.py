"""The one price-frame schema: every source returns it, `raw_prices` stores it, checks verify it.

Bad input stops at `normalize_price_frame` with a message naming the file, the rows and the fix, so
nothing wrong reaches storage; the rules and their reasons are in docs/decisions.md, "Input validation".
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stock_assets.lib import trading_calendar

PRICE_COLUMNS = ["open", "high", "low", "close", "adj_close"]
NUMERIC_COLUMNS = [*PRICE_COLUMNS, "volume", "dividends", "stock_splits"]
PRICE_FRAME_COLUMNS = ["date", "ticker", *NUMERIC_COLUMNS]
OPTIONAL_DEFAULTS = {"dividends": 0.0, "stock_splits": 0.0}
DATE_FORMAT = "YYYY-MM-DD"
DEFAULT_MAX_ABS_LOG_RETURN = 1.0
# Vendor spellings per schema column; compared case-insensitively with spaces and underscores removed,
# so "Adj Close", "adj_close" and "AdjClose" are one name.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date",),
    "ticker": ("ticker", "symbol"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "adj_close": ("adj_close", "adjusted", "adjusted_close"),
    "volume": ("volume",),
    "dividends": ("dividends", "dividend"),
    "stock_splits": ("stock_splits", "splits"),
}
MOVE_RULE = "one-day adj_close move beyond max_abs_log_return"
# Whole split ratios (2-for-1, 1-for-10 ...): an adjusted move by one of these on a row without a split
# is a split the file does not declare. Fractional ratios (3-for-2, 5-for-4) are left out: real
# one-day moves of 20-45% happen (earnings, takeovers) and would be refused as splits.
COMMON_SPLIT_RATIOS = (2.0, 3.0, 4.0, 5.0, 10.0, 20.0)


@dataclass(frozen=True)
class SanityRules:
    """What vendors get wrong, refused before storage; each field is a setting of the `sanity` section
    (settings.py, docs/inputs-and-secrets.md) with the same default. 0 disables a tolerance rule."""

    split_tolerance: float = 0.1  # a declared split's ratio s: adj_close must not move by 1/s (+- this, log)
    undeclared_split_tolerance: float = 0.02  # adj_close moving by a common split ratio (+- this, log)
    dividend_min_fraction: float = 0.01  # dividends >= this share of the price must show in adj_close
    max_volume: float = 1e11  # shares per session
    max_dividend_fraction: float = 1.0  # a dividend above this share of the close is refused
    max_split_ratio: float = 1000.0  # stock_splits outside [1/max, max] (0 = no split) are refused
    first_row_sessions: int = 5  # a file's first row is validated with this many rows after it (csv source)
    file_name_ticker: bool = True  # AAPL.csv must hold AAPL's rows (csv source)


DEFAULT_RULES = SanityRules()
_SHOWN = 5
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_TIME_ZONE = r"(?:[+-]\d\d:?\d\d|Z)$"


class PriceDataError(ValueError):
    """Input prices are unusable; the message says what, where, and how to fix it."""


def _key(name: object) -> str:
    return re.sub(r"[\s_]+", "", str(name)).lower()


_ALIAS_TO_COLUMN = {_key(alias): column for column, aliases in COLUMN_ALIASES.items() for alias in aliases}
ACCEPTED_COLUMNS = ", ".join(
    column + (f" (or {', '.join(aliases[1:])})" if len(aliases) > 1 else "")
    for column, aliases in COLUMN_ALIASES.items()
)


def canonical_column(name: object) -> str | None:
    """The schema column a vendor's column name stands for, or None if it is not a price column."""
    return _ALIAS_TO_COLUMN.get(_key(name))


def _sample(values, n: int = _SHOWN) -> str:
    values = list(values)
    more = f" (+{len(values) - n} more)" if len(values) > n else ""
    return ", ".join(str(v) for v in values[:n]) + more


def _show_rows(frame: pd.DataFrame, mask, columns: Iterable[str] = ()) -> str:
    """'N row(s): date ticker (col=value, ...), ...' for the first offending rows."""
    rows = frame.loc[np.asarray(mask, dtype=bool)]
    columns = list(columns)

    def one(row) -> str:
        values = ", ".join(f"{c}={_fmt(row[c])}" for c in columns)
        return f"{row['date']} {row['ticker']}" + (f" ({values})" if values else "")

    more = f" (+{len(rows) - _SHOWN} more)" if len(rows) > _SHOWN else ""
    return f"{len(rows)} row(s): " + ", ".join(one(r) for _, r in rows.head(_SHOWN).iterrows()) + more


def _fmt(value) -> str:
    if isinstance(value, float | np.floating):
        return f"{value:.6g}"
    return repr(value) if isinstance(value, str) else str(value)


def normalize_price_frame(
    frame: pd.DataFrame,
    origin: str,
    *,
    max_abs_log_return: float = DEFAULT_MAX_ABS_LOG_RETURN,
    accepted_moves: Iterable[tuple[str, str | dt.date]] = (),
    rules: SanityRules = DEFAULT_RULES,
) -> pd.DataFrame:
    """Coerce a source's frame to the schema or raise `PriceDataError` naming `origin`.

    Columns are matched by `COLUMN_ALIASES`; unknown columns are refused rather than dropped. Without
    any adj-close column, adj_close is taken to be close (the vendor's close must then already be
    split-adjusted, so a frame that records a split is refused). Dividends and stock_splits default
    to 0 when absent. Dates must be YYYY-MM-DD (or naive datetimes at midnight, or tz-aware ones at
    midnight in the exchange's time zone) and sessions of the configured exchange from its first session on.
    One-day |log(adj_close[t] / adj_close[t-1])| per ticker above `max_abs_log_return` is refused
    unless (ticker, date) is in `accepted_moves`; so are the vendor mistakes of `rules` (a split or
    dividend the adjusted series ignores, an undeclared split, physical bounds, an implausible first
    row). Never fills a missing value.
    """
    accepted = accepted_move_set(accepted_moves)
    bound = checked_move_bound(max_abs_log_return)
    frame, adj_from_close = schema_columns(frame, origin)
    if frame.empty:
        raise PriceDataError(f"{origin}: no rows")
    frame["ticker"] = parse_ticker_column(frame["ticker"], origin)
    frame["date"] = parse_date_column(frame["date"], frame["ticker"], origin)
    for column in NUMERIC_COLUMNS:
        parsed = pd.to_numeric(frame[column], errors="coerce")
        bad = parsed.isna() & frame[column].notna()
        if bad.any():
            raise PriceDataError(
                f"{origin}: non-numeric {column} in {_show_rows(frame, bad, [column])}; "
                "give plain numbers (no currency signs or thousands separators)"
            )
        frame[column] = parsed.astype(float)
    check_calendar(frame, origin)
    dupes = _duplicated(frame, keep=False)
    if dupes.any():
        raise PriceDataError(f"{origin}: duplicate (date, ticker) in {_show_rows(frame, dupes)}; keep one row each")
    unordered = [t for t, g in frame.groupby("ticker", sort=True)["date"] if not g.is_monotonic_increasing]
    if unordered:
        raise PriceDataError(f"{origin}: dates out of order for {unordered}; sort each ticker's rows by date")
    if not frame["stock_splits"].fillna(0).eq(0).all() and adj_from_close:
        raise PriceDataError(
            f"{origin}: records stock splits but has no adj_close column, so close would be used unadjusted; "
            f"add the vendor's split-adjusted close as a column named {' or '.join(COLUMN_ALIASES['adj_close'])}"
        )
    failures = [
        _describe_failure(frame, name, mask, bound)
        for name, mask in _rule_violations(frame, bound, accepted, rules).items()
        if mask.any()
    ]
    if failures:
        raise PriceDataError(f"{origin}: " + "\n".join(failures))
    return frame[PRICE_FRAME_COLUMNS].sort_values(["date", "ticker"]).reset_index(drop=True)


def _index_column(name: object) -> bool:
    """A column pandas' `to_csv` (or a spreadsheet) wrote for the row index: no name, or 'Unnamed: 0'."""
    text = str(name).strip()
    return text == "" or text.lower().startswith("unnamed:") or text.lower() == "index"


def schema_columns(frame: pd.DataFrame, origin: str, derived: tuple[str, ...] = ()) -> tuple[pd.DataFrame, bool]:
    """(frame under schema names, adj_close copied from close?); refuses unknown, missing or doubled columns.
    `derived`: columns the reader added (a ticker taken from the file name), not shown as found."""
    positions: dict[str, list[int]] = {}
    unknown: list[str] = []
    for i, name in enumerate(frame.columns):
        column = canonical_column(name)
        if column is None:
            unknown.append(str(name))
        else:
            positions.setdefault(column, []).append(i)
    doubled = {c: [str(frame.columns[i]) for i in ps] for c, ps in positions.items() if len(ps) > 1}
    if doubled:
        column, names = next(iter(doubled.items()))
        raise PriceDataError(f"{origin}: columns {names} all mean {column}; keep only one of them")
    missing = [c for c in PRICE_FRAME_COLUMNS if c not in positions and c not in OPTIONAL_DEFAULTS and c != "adj_close"]
    index_like = [name for name in unknown if _index_column(name)]
    if index_like:
        raise PriceDataError(
            f"{origin}: a column has no name (read as {index_like[0]!r}) or is called 'index': the file was saved "
            "with its row index (pandas: to_csv without index=False). Remove that column, or re-save with index=False"
        )
    if missing or unknown:
        found = [str(c) for c in frame.columns if str(c) not in derived]
        what = [f"missing columns {missing}"] * bool(missing) + [f"unknown columns {unknown}"] * bool(unknown)
        stray = " If this is not a price file, move it out of the CSV folder." if len(missing) > 2 else ""
        raise PriceDataError(
            f"{origin}: {'; '.join(what)} (found {found}).{stray} Accepted columns, case, spaces and underscores "
            f"ignored: {ACCEPTED_COLUMNS}; adj_close, dividends and stock_splits are optional"
        )
    out = pd.DataFrame({column: frame.iloc[:, ps[0]].reset_index(drop=True) for column, ps in positions.items()})
    adj_from_close = "adj_close" not in out.columns
    if adj_from_close:
        out["adj_close"] = out["close"]
    for column, default in OPTIONAL_DEFAULTS.items():
        if column not in out.columns:
            out[column] = default
    return out, adj_from_close


def parse_ticker_column(tickers: pd.Series, origin: str) -> pd.Series:
    text = tickers.astype(str).str.strip().str.upper()
    missing = tickers.isna().to_numpy() | (text == "").to_numpy()
    if missing.any():
        rows = [i + 1 for i in np.flatnonzero(missing)]
        raise PriceDataError(f"{origin}: missing ticker in row(s) {_sample(rows)}; fill the ticker (or symbol) column")
    return text


_DATETIME_TZ = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:[+-]\d\d:?\d\d|Z)"
EXCHANGE_HINT = "set the `exchange` setting to the file's market (an exchange_calendars code, e.g. XKRX, XLON)"


def _local_dates(stamps: pd.Series, shown: pd.Series, tickers: pd.Series, origin: str) -> pd.Series:
    """tz-aware timestamps -> session dates in the exchange's time zone; each must be local midnight
    there (a daily bar), else the dates belong to another market and are refused."""
    zone = trading_calendar.TIMEZONE
    local = stamps.dt.tz_convert(zone)
    bad = (local.isna() | (local != local.dt.normalize())).to_numpy()
    if bad.any():
        raise PriceDataError(
            f"{origin}: dates with a time zone that are not midnight in the exchange's time zone "
            f"{trading_calendar.describe()} in {_date_rows(shown, tickers, bad)}: the file's dates belong to another "
            f"market; {EXCHANGE_HINT}, or give plain session dates {DATE_FORMAT}"
        )
    return local.dt.strftime("%Y-%m-%d")


def parse_date_column(dates: pd.Series, tickers: pd.Series, origin: str) -> pd.Series:
    """'YYYY-MM-DD' strings; day-first, US-style or compact dates are refused, never guessed.
    Time-zone-aware dates (2024-06-03T00:00:00+09:00, or a tz-aware column) are accepted at midnight
    in the configured exchange's time zone and become that day's session date."""
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        return _local_dates(dates, dates.astype(str), tickers, origin)
    if pd.api.types.is_datetime64_dtype(dates):
        bad = (dates.isna() | (dates != dates.dt.normalize())).to_numpy()
        if bad.any():
            raise PriceDataError(
                f"{origin}: missing dates or dates with a time of day in {_date_rows(dates, tickers, bad)}; "
                f"give one row per session date {DATE_FORMAT}"
            )
        return dates.dt.strftime("%Y-%m-%d")
    text = dates.astype(str).str.strip()
    zoned = text.str.contains(_TIME_ZONE).to_numpy()
    if zoned.any():
        malformed = ~text.str.fullmatch(_DATETIME_TZ).to_numpy()
        if malformed.any():
            raise PriceDataError(
                f"{origin}: dates carry a time zone (e.g. {text[zoned].iloc[0]}) but not all of them, or not as "
                f"ISO dates, in {_date_rows(text, tickers, malformed)}; give every date as {DATE_FORMAT} or every "
                "one with its UTC offset (2024-06-03T00:00:00+09:00)"
            )
        stamps = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
        return _local_dates(stamps, text, tickers, origin)
    parsed = pd.to_datetime(text.where(text.str.fullmatch(_ISO_DATE)), format="%Y-%m-%d", errors="coerce")
    bad = (parsed.isna() | dates.isna()).to_numpy()
    if bad.any():
        raise PriceDataError(
            f"{origin}: dates not in the accepted format {DATE_FORMAT} (e.g. 2010-03-02) in "
            f"{_date_rows(text, tickers, bad)}; write every date as {DATE_FORMAT}"
        )
    return parsed.dt.strftime("%Y-%m-%d")


def _date_rows(values: pd.Series, tickers: pd.Series, mask: np.ndarray) -> str:
    shown = values.where(values.notna() & (values.astype(str) != "nan"), "")
    rows = [f"row {i + 1} {tickers.iloc[i]} {str(shown.iloc[i])!r}" for i in np.flatnonzero(mask)]
    return f"{len(rows)} row(s): {_sample(rows)}"


def check_calendar(frame: pd.DataFrame, origin: str) -> None:
    early = (frame["date"] < trading_calendar.EARLIEST_SESSION.isoformat()).to_numpy()
    if early.any():
        raise PriceDataError(
            f"{origin}: dates before {trading_calendar.EARLIEST_SESSION}, the start of the "
            f"{trading_calendar.EXCHANGE} calendar, "
            f"in {_show_rows(frame, early)}; drop those rows"
        )
    last = trading_calendar.last_known_session().isoformat()
    late = (frame["date"] > last).to_numpy()
    if late.any():
        raise PriceDataError(
            f"{origin}: dates after the calendar's last known session {last} in {_show_rows(frame, late)}; "
            "check those dates"
        )
    dates = set(frame["date"].unique())
    if not dates:
        return
    # One set difference, not one calendar lookup per date (500 tickers x 2,500 sessions: 4 s saved).
    off = dates - {d.isoformat() for d in trading_calendar.sessions_between(min(dates), max(dates))}
    if off:
        raise PriceDataError(
            f"{origin}: dates that are not {trading_calendar.EXCHANGE} sessions (weekends/holidays) in "
            f"{_show_rows(frame, frame['date'].isin(off))}; drop or correct those rows. The calendar is the "
            f"exchange {trading_calendar.describe()}; for another market {EXCHANGE_HINT}"
        )


def checked_move_bound(value: float) -> float:
    value = float(value)
    if math.isnan(value) or value <= 0:
        raise ValueError(f"max_abs_log_return must be > 0 (math.inf disables the bound), got {value}")
    return value


def accepted_move_set(pairs: Iterable[tuple[str, str | dt.date]]) -> frozenset[tuple[str, str]]:
    """{(TICKER, 'YYYY-MM-DD')}; dates may be `date` objects (YAML reads unquoted dates as dates)."""
    out = set()
    for pair in pairs:
        try:
            ticker, day = pair
            if isinstance(day, dt.datetime):
                day = day.date()
            if isinstance(day, dt.date):
                day = day.isoformat()
            if not re.fullmatch(_ISO_DATE, str(day)):
                raise ValueError(day)
            dt.date.fromisoformat(day)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"accepted_moves entry {pair!r} is not a (ticker, '{DATE_FORMAT}') pair") from exc
        out.add((str(ticker).strip().upper(), day))
    return frozenset(out)


def _duplicated(frame: pd.DataFrame, keep: str | bool) -> np.ndarray:
    return frame.duplicated(["date", "ticker"], keep=keep).to_numpy()


def _log_moves(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(previous adj_close, log(adj_close / previous)) per ticker in date order, aligned to `frame`."""
    ordered = frame.sort_values(["ticker", "date"], kind="stable")
    adj = ordered["adj_close"].astype(float)
    adj = adj.where(np.isfinite(adj) & (adj > 0))  # unusable prices are refused by their own rule
    previous = adj.groupby(ordered["ticker"]).shift()
    moves = np.log(adj / previous)
    return previous.reindex(frame.index), moves.reindex(frame.index)


# Shown columns and fix for each rule of `_rule_violations`; MOVE_RULE's fix is built per failure.
_RULE_HELP: dict[str, tuple[list[str], str]] = {
    "non-finite or non-positive price": (PRICE_COLUMNS, "every price must be a finite number > 0"),
    "high below open/close": (["high", "open", "close"], "high must be >= max(open, close)"),
    "low above open/close": (["low", "open", "close"], "low must be <= min(open, close)"),
    "missing or negative volume": (["volume"], "volume must be a number >= 0"),
    "missing or negative dividends": (["dividends"], "dividends must be >= 0 (0 = none that day)"),
    "missing or negative stock_splits": (
        ["stock_splits"],
        "stock_splits must be 0 (no split) or the split ratio > 0 (e.g. 2 for a 2-for-1 split)",
    ),
}


SPLIT_IGNORED = "split not applied to adj_close"
UNDECLARED_SPLIT = "adj_close moves by a split ratio on a row without a split"
DIVIDEND_IGNORED = "dividend not applied to adj_close"
VOLUME_BOUND = "volume above sanity.max_volume"
DIVIDEND_BOUND = "dividend above sanity.max_dividend_fraction of the close"
SPLIT_BOUND = "stock_splits outside 1/sanity.max_split_ratio..sanity.max_split_ratio"
_ACCEPT = "if the data is right, list the event in settings accepted_moves"
_SANITY_HELP: dict[str, tuple[list[str], str]] = {
    SPLIT_IGNORED: (
        ["stock_splits", "previous_adj_close", "adj_close", "log_return"],
        "the row declares a split but adj_close drops by the split's factor, so adj_close is not split-adjusted: "
        f"take the vendor's split-adjusted series (setting sanity.split_tolerance); {_ACCEPT}",
    ),
    UNDECLARED_SPLIT: (
        ["previous_adj_close", "adj_close", "log_return"],
        "adj_close jumps by a common split ratio (2:1, 3:2, 1:10, ...) with stock_splits 0: declare the split in "
        "stock_splits and give split-adjusted adj_close (setting sanity.undeclared_split_tolerance, 0 = off); "
        f"{_ACCEPT}",
    ),
    DIVIDEND_IGNORED: (
        ["dividends", "close", "adj_close"],
        "adj_close/close does not change by the dividend's factor on its ex-date, so adj_close is not "
        "dividend-adjusted: give the vendor's adjusted close (setting sanity.dividend_min_fraction, 0 = off); "
        f"{_ACCEPT}",
    ),
    VOLUME_BOUND: (["volume"], "volume is shares traded that session; correct it (setting sanity.max_volume)"),
    DIVIDEND_BOUND: (
        ["dividends", "close"],
        "dividends are cash per share, below the price; correct it (setting sanity.max_dividend_fraction)",
    ),
    SPLIT_BOUND: (
        ["stock_splits"],
        "stock_splits is 0 (none) or the ratio, e.g. 2 for 2-for-1, 0.1 for 1-for-10 (setting sanity.max_split_ratio)",
    ),
}


def _sanity_violations(frame: pd.DataFrame, bound: float, rules: SanityRules) -> dict[str, np.ndarray]:
    """The vendor-mistake rules of `SanityRules`, one mask each (before `accepted_moves`)."""
    ordered = frame.sort_values(["ticker", "date"], kind="stable")
    by = ordered["ticker"]

    def clean(column: str) -> pd.Series:
        values = ordered[column].astype(float)
        return values.where(np.isfinite(values) & (values > 0))

    adj, close = clean("adj_close"), clean("close")
    splits = ordered["stock_splits"].astype(float).where(lambda v: np.isfinite(v) & (v > 0) & (v != 1))
    dividends = ordered["dividends"].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        move = np.log(adj / adj.groupby(by).shift())
        out = {}
        log_split = np.log(splits)
        out[SPLIT_IGNORED] = (
            (rules.split_tolerance > 0)
            & (log_split.abs() > rules.split_tolerance)
            & ((move + log_split).abs() <= rules.split_tolerance)
        )
        undeclared = pd.Series(False, index=ordered.index)
        if rules.undeclared_split_tolerance > 0:
            for ratio in COMMON_SPLIT_RATIOS:
                for log_ratio in (math.log(ratio), -math.log(ratio)):
                    undeclared |= (move - (-log_ratio)).abs() <= rules.undeclared_split_tolerance
        out[UNDECLARED_SPLIT] = undeclared & splits.isna()
        factor = adj / close
        ratio = np.log(factor.groupby(by).shift() / factor)  # log(F[t-1] / F[t]); F = adj_close / close
        implied = np.log1p(-(dividends / close.groupby(by).shift()).clip(upper=0.99))
        out[DIVIDEND_IGNORED] = (
            (rules.dividend_min_fraction > 0)
            & (dividends / close.groupby(by).shift() >= rules.dividend_min_fraction)
            & splits.isna()
            & ((ratio - implied).abs() > implied.abs() / 2)
        )
        volume = ordered["volume"].astype(float)
        out[VOLUME_BOUND] = volume > rules.max_volume
        out[DIVIDEND_BOUND] = dividends > rules.max_dividend_fraction * ordered["close"].astype(float)
        raw_splits = ordered["stock_splits"].astype(float)
        out[SPLIT_BOUND] = (raw_splits != 0) & (
            (raw_splits > rules.max_split_ratio) | (raw_splits < 1 / rules.max_split_ratio)
        )
    return {name: mask.fillna(False).astype(bool).reindex(frame.index).to_numpy() for name, mask in out.items()}


def _rule_violations(
    frame: pd.DataFrame, bound: float, accepted: frozenset[tuple[str, str]], rules: SanityRules | None = None
) -> dict[str, np.ndarray]:
    """One boolean mask (True = violation) per value rule; the single implementation of each rule.
    `rules`: the vendor-mistake rules too (input validation and the features' own check)."""

    def values(*columns: str) -> np.ndarray:
        return frame[list(columns)].to_numpy(dtype=float)

    def not_negative(column: str) -> np.ndarray:
        return ~(np.isfinite(values(column)) & (values(column) >= 0))[:, 0]

    prices, open_close = values(*PRICE_COLUMNS), values("open", "close")
    bad_price = ~(np.isfinite(prices) & (prices > 0)).all(axis=1)
    with np.errstate(invalid="ignore"):  # NaN rows are bad_price already; the comparisons skip them
        high_low = values("high", "low")
        high_bad = ~bad_price & (high_low[:, 0] < open_close.max(axis=1) * (1 - 1e-9))
        low_bad = ~bad_price & (high_low[:, 1] > open_close.min(axis=1) * (1 + 1e-9))
        big_move = np.abs(_log_moves(frame)[1].to_numpy()) > bound
    allowed = np.array([key in accepted for key in zip(frame["ticker"], frame["date"].astype(str))], dtype=bool)
    return {
        "non-finite or non-positive price": bad_price,
        "high below open/close": high_bad,
        "low above open/close": low_bad,
        "missing or negative volume": not_negative("volume"),
        "missing or negative dividends": not_negative("dividends"),
        "missing or negative stock_splits": not_negative("stock_splits"),
        MOVE_RULE: big_move & ~allowed,
        **(
            {}
            if rules is None
            else {name: mask & ~allowed for name, mask in _sanity_violations(frame, bound, rules).items()}
        ),
    }


def _describe_failure(frame: pd.DataFrame, name: str, mask: np.ndarray, bound: float) -> str:
    if name in _SANITY_HELP:
        columns, fix = _SANITY_HELP[name]
        previous, moves = _log_moves(frame)
        shown = frame.assign(previous_adj_close=previous, log_return=moves)
        first = shown.loc[mask].iloc[0]
        return f"{name}: {_show_rows(shown, mask, columns)}. Fix: {fix}" + (
            f" (e.g. accepted_moves: [[{first['ticker']}, {first['date']}]])" if "accepted_moves" in fix else ""
        )
    if name != MOVE_RULE:
        columns, fix = _RULE_HELP[name]
        return f"{name}: {_show_rows(frame, mask, columns)}. Fix: {fix}"
    previous, moves = _log_moves(frame)
    shown = frame.assign(previous_adj_close=previous, log_return=moves)
    first = shown.loc[mask].iloc[0]
    return (
        f"{name} ({bound:g}): {_show_rows(shown, mask, ['previous_adj_close', 'adj_close', 'log_return'])}. "
        "Fix: correct adj_close if it is wrong; if the move is real, list it in settings accepted_moves "
        f"(e.g. accepted_moves: [[{first['ticker']}, {first['date']}]]) or raise settings max_abs_log_return"
    )


def price_problems(
    frame: pd.DataFrame,
    tickers: list[str],
    sessions: list[str],
    *,
    max_abs_log_return: float = DEFAULT_MAX_ABS_LOG_RETURN,
    accepted_moves: Iterable[tuple[str, str | dt.date]] = (),
    rules: SanityRules | None = None,
) -> dict[str, list[str]]:
    """Quality rules on stored prices, the same ones `normalize_price_frame` enforces on input (a second
    line of defence); empty lists mean clean. Shared by the asset check and by `processed_features`,
    which refuses to build on failing prices."""
    frame = frame.reset_index(drop=True)
    problems: dict[str, list[str]] = {}
    present = set(zip(frame["date"], frame["ticker"]))
    problems["missing (date, ticker)"] = [f"{d} {t}" for d in sessions for t in tickers if (d, t) not in present]
    violations = _rule_violations(
        frame, checked_move_bound(max_abs_log_return), accepted_move_set(accepted_moves), rules
    )
    problems.update({name: _rows(frame, mask) for name, mask in violations.items()})
    problems["duplicate (date, ticker)"] = _rows(frame, _duplicated(frame, keep="first"))
    return problems


def _rows(frame: pd.DataFrame, mask: np.ndarray) -> list[str]:
    return [f"{d} {t}" for d, t in frame.loc[mask, ["date", "ticker"]].values]


def describe_problems(problems: dict[str, list[str]]) -> str:
    return "; ".join(f"{name}: {len(rows)} ({_sample(rows, 3)})" for name, rows in problems.items() if rows)
