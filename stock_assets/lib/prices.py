"""The one price-frame schema: every source returns it, `raw_prices` stores it, checks verify it.

Bad input stops at `normalize_price_frame` with a message naming the file, the rows and the fix, so
nothing wrong reaches storage; the rules and their reasons are in docs/decisions.md, "Input validation".
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable

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
_SHOWN = 5
_ISO_DATE = r"\d{4}-\d{2}-\d{2}"
_TIME_ZONE = r"(?:[+-]\d\d:\d\d|Z)$"


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
) -> pd.DataFrame:
    """Coerce a source's frame to the schema or raise `PriceDataError` naming `origin`.

    Columns are matched by `COLUMN_ALIASES`; unknown columns are refused rather than dropped. Without
    any adj-close column, adj_close is taken to be close (the vendor's close must then already be
    split-adjusted, so a frame that records a split is refused). Dividends and stock_splits default
    to 0 when absent. Dates must be YYYY-MM-DD (or naive datetimes at midnight) and NYSE sessions
    from `trading_calendar.EARLIEST_SESSION` on.
    One-day |log(adj_close[t] / adj_close[t-1])| per ticker above `max_abs_log_return` is refused
    unless (ticker, date) is in `accepted_moves`. Never fills a missing value.
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
        for name, mask in _rule_violations(frame, bound, accepted).items()
        if mask.any()
    ]
    if failures:
        raise PriceDataError(f"{origin}: " + "\n".join(failures))
    return frame[PRICE_FRAME_COLUMNS].sort_values(["date", "ticker"]).reset_index(drop=True)


def schema_columns(frame: pd.DataFrame, origin: str) -> tuple[pd.DataFrame, bool]:
    """(frame under schema names, adj_close copied from close?); refuses unknown, missing or doubled columns."""
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
    if missing or unknown:
        found = [str(c) for c in frame.columns]
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


def parse_date_column(dates: pd.Series, tickers: pd.Series, origin: str) -> pd.Series:
    """'YYYY-MM-DD' strings; day-first, US-style or compact dates are refused, never guessed."""
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        raise PriceDataError(
            f"{origin}: dates carry a time zone ({dates.dtype}); give plain session dates {DATE_FORMAT} "
            "in the exchange's local calendar"
        )
    if pd.api.types.is_datetime64_dtype(dates):
        bad = (dates.isna() | (dates != dates.dt.normalize())).to_numpy()
        if bad.any():
            raise PriceDataError(
                f"{origin}: missing dates or dates with a time of day in {_date_rows(dates, tickers, bad)}; "
                f"give one row per session date {DATE_FORMAT}"
            )
        return dates.dt.strftime("%Y-%m-%d")
    text = dates.astype(str).str.strip()
    if text.str.contains(_TIME_ZONE).any():
        example = text[text.str.contains(_TIME_ZONE)].iloc[0]
        raise PriceDataError(
            f"{origin}: dates carry a time zone (e.g. {example}); give plain session dates {DATE_FORMAT} "
            "in the exchange's local calendar"
        )
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
            f"{origin}: dates that are not NYSE sessions (weekends/holidays) in "
            f"{_show_rows(frame, frame['date'].isin(off))}; drop or correct those rows"
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


def _rule_violations(frame: pd.DataFrame, bound: float, accepted: frozenset[tuple[str, str]]) -> dict[str, np.ndarray]:
    """One boolean mask (True = violation) per value rule; the single implementation of each rule."""

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
    }


def _describe_failure(frame: pd.DataFrame, name: str, mask: np.ndarray, bound: float) -> str:
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
) -> dict[str, list[str]]:
    """Quality rules on stored prices, the same ones `normalize_price_frame` enforces on input (a second
    line of defence); empty lists mean clean. Shared by the asset check and by `processed_features`,
    which refuses to build on failing prices."""
    frame = frame.reset_index(drop=True)
    problems: dict[str, list[str]] = {}
    present = set(zip(frame["date"], frame["ticker"]))
    problems["missing (date, ticker)"] = [f"{d} {t}" for d in sessions for t in tickers if (d, t) not in present]
    violations = _rule_violations(frame, checked_move_bound(max_abs_log_return), accepted_move_set(accepted_moves))
    problems.update({name: _rows(frame, mask) for name, mask in violations.items()})
    problems["duplicate (date, ticker)"] = _rows(frame, _duplicated(frame, keep="first"))
    return problems


def _rows(frame: pd.DataFrame, mask: np.ndarray) -> list[str]:
    return [f"{d} {t}" for d, t in frame.loc[mask, ["date", "ticker"]].values]


def describe_problems(problems: dict[str, list[str]]) -> str:
    return "; ".join(f"{name}: {len(rows)} ({_sample(rows, 3)})" for name, rows in problems.items() if rows)
