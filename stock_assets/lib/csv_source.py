"""The `csv` price source: the user's own daily OHLCV files, validated for the window a run fetches."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from stock_assets.lib.prices import (
    DEFAULT_MAX_ABS_LOG_RETURN,
    DEFAULT_RULES,
    NUMERIC_COLUMNS,
    PRICE_FRAME_COLUMNS,
    PriceDataError,
    SanityRules,
    accepted_move_set,
    canonical_column,
    check_calendar,
    checked_move_bound,
    normalize_price_frame,
    parse_date_column,
    parse_ticker_column,
    schema_columns,
)
from stock_assets.lib.sources import AcceptedMoves, PriceSourceError, rows_between

CSV_SUFFIXES = (".csv", ".csv.gz")
# A file name written like a ticker symbol (AAPL.csv, BRK.B.csv): its rows must be that ticker's.
_TICKER_NAME = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
FROM_FILE_NAME = "stock_assets_ticker_from_file_name"  # DataFrame.attrs flag: no ticker column in the file


def _is_csv(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(CSV_SUFFIXES)


def _stem(file: Path) -> str:
    """AAPL.csv.gz -> AAPL as written; only the CSV suffixes go, so BRK.B.csv stays BRK.B."""
    name = file.name
    for suffix in sorted(CSV_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)].strip()
    return file.stem.strip()


def _ticker_from_file_name(file: Path) -> str:
    return _stem(file).upper()


def _check_file_name_ticker(file: Path, tickers: np.ndarray, wanted: pd.Index) -> None:
    """AAPL.csv whose ticker (or symbol) column says MSFT would store AAPL's prices as MSFT: refuse a
    file named like a ticker (capitals, or a requested ticker in any case) that holds other tickers."""
    stem = _stem(file)
    named = stem.upper()
    if not (_TICKER_NAME.match(stem) or named in set(wanted)):
        return
    others = sorted(set(tickers) - {named})
    if others:
        raise PriceDataError(
            f"CSV {file}: the file name says {named} but its ticker column holds {others[:5]}; rename the file "
            f"after its ticker (e.g. {others[0]}.csv) or correct the column (setting sanity.file_name_ticker: false "
            "turns this check off for files named otherwise)"
        )


class _Parsed:
    """Values as read -> parsed by one of prices.py's parsers, each distinct value once per fetch (all files
    share their dates; a file holds a few tickers), then looked up in bulk."""

    def __init__(self) -> None:
        self.read = pd.Index([], dtype=object)
        self.parsed = np.array([], dtype=object)

    def of(self, values: pd.Series, parse: Callable[[pd.Series], pd.Series]) -> np.ndarray:
        """The parsed value of each of `values`; `parse` gets those not seen before (it raises on bad ones)."""
        at = self.read.get_indexer(values)
        if (at < 0).any():
            new = pd.Series(pd.unique(values[at < 0]), dtype=object)
            self.parsed = np.concatenate([self.parsed, parse(new).to_numpy(dtype=object)])
            self.read = self.read.append(pd.Index(new, dtype=object))
            at = self.read.get_indexer(values)
        return self.parsed[at]


@dataclass
class _Scan:
    """What one `CsvPriceSource.fetch` learns while it reads its files."""

    wanted: pd.Index
    start: str  # YYYY-MM-DD
    end: str
    layouts: set[tuple] = field(default_factory=set)  # column layouts already checked
    tickers: _Parsed = field(default_factory=_Parsed)  # every ticker of every file
    dates: _Parsed = field(default_factory=_Parsed)  # every date of every file, all on the calendar


@dataclass
class _FileWindow:
    """The rows of one file that a fetch validates, as read, with their parsed tickers and dates."""

    file: Path
    rows: pd.DataFrame
    tickers: np.ndarray
    dates: np.ndarray
    last_before: dict[str, str]  # ticker -> its last date before the window in this file


def _last_by(keys: np.ndarray, values: np.ndarray) -> dict:
    """key -> largest value; a plain max for the usual one key (one ticker per file)."""
    if (keys == keys[0]).all():
        return {keys[0]: values.max()}
    return pd.Series(values).groupby(keys).max().to_dict()


@dataclass
class CsvPriceSource:
    """The user's own daily OHLCV: one file, or a directory of *.csv / *.csv.gz (hidden files are skipped).

    Errors name the file (rows that fail together are validated again file by file); a file without a
    ticker (or symbol) column is named after its ticker, e.g. AAPL.csv or AAPL.csv.gz. Column names
    follow the vendor aliases of `prices.COLUMN_ALIASES` (e.g. Yahoo's CSV export).

    A fetch does the work of its window, not of every file's whole history. Every fetch checks every
    file's columns, tickers and dates (an unparseable date, or one that is not an NYSE session, is
    always reported); the other rules (numbers, prices, duplicates, order, one-day moves) apply to
    the requested tickers' rows in [start, end] plus each one's last row before `start` (the move
    check's previous price), so a bad row outside those is reported when a window holding it is fetched.
    """

    path: Path
    name: str = "csv"
    max_abs_log_return: float = DEFAULT_MAX_ABS_LOG_RETURN
    accepted_moves: AcceptedMoves = ()
    rules: SanityRules = DEFAULT_RULES

    def preflight(self, tickers: list[str]) -> None:
        """The cheap part of every fetch, on every file: readable, the schema's columns, and a row for each
        of `tickers`. Run when the code location loads, so a range run over thousands of sessions is refused
        in seconds instead of after Dagster has planned every partition (docs/inputs-and-secrets.md)."""
        found: set[str] = set()
        for file in self._files():
            origin = f"CSV {file}"
            header = self._read(file, nrows=0)
            derived = ("ticker",) if header.attrs.get(FROM_FILE_NAME) else ()
            schema_columns(header, origin, derived=derived)
            if derived:
                found.add(_ticker_from_file_name(file))
                continue
            column = next(c for c in header.columns if canonical_column(c) == "ticker")
            values = self._read(file, usecols=[column]).iloc[:, 0]
            found |= set(values.dropna().astype(str).str.strip().str.upper())
        missing = sorted(set(tickers) - found)
        if missing:
            raise PriceSourceError(
                f"CSV {self.path} has no rows for {missing}; found {sorted(found)[:20]}. Add their files (e.g. "
                f"{missing[0]}.csv) or remove them from settings tickers (STOCK_ASSETS_TICKERS)"
            )

    def _files(self) -> list[Path]:
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
        return files

    def fetch(self, tickers: list[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        path = Path(self.path)
        files = self._files()
        # Settings errors as normalize_price_frame gives them, even for a window without rows to validate.
        checked_move_bound(self.max_abs_log_return)
        accepted_move_set(self.accepted_moves)
        scan = _Scan(pd.Index(sorted(set(tickers)), dtype=object), start.isoformat(), end.isoformat())
        windows = [w for w in (self._scan(f, scan) for f in files) if w is not None]
        data = self._validate(self._previous_rows_only(windows, scan.start), path, single=len(files) == 1)
        found = set(scan.tickers.parsed)
        unknown = sorted(set(tickers) - found)
        if unknown:
            raise PriceSourceError(f"CSV {path} has no rows for {unknown}; found {sorted(found)}")
        return rows_between(data, tickers, start, end)

    def _scan(self, file: Path, scan: _Scan) -> _FileWindow | None:
        """Check the file's columns, tickers and dates; keep the requested tickers' rows up to the window's
        end, those before its start only on their ticker's last date there. None: no requested ticker."""
        raw = self._read(file)
        origin = f"CSV {file}"
        derived = ("ticker",) if raw.attrs.get(FROM_FILE_NAME) else ()
        if (tuple(raw.columns), derived) not in scan.layouts:
            schema_columns(raw.iloc[:0], origin, derived=derived)  # unknown, missing or doubled columns
            scan.layouts.add((tuple(raw.columns), derived))
        if raw.empty:
            self._normalize(raw, origin)  # raises: no rows
        columns = [canonical_column(c) for c in raw.columns]
        raw_tickers, raw_dates = raw.iloc[:, columns.index("ticker")], raw.iloc[:, columns.index("date")]

        # prices.py's parsers, on values not seen in earlier files; if they fail, again on the whole column
        # for the message (with the file's row numbers) that validating the whole file would give.
        def parse_tickers(new: pd.Series) -> pd.Series:
            try:
                return parse_ticker_column(new, origin)
            except PriceDataError:
                parse_ticker_column(raw_tickers, origin)
                raise

        def parse_dates(new: pd.Series) -> pd.Series:
            try:
                parsed = parse_date_column(new, pd.Series("", index=new.index), origin)
                check_calendar(pd.DataFrame({"date": parsed, "ticker": ""}), origin)
                return parsed
            except PriceDataError:
                tickers = parse_ticker_column(raw_tickers, origin)
                whole = pd.DataFrame({"date": parse_date_column(raw_dates, tickers, origin), "ticker": tickers})
                check_calendar(whole, origin)
                raise

        tickers = scan.tickers.of(raw_tickers, parse_tickers)
        if self.rules.file_name_ticker and not derived:
            _check_file_name_ticker(file, tickers, scan.wanted)
        dates = scan.dates.of(raw_dates, parse_dates)
        rows = np.flatnonzero(scan.wanted.get_indexer(tickers) >= 0)
        if not len(rows):
            return None
        tickers, dates = tickers[rows], dates[rows]
        before = dates < scan.start
        keep = ~before & (dates <= scan.end)
        last = _last_by(tickers[before], dates[before]) if before.any() else {}
        if len(last) == 1:
            keep |= before & (dates == next(iter(last.values())))
        elif last:
            keep |= before & (dates == pd.Series(tickers).map(last).to_numpy())
        keep |= self._first_rows_context(tickers, dates, keep, set(last), scan.end)
        return _FileWindow(file, raw.iloc[rows[keep]], tickers[keep], dates[keep], last)

    def _first_rows_context(self, tickers: np.ndarray, dates: np.ndarray, keep: np.ndarray, started: set, end: str):
        """A ticker whose first row in the file lies in the window has no previous row to check its move
        against (a 1e12 price there would be stored): validate it with its next `first_row_sessions` rows."""
        extra = np.zeros(len(tickers), dtype=bool)
        n = self.rules.first_row_sessions
        fresh = np.isin(tickers, list(set(tickers[keep]) - started)) if n else extra
        after = np.flatnonzero(fresh & (dates > end))
        if len(after):
            order = pd.DataFrame({"ticker": tickers[after], "date": dates[after], "at": after})
            order = order.sort_values(["ticker", "date"]).groupby("ticker").head(n)
            extra[order["at"].to_numpy()] = True
        return extra

    @staticmethod
    def _previous_rows_only(windows: list[_FileWindow], start: str) -> list[_FileWindow]:
        """Each ticker's previous row is its last before `start` over all files: drop the other files' candidates."""
        previous: dict[str, str] = {}
        for w in windows:
            for ticker, day in w.last_before.items():
                previous[ticker] = max(day, previous.get(ticker, day))
        out = []
        for w in windows:
            stale = [t for t, day in w.last_before.items() if day != previous[t]]
            if stale:
                keep = ~((w.dates < start) & np.isin(w.tickers, stale))
                w = _FileWindow(w.file, w.rows.iloc[np.flatnonzero(keep)], w.tickers[keep], w.dates[keep], {})
            if len(w.rows):
                out.append(w)
        return out

    def _validate(self, windows: list[_FileWindow], path: Path, single: bool) -> pd.DataFrame:
        """All files' window rows in one validation; only if it fails, file by file to name the file."""
        if not windows:
            return pd.DataFrame(columns=PRICE_FRAME_COLUMNS).astype(dict.fromkeys(NUMERIC_COLUMNS, float))
        origin = f"CSV {windows[0].file}" if single else f"CSV {path} (rows of all its files together)"
        layouts: dict[tuple, list[pd.DataFrame]] = {}
        for w in windows:
            layouts.setdefault(tuple(w.rows.columns), []).append(w.rows)
        try:
            # One validation of all rows under the schema's column names. A layout with splits but no
            # adjusted close is validated apart too: its rule on splits needs to know that.
            together = []
            for layout, rows in layouts.items():
                rows = pd.concat(rows, ignore_index=True)
                renamed, adj_from_close = schema_columns(rows, origin)
                if adj_from_close and "stock_splits" in map(canonical_column, layout):
                    self._normalize(rows, origin)
                together.append(renamed)
            return self._normalize(pd.concat(together, ignore_index=True), origin)
        except PriceDataError:
            pass  # validate again below, outside this handler: the error raised there names the file, alone
        frames = [self._normalize(w.rows, f"CSV {w.file}") for w in windows]
        return frames[0] if single else self._combine(frames, [w.file for w in windows], path)

    def _normalize(self, frame: pd.DataFrame, origin: str) -> pd.DataFrame:
        return normalize_price_frame(
            frame,
            origin,
            max_abs_log_return=self.max_abs_log_return,
            accepted_moves=self.accepted_moves,
            rules=self.rules,
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
    def _read(file: Path, **options) -> pd.DataFrame:
        try:
            frame = pd.read_csv(file, dtype=str, compression="infer", encoding="utf-8-sig", **options)  # Excel: BOM
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
            raise PriceDataError(f"CSV {file}: cannot be read as CSV ({exc})") from exc
        if "ticker" not in {canonical_column(c) for c in frame.columns} and "usecols" not in options:
            frame["ticker"] = _ticker_from_file_name(file)
            frame.attrs[FROM_FILE_NAME] = True
        return frame
