"""Feature-computation benchmark: compute_features for 10 tickers x 2,500 sessions, every session a target.

The panel is a seeded random walk (consistent OHLC, dividend-style adjustment steps, lognormal volume),
so every run times the same numbers. The vectorised path is timed best of 3 after a warm-up call; the
`ta` reference (one ta pass per ticker and anchor window, kept in the tests) runs once for comparison.

    python benchmarks/features.py
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from stock_assets.lib import trading_calendar
from stock_assets.lib.indicators import FEATURE_COLUMNS, compute_features

N_TICKERS, N_SESSIONS, LOOKBACK, SEED = 10, 2500, 260, 20240601


def price_panel(n_tickers: int = N_TICKERS, n_sessions: int = N_SESSIONS, seed: int = SEED):
    """(prices, sessions, tickers): a deterministic long-format panel in the schema of the sample."""
    sessions = [d.isoformat() for d in trading_calendar.sessions_between("2000-01-03", "2013-03-01")][-n_sessions:]
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(n_tickers):
        close = 20.0 * (k + 1) * np.exp(np.cumsum(rng.normal(3e-4, 0.02, n_sessions)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, 0.005, n_sessions))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.01, n_sessions)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.01, n_sessions)))
        # Adjustment factor rising to 1 in small steps, like accumulated dividends.
        factor = np.cumprod(np.where(rng.random(n_sessions) < 0.016, 1.005, 1.0))
        volume = np.round(rng.lognormal(15.0, 0.4, n_sessions))
        bars = {"open": open_, "high": high, "low": low, "close": close, "adj_close": close * factor / factor[-1]}
        frames.append(pd.DataFrame({"date": sessions, "ticker": f"T{k:02d}", **bars, "volume": volume}))
    prices = pd.concat(frames, ignore_index=True)
    return prices, sessions, sorted(prices["ticker"].unique())


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the ta reference lives in the tests
    from stock_assets_tests.lib.test_indicators import reference_features

    prices, sessions, tickers = price_panel()

    def run():
        return compute_features(prices, sessions, sessions, tickers, LOOKBACK)

    run()  # warm-up: imports, pandas/numpy first-call costs
    seconds = min(timed(run)[0] for _ in range(3))
    features = run()
    ta_seconds, reference = timed(lambda: reference_features(prices, sessions, sessions, tickers, LOOKBACK))
    a, b = features[FEATURE_COLUMNS].to_numpy(), reference[FEATURE_COLUMNS].to_numpy()
    same_nan = bool((np.isnan(a) == np.isnan(b)).all())
    diff = float(np.nanmax(np.abs(a - b), initial=0.0))

    label = f"{len(tickers)} tickers x {len(sessions)} sessions"
    print(f"\nFeature benchmark ({os.cpu_count()} cores; lookback {LOOKBACK}, {len(features)} rows)")
    print("| path | tickers x sessions | seconds |\n|---|---|---|")
    print(f"| vectorised compute_features (best of 3) | {label} | {seconds:.3f} |")
    print(f"| ta, one pass per ticker and window (once) | {label} | {ta_seconds:.3f} |")
    print(f"\nspeed-up {ta_seconds / seconds:.0f}x; max abs difference vs ta {diff:.1e}, same NaN pattern: {same_nan}")
    print(f"features {len(tickers)}x{len(sessions)}: {seconds:.3f} s")


if __name__ == "__main__":
    main()
