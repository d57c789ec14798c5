"""Price sources. Each returns the schema of `prices.py` for [start, end] (inclusive session dates)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Protocol

import pandas as pd

from stock_assets.lib import calendar
from stock_assets.lib.prices import (
    DEFAULT_MAX_ABS_LOG_RETURN,
    PriceDataError,
    canonical_column,
    normalize_price_frame,
)

SAMPLE_FILE = "sample_prices.csv.gz"
CSV_SUFFIXES = (".csv", ".csv.gz")
# yfinance adds these for funds: distributions, not prices, and not part of the schema.
YFINANCE_IGNORED_COLUMNS = ("Capital Gains",)
AcceptedMoves = Iterable[tuple[str, str | dt.date]]


class PriceSourceError(RuntimeError):
    """The source could not deliver (network, rate limit, unknown ticker); nothing was stored."""


class PriceSource(Protocol):
    name: str

    def fetch(self, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame: ...


def _between(frame: pd.DataFrame, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
    mask = frame["ticker"].isin(tickers) & (frame["date"] >= start.isoformat()) & (frame["date"] <= end.isoformat())
    return frame.loc[mask].reset_index(drop=True)


@lru_cache(maxsize=1)
def _raw_sample() -> pd.DataFrame:
    with resources.files("stock_assets.data").joinpath(SAMPLE_FILE).open("rb") as fh:
        return pd.read_csv(fh, compression="gzip", dtype={"date": str, "ticker": str})


@lru_cache(maxsize=4)
def _validated_sample(max_abs_log_return: float, accepted_moves: tuple) -> pd.DataFrame:
    return normalize_price_frame(
        _raw_sample(),
        f"bundled {SAMPLE_FILE}",
        max_abs_log_return=max_abs_log_return,
        accepted_moves=accepted_moves,
    )


def load_sample_prices(
    *, max_abs_log_return: float = DEFAULT_MAX_ABS_LOG_RETURN, accepted_moves: AcceptedMoves = ()
) -> pd.DataFrame:
    """The bundled public-domain sample (see data/PROVENANCE.md), validated once per process and rule set."""
    return _validated_sample(float(max_abs_log_return), tuple(tuple(pair) for pair in accepted_moves))


@dataclass
class SamplePriceSource:
    """Offline default: real daily prices shipped inside the package."""

    name: str = "sample"
    max_abs_log_return: float = DEFAULT_MAX_ABS_LOG_RETURN
    accepted_moves: AcceptedMoves = ()

    def fetch(self, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        data = load_sample_prices(max_abs_log_return=self.max_abs_log_return, accepted_moves=self.accepted_moves)
        unknown = sorted(set(tickers) - set(data["ticker"]))
        if unknown:
            raise PriceSourceError(
                f"sample source has no data for {unknown}; it ships {sorted(data['ticker'].unique())} "
                f"({data['date'].min()}..{data['date'].max()}). Configure those tickers or another source."
            )
        return _between(data, tickers, start, end)


def _is_csv(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(CSV_SUFFIXES)


def _ticker_from_file_name(file: Path) -> str:
    """AAPL.csv.gz -> AAPL; only the CSV suffixes go, so BRK.B.csv stays BRK.B."""
    name = file.name
    for suffix in sorted(CSV_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)].strip().upper()
    return file.stem.strip().upper()


@dataclass
class CsvPriceSource:
    """The user's own daily OHLCV: one file, or a directory of *.csv / *.csv.gz (hidden files are skipped).

    Each file is validated on its own, so errors name the file; a file without a ticker (or symbol)
    column is named after its ticker, e.g. AAPL.csv or AAPL.csv.gz. Column names follow the
    vendor aliases of `prices.COLUMN_ALIASES` (e.g. Yahoo's CSV export).
    """

    path: Path
    name: str = "csv"
    max_abs_log_return: float = DEFAULT_MAX_ABS_LOG_RETURN
    accepted_moves: AcceptedMoves = ()

    def fetch(self, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        path = Path(self.path)
        if path.is_dir():
            files = sorted(f for f in path.iterdir() if f.is_file() and _is_csv(f.name))
        elif path.is_file():
            files = [path]
        else:
            raise PriceSourceError(
                f"csv_path {path} does not exist; point settings csv_path at a CSV file or directory"
            )
        if not files:
            raise PriceSourceError(f"csv_path {path} holds no *.csv or *.csv.gz files")
        frames = [self._normalize(self._read(f), f"CSV {f}") for f in files]
        data = frames[0] if len(frames) == 1 else self._combine(frames, files, path)
        unknown = sorted(set(tickers) - set(data["ticker"]))
        if unknown:
            raise PriceSourceError(f"CSV {path} has no rows for {unknown}; found {sorted(data['ticker'].unique())}")
        return _between(data, tickers, start, end)

    def _normalize(self, frame: pd.DataFrame, origin: str) -> pd.DataFrame:
        return normalize_price_frame(
            frame, origin, max_abs_log_return=self.max_abs_log_return, accepted_moves=self.accepted_moves
        )

    def _combine(self, frames: list[pd.DataFrame], files: list[Path], path: Path) -> pd.DataFrame:
        """Checks across files: a (date, ticker) in two files, and moves between one file's rows and another's."""
        data = pd.concat([f.assign(file=file.name) for f, file in zip(frames, files)], ignore_index=True)
        dupes = data[data.duplicated(["date", "ticker"], keep=False)]
        if len(dupes):
            first = dupes.iloc[0]
            same = dupes[(dupes["date"] == first["date"]) & (dupes["ticker"] == first["ticker"])]
            pairs = len(dupes[["date", "ticker"]].drop_duplicates())
            raise PriceDataError(
                f"CSV {path}: {first['ticker']} {first['date']} is in {sorted(same['file'])} "
                f"({pairs} (date, ticker) pair(s) in more than one file); keep each (date, ticker) in one file"
            )
        data = data.drop(columns="file").sort_values(["date", "ticker"], kind="stable")
        return self._normalize(data, f"CSV {path} (rows of all its files together)")

    @staticmethod
    def _read(file: Path) -> pd.DataFrame:
        try:
            frame = pd.read_csv(file, dtype=str, compression="infer", encoding="utf-8-sig")  # Excel writes a BOM
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
            raise PriceDataError(f"CSV {file}: cannot be read as CSV ({exc})") from exc
        if "ticker" not in {canonical_column(c) for c in frame.columns}:
            frame["ticker"] = _ticker_from_file_name(file)
        return frame


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
            f"{what}: no answer within {seconds:.0f} s (network down or stalled); nothing was stored"
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

    def fetch(self, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        frames = [self._fetch_one(t, start, end) for t in tickers]
        return normalize_price_frame(
            pd.concat(frames, ignore_index=True),
            f"yfinance {tickers}",
            max_abs_log_return=self.max_abs_log_return,
            accepted_moves=self.accepted_moves,
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
                    raise PriceSourceError(f"{what}: rate-limited {attempt + 1} times; try again later") from exc
                self.sleep(self.backoff_seconds * 2**attempt)
            except YFException as exc:
                raise PriceSourceError(f"{what}: {exc} (unknown or delisted ticker?)") from exc
        sessions = calendar.sessions_between(start, end)
        if history is None or len(history) == 0:
            if sessions:
                raise PriceSourceError(
                    f"{what}: empty answer for {len(sessions)} trading session(s); the ticker may be "
                    "unknown/delisted or the network down. Nothing was stored."
                )
            return pd.DataFrame(columns=["date", "ticker"])
        return self._to_schema(history, ticker)

    @staticmethod
    def _to_schema(history: pd.DataFrame, ticker: str) -> pd.DataFrame:
        index = pd.DatetimeIndex(history.index)
        if index.tz is not None:
            index = index.tz_convert(calendar.TIMEZONE).tz_localize(None)
        frame = history.drop(columns=list(YFINANCE_IGNORED_COLUMNS), errors="ignore").reset_index(drop=True)
        frame["date"] = index.normalize().strftime("%Y-%m-%d")
        frame["ticker"] = ticker
        if "adj_close" not in {canonical_column(c) for c in frame.columns}:
            raise PriceDataError(f"yfinance {ticker}: no 'Adj Close' column; was auto_adjust changed?")
        return frame
