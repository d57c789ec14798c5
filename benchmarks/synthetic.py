"""Deterministic synthetic daily prices for benchmarks only (never a source of the package).

Baskets of 100 or 500 tickers cannot come from the bundled sample (4 tickers), and the scale
benchmark must time the same numbers on every run, so prices are drawn from a seeded factor model:

    log return[t, i] = alpha_i + beta_i * market[t] + gamma_i * sector[t, s(i)] + idiosyncratic[t, i]

with Student-t shocks (fat-ish tails), a slowly varying market volatility regime, and every move
clipped to |0.35| so the project's one-day bound (|log return| <= 1) never trips. Each ticker has an
OHLC bar around its close, a volume that rises on big moves, quarterly dividends for most tickers and
2:1 or 3:1 splits when the unadjusted price runs high. Closes are unadjusted (they drop on a split and
by the dividend on its ex-date); `adj_close` is back-adjusted the way vendors do it, so its one-day
ratio is exactly exp(log return): splits and dividends leave no jump in it.

Files: one `SYNnnn.csv` (or `.csv.gz`) per ticker with the columns the `csv` source reads
(date, ticker, open, high, low, close, adj_close, volume, dividends, stock_splits).

    python benchmarks/synthetic.py OUT_DIR [--tickers 100] [--sessions 2500] [--end 2013-03-01] [--check 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from stock_assets.lib import trading_calendar

SEED = 20130301
N_SECTORS = 11  # like GICS sectors: enough for sector co-movement at 10 tickers, not one sector per ticker
MAX_ABS_MOVE = 0.35
DIVIDEND_EVERY = 63  # about one quarter of sessions


def ticker_names(n: int) -> list[str]:
    """SYN001, SYN002, ... (zero-padded so that file order and ticker order agree)."""
    width = max(3, len(str(n)))
    return [f"SYN{i:0{width}d}" for i in range(1, n + 1)]


def synthetic_sessions(n_sessions: int, end: str | dt.date = "2013-03-01") -> list[dt.date]:
    """The last `n_sessions` NYSE sessions up to `end` (real sessions, so the csv source accepts them)."""
    end = dt.date.fromisoformat(str(end))
    start = end - dt.timedelta(days=int(n_sessions * 1.5) + 30)  # about 252 sessions a 365-day year
    sessions = trading_calendar.sessions_between(start, end)
    if len(sessions) < n_sessions:
        raise ValueError(f"only {len(sessions)} sessions up to {end}")
    return sessions[-n_sessions:]


def _student_t(rng: np.random.Generator, shape, df: float = 5.0) -> np.ndarray:
    """Unit-variance Student-t draws: fat-ish tails without extreme outliers."""
    return rng.standard_t(df, size=shape) / np.sqrt(df / (df - 2))


@dataclass(frozen=True)
class Basket:
    """The generated panel as (session, ticker) arrays, before it becomes CSV rows."""

    dates: list[str]
    tickers: list[str]
    sectors: np.ndarray
    log_returns: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    adj_close: np.ndarray
    volume: np.ndarray
    dividends: np.ndarray
    stock_splits: np.ndarray

    def frame(self, i: int) -> pd.DataFrame:
        """Ticker i's rows in the csv source's layout."""
        return pd.DataFrame(
            {
                "date": self.dates,
                "ticker": self.tickers[i],
                "open": self.open[:, i],
                "high": self.high[:, i],
                "low": self.low[:, i],
                "close": self.close[:, i],
                "adj_close": self.adj_close[:, i],
                "volume": self.volume[:, i].astype(np.int64),
                "dividends": self.dividends[:, i],
                "stock_splits": self.stock_splits[:, i],
            }
        )


def generate(n_tickers: int, n_sessions: int = 2500, end: str = "2013-03-01", seed: int = SEED) -> Basket:
    """The whole basket, deterministic in (n_tickers, n_sessions, end, seed).

    Ticker i's parameters and shocks come from its own stream (seed, i), and the market and
    sectors from a common stream (seed, 2**31): SYN001 has the same history in a basket of 10 and of 500."""
    dates = [d.isoformat() for d in synthetic_sessions(n_sessions, end)]
    t = len(dates)
    common = np.random.default_rng([seed, 2**31])
    # Market: t-shocks with a volatility regime (an AR(1) on log volatility), daily vol about 1%.
    log_vol = np.zeros(t)
    regime = common.normal(0.0, 0.08, t)
    for k in range(1, t):
        log_vol[k] = 0.985 * log_vol[k - 1] + regime[k]
    market = 2e-4 + 0.010 * np.exp(log_vol) * _student_t(common, t)
    sector_returns = 0.007 * _student_t(common, (t, N_SECTORS))

    names = ticker_names(n_tickers)
    r = np.empty((t, n_tickers))
    sectors = np.empty(n_tickers, dtype=int)
    params = []
    for i in range(n_tickers):
        rng = np.random.default_rng([seed, i])
        sectors[i] = rng.integers(N_SECTORS)
        beta, gamma = rng.uniform(0.6, 1.4), rng.uniform(0.5, 1.3)
        idio_vol = rng.uniform(0.008, 0.022)
        alpha = rng.normal(1e-4, 2e-4)
        idio = idio_vol * _student_t(rng, t, df=4.0)
        r[:, i] = alpha + beta * market + gamma * sector_returns[:, sectors[i]] + idio
        params.append(
            {
                "rng": rng,
                "price": rng.uniform(15.0, 120.0),
                "idio_vol": idio_vol,
                "yield": rng.uniform(0.002, 0.008) if rng.random() < 0.7 else 0.0,  # per quarter; 30% pay none
                "phase": int(rng.integers(DIVIDEND_EVERY)),
                "split_at": rng.uniform(150.0, 400.0),
                "shares": rng.lognormal(14.0, 0.8),
            }
        )
    r = np.clip(r, -MAX_ABS_MOVE, MAX_ABS_MOVE)

    close = np.empty((t, n_tickers))
    dividends = np.zeros((t, n_tickers))
    splits = np.zeros((t, n_tickers))
    close[0] = [p["price"] for p in params]
    pays = np.array([p["yield"] > 0 for p in params])
    yields = np.array([p["yield"] for p in params])
    phases = np.array([p["phase"] for p in params])
    split_at = np.array([p["split_at"] for p in params])
    for k in range(1, t):
        prev = close[k - 1]
        # Splits when the price runs high: 3:1 far above the ticker's threshold, else 2:1.
        split = np.where(prev > 1.5 * split_at, 3.0, np.where(prev > split_at, 2.0, 0.0))
        dividend = np.where(pays & (k % DIVIDEND_EVERY == phases), np.round(yields * prev, 4), 0.0)
        # Ex-dividend at the open (the price drops by the dividend), then the day's move; a split
        # divides everything of that day, dividend included (it is paid per new share).
        ratio = np.where(split > 0, split, 1.0)
        close[k] = (prev - dividend) * np.exp(r[k]) / ratio
        dividends[k] = dividend / ratio
        splits[k] = split
    # Back-adjust (vendor style): prices before an ex-date scale by (1 - D / previous close) and
    # by 1/ratio before a split, so adj_close[k] / adj_close[k-1] == exp(r[k]) and adj == close at the end.
    ratios = np.where(splits > 0, splits, 1.0)
    step = np.ones((t, n_tickers))
    step[1:] = (1 - dividends[1:] * ratios[1:] / close[:-1]) / ratios[1:]
    factor = np.ones((t, n_tickers))
    factor[:-1] = np.cumprod(step[:0:-1], axis=0)[::-1]
    adj_close = close * factor

    opens, highs, lows, volumes = (np.empty((t, n_tickers)) for _ in range(4))
    for i, p in enumerate(params):
        rng, vol = p["rng"], p["idio_vol"]
        prev = np.r_[close[0, i], close[:-1, i]]
        ratio = np.where(splits[:, i] > 0, splits[:, i], 1.0)
        gap = rng.normal(0.0, 0.3 * vol, t)
        opens[:, i] = (prev / ratio - dividends[:, i]) * np.exp(np.clip(gap, -0.1, 0.1))
        opens[0, i] = close[0, i] * np.exp(gap[0] * 0.1)
        top, bottom = np.maximum(opens[:, i], close[:, i]), np.minimum(opens[:, i], close[:, i])
        highs[:, i] = top * np.exp(np.abs(rng.normal(0.0, 0.5 * vol, t)))
        lows[:, i] = bottom * np.exp(-np.abs(rng.normal(0.0, 0.5 * vol, t)))
        # Shares traded: more on big moves, and more shares (at a lower price) after each split.
        shares = p["shares"] * np.cumprod(ratio) * np.exp(rng.normal(0.0, 0.35, t) + 12.0 * np.abs(r[:, i]))
        volumes[:, i] = np.maximum(1.0, np.round(shares))
    return Basket(dates, names, sectors, r, opens, highs, lows, close, adj_close, volumes, dividends, splits)


def write_csv_dir(basket: Basket, out: str | Path, gzip: bool = False) -> list[Path]:
    """One file per ticker; prices at 6 significant digits (rounding is monotonic, so OHLC stays consistent)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = ".csv.gz" if gzip else ".csv"
    files = []
    for i, ticker in enumerate(basket.tickers):
        path = out / f"{ticker}{suffix}"
        basket.frame(i).to_csv(path, index=False, float_format="%.6g")
        files.append(path)
    return files


def write_basket(
    out: str | Path, n_tickers: int, n_sessions: int = 2500, end: str = "2013-03-01", seed: int = SEED, gzip=False
) -> Basket:
    """Generate and write; returns the basket (its tickers and dates are what Settings need)."""
    basket = generate(n_tickers, n_sessions, end, seed)
    write_csv_dir(basket, out, gzip)
    return basket


def check_through_source(out: str | Path, basket: Basket, n: int = 3) -> str:
    """Load a few tickers back through the project's csv source (all of its validation) and compare."""
    from stock_assets.lib.csv_source import CsvPriceSource

    picks = sorted({basket.tickers[0], basket.tickers[len(basket.tickers) // 2], basket.tickers[-1]})[:n]
    first, last = dt.date.fromisoformat(basket.dates[0]), dt.date.fromisoformat(basket.dates[-1])
    loaded = CsvPriceSource(Path(out)).fetch(picks, first, last)
    for ticker in picks:
        rows = loaded[loaded["ticker"] == ticker]
        i = basket.tickers.index(ticker)
        assert len(rows) == len(basket.dates), (ticker, len(rows))
        moves = np.diff(np.log(rows["adj_close"].to_numpy()))
        assert np.allclose(moves, basket.log_returns[1:, i], atol=1e-4), ticker  # 6 significant digits
    r = basket.log_returns
    return (
        f"{len(picks)} tickers loaded through CsvPriceSource ({len(loaded)} rows, {picks}); basket: "
        f"daily vol {r.std(axis=0).min():.2%}..{r.std(axis=0).max():.2%}, max abs log return {np.abs(r).max():.3f}, "
        f"mean pairwise corr {_mean_corr(r):.2f}, dividends {int((basket.dividends > 0).sum())}, "
        f"splits {int((basket.stock_splits > 0).sum())}"
    )


def _mean_corr(r: np.ndarray) -> float:
    c = np.corrcoef(r[:, : min(r.shape[1], 100)].T)
    return float(c[np.triu_indices_from(c, 1)].mean()) if c.ndim == 2 else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="directory to write (created)")
    parser.add_argument("--tickers", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=2500)
    parser.add_argument("--end", default="2013-03-01")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--gzip", action="store_true", help="write .csv.gz (smaller, slower to read)")
    args = parser.parse_args()
    started = time.perf_counter()
    basket = write_basket(args.out, args.tickers, args.sessions, args.end, args.seed, args.gzip)
    written = time.perf_counter() - started
    span = f"{basket.dates[0]}..{basket.dates[-1]}"
    print(f"{args.tickers} tickers x {len(basket.dates)} sessions ({span}) written in {written:.1f} s")
    print(check_through_source(args.out, basket))


if __name__ == "__main__":
    main()
