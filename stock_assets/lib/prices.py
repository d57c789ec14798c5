"""The one price-frame schema: every source returns it, `raw_prices` stores it, checks verify it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stock_assets.lib import calendar

PRICE_COLUMNS = ["open", "high", "low", "close", "adj_close"]
NUMERIC_COLUMNS = [*PRICE_COLUMNS, "volume", "dividends", "stock_splits"]
PRICE_FRAME_COLUMNS = ["date", "ticker", *NUMERIC_COLUMNS]
OPTIONAL_DEFAULTS = {"dividends": 0.0, "stock_splits": 0.0}


class PriceDataError(ValueError):
    """Input prices are unusable; the message says what, where, and how to fix it."""


def _sample(values, n: int = 5) -> str:
    values = list(values)
    more = f" (+{len(values) - n} more)" if len(values) > n else ""
    return ", ".join(str(v) for v in values[:n]) + more


def normalize_price_frame(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Coerce a source's frame to the schema or raise `PriceDataError` naming `origin`.

    Rejects missing columns, unparsable or time-zone-aware dates, non-session dates, duplicates,
    out-of-order dates, non-finite or non-positive prices and negative volume. Never fills.
    """
    frame = frame.copy()
    frame.columns = [str(c).strip().lower().replace(" ", "_") for c in frame.columns]
    if "adj_close" not in frame.columns and "close" in frame.columns:
        frame["adj_close"] = frame["close"]
    for column, default in OPTIONAL_DEFAULTS.items():
        if column not in frame.columns:
            frame[column] = default
    missing = [c for c in PRICE_FRAME_COLUMNS if c not in frame.columns and c != "adj_close"]
    if missing:
        raise PriceDataError(
            f"{origin}: missing columns {missing}; expected {PRICE_FRAME_COLUMNS} "
            f"(adj_close, dividends, stock_splits optional), found {sorted(frame.columns)}"
        )
    if frame.empty:
        raise PriceDataError(f"{origin}: no rows")
    frame["date"] = _parse_dates(frame["date"], origin)
    frame["ticker"] = frame["ticker"].astype(str).str.strip().str.upper()
    for column in NUMERIC_COLUMNS:
        parsed = pd.to_numeric(frame[column], errors="coerce")
        bad = frame.loc[parsed.isna() & frame[column].notna(), ["date", "ticker"]]
        if len(bad):
            raise PriceDataError(f"{origin}: non-numeric {column} at {_sample(map(tuple, bad.values))}")
        frame[column] = parsed.astype(float)
    _reject_bad_values(frame, origin)
    off_calendar = sorted(set(d for d in frame["date"] if not calendar.is_session(d)))
    if off_calendar:
        raise PriceDataError(f"{origin}: dates that are not NYSE sessions (weekends/holidays): {_sample(off_calendar)}")
    dupes = frame[frame.duplicated(["date", "ticker"], keep=False)]
    if len(dupes):
        raise PriceDataError(
            f"{origin}: duplicate (date, ticker) rows: {_sample(sorted(set(map(tuple, dupes[['date', 'ticker']].values))))}"
        )
    unordered = [t for t, g in frame.groupby("ticker", sort=True)["date"] if not g.is_monotonic_increasing]
    if unordered:
        raise PriceDataError(f"{origin}: dates out of order for {unordered}; sort each ticker's rows by date")
    return frame[PRICE_FRAME_COLUMNS].sort_values(["date", "ticker"]).reset_index(drop=True)


def _parse_dates(dates: pd.Series, origin: str) -> pd.Series:
    if isinstance(dates.dtype, pd.DatetimeTZDtype) or dates.astype(str).str.contains(r"[+-]\d\d:\d\d$|Z$").any():
        raise PriceDataError(
            f"{origin}: dates carry a time zone (e.g. {dates.iloc[0]}); give plain session dates "
            "YYYY-MM-DD in the exchange's local calendar"
        )
    parsed = pd.to_datetime(dates, errors="coerce", format="mixed")
    bad = dates[parsed.isna()]
    if len(bad):
        raise PriceDataError(f"{origin}: unparsable dates {_sample(bad.astype(str).unique())}; use YYYY-MM-DD")
    if (parsed != parsed.dt.normalize()).any():
        raise PriceDataError(f"{origin}: dates have a time of day; give one row per session date YYYY-MM-DD")
    return parsed.dt.strftime("%Y-%m-%d")


def _reject_bad_values(frame: pd.DataFrame, origin: str) -> None:
    prices = frame[PRICE_COLUMNS].to_numpy()
    bad_rows = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1)
    if bad_rows.any():
        where = frame.loc[bad_rows, ["date", "ticker"]].values
        raise PriceDataError(f"{origin}: missing, non-finite or non-positive prices at {_sample(map(tuple, where))}")
    if (frame["volume"] < 0).any() or frame["volume"].isna().any():
        where = frame.loc[(frame["volume"] < 0) | frame["volume"].isna(), ["date", "ticker"]].values
        raise PriceDataError(f"{origin}: missing or negative volume at {_sample(map(tuple, where))}")


def price_problems(frame: pd.DataFrame, tickers: list[str], sessions: list[str]) -> dict[str, list[str]]:
    """Quality rules on stored prices (SPEC §3); empty lists mean clean. Shared by the asset check
    and by `processed_features`, which refuses to build on failing prices."""
    problems: dict[str, list[str]] = {}
    present = set(zip(frame["date"], frame["ticker"]))
    missing = [f"{d} {t}" for d in sessions for t in tickers if (d, t) not in present]
    problems["missing (date, ticker)"] = missing
    prices = frame[PRICE_COLUMNS].to_numpy(dtype=float)
    bad = ~np.isfinite(prices).all(axis=1) | (prices <= 0).any(axis=1)
    problems["non-finite or non-positive price"] = _rows(frame, bad)
    high_bad = frame["high"] < frame[["open", "close"]].max(axis=1) - 1e-9
    low_bad = frame["low"] > frame[["open", "close"]].min(axis=1) + 1e-9
    problems["high below open/close"] = _rows(frame, high_bad.to_numpy())
    problems["low above open/close"] = _rows(frame, low_bad.to_numpy())
    problems["negative volume"] = _rows(frame, (frame["volume"] < 0).to_numpy())
    problems["duplicate (date, ticker)"] = _rows(frame, frame.duplicated(["date", "ticker"]).to_numpy())
    return problems


def _rows(frame: pd.DataFrame, mask: np.ndarray) -> list[str]:
    return [f"{d} {t}" for d, t in frame.loc[mask, ["date", "ticker"]].values]


def describe_problems(problems: dict[str, list[str]]) -> str:
    return "; ".join(f"{name}: {len(rows)} ({_sample(rows, 3)})" for name, rows in problems.items() if rows)
