"""Price sources. Each returns the schema of `prices.py` for [start, end] (inclusive session dates);
the `csv` source is in `csv_source.py`."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Protocol

import pandas as pd

from stock_assets.lib import trading_calendar
from stock_assets.lib.prices import (
    DEFAULT_MAX_ABS_LOG_RETURN,
    DEFAULT_RULES,
    PriceDataError,
    SanityRules,
    canonical_column,
    normalize_price_frame,
)

SAMPLE_FILE = "sample_prices.csv.gz"
# yfinance adds these for funds: distributions, not prices, and not part of the schema.
YFINANCE_IGNORED_COLUMNS = ("Capital Gains",)
AcceptedMoves = Iterable[tuple[str, str | dt.date]]


class PriceSourceError(RuntimeError):
    """The source could not deliver (network, rate limit, unknown ticker); nothing was stored.

    `transient`: the same request may succeed later (a timeout, a rate limit, an empty answer from
    an online source), so an automatic retry of the run is worth it; files answer the same way twice."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class PriceSource(Protocol):
    name: str

    def fetch(self, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame: ...


def rows_between(frame: pd.DataFrame, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
    mask = frame["ticker"].isin(tickers) & (frame["date"] >= start.isoformat()) & (frame["date"] <= end.isoformat())
    return frame.loc[mask].reset_index(drop=True)


@lru_cache(maxsize=1)
def _raw_sample() -> pd.DataFrame:
    with resources.files("stock_assets.data").joinpath(SAMPLE_FILE).open("rb") as fh:
        return pd.read_csv(fh, compression="gzip", dtype={"date": str, "ticker": str})


SAMPLE_EXCHANGE = "XNYS"  # the sample's dates are NYSE sessions


@lru_cache(maxsize=4)
def _validated_sample(max_abs_log_return: float, accepted_moves: tuple, rules: SanityRules) -> pd.DataFrame:
    if trading_calendar.EXCHANGE != SAMPLE_EXCHANGE:
        raise PriceSourceError(
            f"the bundled sample holds {SAMPLE_EXCHANGE} sessions but the exchange is {trading_calendar.EXCHANGE}; "
            "set exchange: XNYS, or source: csv (csv_path) or yfinance for that market"
        )
    return normalize_price_frame(
        _raw_sample(),
        f"bundled {SAMPLE_FILE}",
        max_abs_log_return=max_abs_log_return,
        accepted_moves=accepted_moves,
        rules=rules,
    )


def load_sample_prices(
    *,
    max_abs_log_return: float = DEFAULT_MAX_ABS_LOG_RETURN,
    accepted_moves: AcceptedMoves = (),
    rules: SanityRules = DEFAULT_RULES,
) -> pd.DataFrame:
    """The bundled public-domain sample (see data/PROVENANCE.md), validated once per process and rule set."""
    return _validated_sample(float(max_abs_log_return), tuple(tuple(pair) for pair in accepted_moves), rules)


@dataclass
class SamplePriceSource:
    """Offline default: real daily prices shipped inside the package."""

    name: str = "sample"
    max_abs_log_return: float = DEFAULT_MAX_ABS_LOG_RETURN
    accepted_moves: AcceptedMoves = ()
    rules: SanityRules = DEFAULT_RULES

    def preflight(self, tickers: list[str]) -> None:
        """Refuse tickers the sample does not ship, when the code location loads (see CsvPriceSource.preflight)."""
        shipped = set(_raw_sample()["ticker"])
        unknown = sorted(set(tickers) - shipped)
        if unknown:
            raise PriceSourceError(
                f"sample source has no data for {unknown}; it ships {sorted(shipped)}. Remove them from settings "
                "tickers (STOCK_ASSETS_TICKERS), or set source: csv (csv_path) or yfinance"
            )

    def fetch(self, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        data = load_sample_prices(
            max_abs_log_return=self.max_abs_log_return, accepted_moves=self.accepted_moves, rules=self.rules
        )
        unknown = sorted(set(tickers) - set(data["ticker"]))
        if unknown:
            raise PriceSourceError(
                f"sample source has no data for {unknown}; it ships {sorted(data['ticker'].unique())} "
                f"({data['date'].min()}..{data['date'].max()}). Configure those tickers or another source."
            )
        return rows_between(data, tickers, start, end)


def _default_ticker_factory(symbol: str):
    import yfinance

    return yfinance.Ticker(symbol)


def _call_with_deadline(fn: Callable[[], pd.DataFrame], seconds: float, what: str) -> pd.DataFrame:
    """Bound a call that may ignore its own timeouts (yfinance stalls on dropped packets)."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    worker = threading.Thread(target=run, name=f"fetch {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise PriceSourceError(
            f"{what}: no answer within {seconds:.0f} s (network down or stalled); nothing was stored", transient=True
        )
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


@dataclass
class YFinancePriceSource:
    """Yahoo Finance via yfinance with pinned behaviour: unadjusted OHLC plus Adj Close
    (`auto_adjust=False`), actions included, dates converted to the exchange's local date."""

    timeout_seconds: float = 30.0
    max_retries: int = 3
    backoff_seconds: float = 2.0
    ticker_factory: Callable[[str], object] = field(default=_default_ticker_factory)
    sleep: Callable[[float], None] = field(default=time.sleep)
    name: str = "yfinance"
    max_abs_log_return: float = DEFAULT_MAX_ABS_LOG_RETURN
    accepted_moves: AcceptedMoves = ()
    rules: SanityRules = DEFAULT_RULES

    def fetch(self, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        frames = [self._fetch_one(t, start, end) for t in tickers]
        return normalize_price_frame(
            pd.concat(frames, ignore_index=True),
            f"yfinance {tickers}",
            max_abs_log_return=self.max_abs_log_return,
            accepted_moves=self.accepted_moves,
            rules=self.rules,
        )

    def _fetch_one(self, ticker: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        from yfinance.exceptions import YFException, YFRateLimitError

        what = f"yfinance {ticker} {start}..{end}"
        for attempt in range(self.max_retries + 1):
            try:
                history = _call_with_deadline(
                    lambda: self.ticker_factory(ticker).history(
                        start=start.isoformat(),
                        end=(end + dt.timedelta(days=1)).isoformat(),
                        interval="1d",
                        auto_adjust=False,
                        actions=True,
                        repair=False,
                        timeout=self.timeout_seconds,
                        raise_errors=True,
                    ),
                    self.timeout_seconds,
                    what,
                )
                break
            except YFRateLimitError as exc:
                if attempt == self.max_retries:
                    raise PriceSourceError(
                        f"{what}: rate-limited {attempt + 1} times; try again later", transient=True
                    ) from exc
                self.sleep(self.backoff_seconds * 2**attempt)
            except YFException as exc:
                raise PriceSourceError(f"{what}: {exc} (unknown or delisted ticker?)") from exc
        sessions = trading_calendar.sessions_between(start, end)
        if history is None or len(history) == 0:
            if sessions:
                raise PriceSourceError(
                    f"{what}: empty answer for {len(sessions)} trading session(s); the ticker may be "
                    "unknown/delisted or the network down. Nothing was stored.",
                    transient=True,
                )
            return pd.DataFrame(columns=["date", "ticker"])
        return self._to_schema(history, ticker)

    @staticmethod
    def _to_schema(history: pd.DataFrame, ticker: str) -> pd.DataFrame:
        index = pd.DatetimeIndex(history.index)
        if index.tz is not None:
            index = index.tz_convert(trading_calendar.TIMEZONE).tz_localize(None)
        frame = history.drop(columns=list(YFINANCE_IGNORED_COLUMNS), errors="ignore").reset_index(drop=True)
        frame["date"] = index.normalize().strftime("%Y-%m-%d")
        frame["ticker"] = ticker
        if "adj_close" not in {canonical_column(c) for c in frame.columns}:
            raise PriceDataError(f"yfinance {ticker}: no 'Adj Close' column; was auto_adjust changed?")
        return frame
