"""Every served model is a forecaster of the next session's log-return distribution: quantiles at the
configured levels, for each ticker (docs/decisions.md, "Forecasts are distributions").

Two families share one call, `forecast(features, close, ends) -> (len(ends), tickers, levels)`:

- `BaselineForecaster`: location-scale forecasts from prices alone, numpy/scipy only, stored as plain
  numbers (persistence or drift for the median, an EWMA or a GARCH(1,1)-t volatility, a shape fitted
  on the training window). Serving one imports neither torch nor the training stack.
- `NetworkForecaster`: an exported LSTM program with its `Preprocessing` (lib/network_forecaster.py,
  which imports torch).

Quantiles are of the log return, so prices `close * exp(q)` never cross and never go negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stock_assets.lib.contracts import Contract
from stock_assets.lib.distributions import (
    check_levels,
    ewma_variance,
    location_scale_quantiles,
    normal_shape,
    standardized_quantiles,
    student_t_shape,
)
from stock_assets.lib.metrics import log_returns

PERSISTENCE, DRIFT, GARCH = "persistence", "drift", "garch"
BASELINES = (PERSISTENCE, DRIFT, GARCH)
FIRST_CHAMPION = PERSISTENCE  # persistence with an EWMA spread: the naive forecast, as a distribution
DRILL = "drill-biased"  # the replay's deliberately degraded champion (stock_assets/replay.py)


def sigma_after(close: np.ndarray, ends, variance_fn) -> np.ndarray:
    """Volatility forecast for the session after each end (rows of `close`), from the log returns
    up to and including that end; `variance_fn(returns)` gives per-row next-session variances."""
    returns = log_returns(close)  # row i is the move from close[i] to close[i + 1]
    variance = variance_fn(returns)  # row i: forecast for the move after close[i + 1]
    ends = np.asarray(ends)
    ends = np.where(ends < 0, len(close) + ends, ends)
    if (ends < 1).any():
        raise ValueError("a volatility forecast needs at least one return before each end")
    return np.sqrt(variance[ends - 1])


@dataclass(frozen=True)
class BaselineForecaster(Contract):
    """A location-scale forecast from closes alone. `median` is the per-ticker log-return median
    (zeros for persistence), `shape` the per-ticker standardized quantiles at `levels`, and the
    scale an EWMA (`ewma_lambda`) or, for `garch`, each ticker's GARCH(1,1)-t recursion."""

    kind: str
    tickers: tuple[str, ...]
    levels: tuple[float, ...]
    median: tuple[float, ...]
    shape: tuple[tuple[float, ...], ...]
    ewma_lambda: float = 0.94
    garch: tuple[dict, ...] = ()  # GarchParams.to_dict() per ticker, for kind "garch"
    trained_through: str = ""

    def variances(self, returns: np.ndarray) -> np.ndarray:
        if self.kind != GARCH:
            return ewma_variance(returns, lam=self.ewma_lambda)
        from stock_assets.lib.garch import GarchParams, garch_variance

        columns = [garch_variance(GarchParams.from_dict(p), returns[:, i]) for i, p in enumerate(self.garch)]
        return np.stack(columns, axis=1)

    def forecast(self, features, close: np.ndarray, ends) -> np.ndarray:
        """(len(ends), tickers, levels) log-return quantiles for the sessions after `ends`."""
        sigma = sigma_after(np.asarray(close, dtype=np.float64), ends, self.variances)
        median = np.broadcast_to(np.asarray(self.median, dtype=np.float64), sigma.shape)
        return location_scale_quantiles(median, sigma, np.asarray(self.shape, dtype=np.float64))


def fit_baseline(
    kind: str,
    close: np.ndarray,
    tickers,
    levels,
    ewma_lambda: float,
    trained_through: str,
    median: np.ndarray | None = None,
) -> BaselineForecaster:
    """Fit `kind` on the (sessions, tickers) closes of a training window: the median (persistence 0,
    drift the window's mean log return, or `median` as given, e.g. a drill's bias), the volatility
    recursion, and the standardized shape of the window's returns under that recursion."""
    check_levels(levels)
    close = np.asarray(close, dtype=np.float64)
    returns = log_returns(close)
    if kind not in BASELINES and median is None:
        raise ValueError(f"unknown baseline {kind!r}; allowed: {', '.join(BASELINES)}")
    if median is None:
        median = np.nanmean(returns, axis=0) if kind == DRIFT else np.zeros(close.shape[1])
    garch: tuple[dict, ...] = ()
    if kind == GARCH:
        from stock_assets.lib.garch import fit_garch_per_ticker

        params = fit_garch_per_ticker(returns)
        garch = tuple(p.to_dict() for p in params)
        shape = np.stack([student_t_shape(levels, p.nu) for p in params])
    else:
        variance = ewma_variance(returns, lam=ewma_lambda)
        sigma_before = np.sqrt(np.vstack([np.full((1, returns.shape[1]), np.nan), variance[:-1]]))
        shape = standardized_quantiles(returns - median, sigma_before, levels, center=True)
    return BaselineForecaster(
        kind=kind,
        tickers=tuple(str(t) for t in tickers),
        levels=tuple(float(level) for level in levels),
        median=tuple(float(m) for m in np.asarray(median, dtype=np.float64)),
        shape=tuple(tuple(float(v) for v in row) for row in np.asarray(shape, dtype=np.float64)),
        ewma_lambda=float(ewma_lambda),
        garch=garch,
        trained_through=trained_through,
    )


def gaussian_baseline(kind: str, median, tickers, levels, ewma_lambda: float, day: str) -> BaselineForecaster:
    """A baseline whose shape is Gaussian (no window to fit it on): drills and tests."""
    shape = np.tile(normal_shape(levels), (len(tickers), 1))
    return BaselineForecaster(
        kind=kind,
        tickers=tuple(str(t) for t in tickers),
        levels=tuple(float(level) for level in levels),
        median=tuple(float(m) for m in np.asarray(median, dtype=np.float64)),
        shape=tuple(tuple(float(v) for v in row) for row in shape),
        ewma_lambda=float(ewma_lambda),
        trained_through=day,
    )
