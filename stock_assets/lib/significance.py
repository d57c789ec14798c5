"""Is the candidate's forecast loss significantly lower than the reference's? (promotion gate)

A one-sided Diebold-Mariano test on the per-session loss differential, with a Newey-West
(Bartlett) long-run variance and the Harvey-Leybourne-Newbold small-sample correction, compared
with Student-t(n - 1). Pure numpy/scipy, so the gate's arithmetic is unit-tested without models.

Losses are first averaged over tickers per session (`session_loss_differential`): same-day moves
of different tickers are strongly correlated, so treating n_sessions x n_tickers forecasts as
independent would overstate the evidence roughly by the number of tickers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_SESSIONS = 3  # fewer sessions than this: no variance estimate worth a decision


def session_loss_differential(loss_candidate: np.ndarray, loss_reference: np.ndarray) -> np.ndarray:
    """Per-session mean over tickers of (candidate - reference) losses, oldest session first.

    Inputs are (n_sessions, n_tickers) arrays, or 1-d for one ticker. Only finite pairs count; a
    session without any finite pair is dropped (not zero: "no evidence" must not look like a tie).
    """
    candidate = np.asarray(loss_candidate, dtype=np.float64)
    reference = np.asarray(loss_reference, dtype=np.float64)
    if candidate.shape != reference.shape:
        raise ValueError(f"loss arrays must have the same shape, got {candidate.shape} and {reference.shape}")
    if candidate.ndim == 1:
        candidate, reference = candidate[:, None], reference[:, None]
    elif candidate.ndim != 2:
        raise ValueError(f"losses must be 1-d or (n_sessions, n_tickers), got shape {candidate.shape}")
    diff = candidate - reference
    finite = np.isfinite(diff)
    count = finite.sum(axis=1)
    total = np.where(finite, diff, 0.0).sum(axis=1)
    keep = count > 0
    return total[keep] / count[keep]


@dataclass(frozen=True)
class DMResult:
    """One-sided Diebold-Mariano outcome; small `p_value` = candidate's loss significantly lower."""

    statistic: float  # HLN-corrected DM statistic; negative favours the candidate
    p_value: float  # P(T <= statistic), T ~ Student-t(n - 1)
    mean_differential: float  # mean of candidate - reference loss per session
    n_sessions: int
    horizon: int = 1
    max_lag: int = 0

    def significant(self, alpha: float) -> bool:
        """True when the candidate is significantly better at level `alpha`."""
        return bool(self.p_value < alpha)

    def verdict(self, alpha: float) -> str:
        """One line for logs and check metadata."""
        outcome = "significantly lower" if self.significant(alpha) else "not significantly lower"
        return (
            f"candidate loss {outcome} than reference: DM {self.statistic:.3f}, p={self.p_value:.4f} "
            f"({'<' if self.significant(alpha) else '>='} {alpha:g}), mean differential "
            f"{self.mean_differential:.6g} over {self.n_sessions} sessions"
        )


def diebold_mariano(differential: np.ndarray, horizon: int = 1, max_lag: int | None = None) -> DMResult:
    """One-sided DM test of H1: E[differential] < 0 (the candidate's loss is lower).

    `differential` is candidate - reference loss per session, oldest first (non-finite values are
    dropped). Long-run variance: Newey-West with Bartlett weights 1 - k / (max_lag + 1) up to
    `max_lag` (default horizon - 1, Diebold-Mariano's choice for h-step forecasts; pass more for
    autocorrelated losses). The statistic is scaled by sqrt((n + 1 - 2h + h(h - 1) / n) / n)
    (Harvey, Leybourne & Newbold 1997) and compared with Student-t(n - 1).

    Degenerate cases, decided explicitly rather than by NaN arithmetic:
    - n < 3 or n <= horizon: p = 1.0 (cannot conclude), statistic NaN;
    - zero variance (e.g. identical forecasts): p = 0.0 if the mean is negative, else 1.0,
      statistic -inf / +inf / 0.0;
    - a non-positive HAC estimate: the plain variance (Bartlett weights keep the estimate >= 0 in
      exact arithmetic, so this only guards a rounding zero with strongly negative autocovariances).
    """
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    lag = horizon - 1 if max_lag is None else int(max_lag)
    if lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    d = np.asarray(differential, dtype=np.float64).ravel()
    d = d[np.isfinite(d)]
    n = int(d.size)
    mean = float(d.mean()) if n else float("nan")
    if n < MIN_SESSIONS or n <= horizon:
        return DMResult(float("nan"), 1.0, mean, n, horizon, lag)
    lag = min(lag, n - 1)
    dev = d - mean
    gamma0 = float(dev @ dev) / n
    scale = float(np.max(np.abs(d)))
    if scale == 0.0 or math.sqrt(gamma0) <= 1e-12 * scale:
        statistic = -math.inf if mean < 0 else (math.inf if mean > 0 else 0.0)
        return DMResult(statistic, 0.0 if mean < 0 else 1.0, mean, n, horizon, lag)
    long_run = gamma0
    for k in range(1, lag + 1):
        long_run += 2.0 * (1.0 - k / (lag + 1)) * float(dev[k:] @ dev[:-k]) / n
    if long_run <= 0.0:
        long_run = gamma0
    dm = mean / math.sqrt(long_run / n)
    statistic = dm * math.sqrt((n + 1 - 2 * horizon + horizon * (horizon - 1) / n) / n)
    p_value = float(stats.t.cdf(statistic, df=n - 1))
    return DMResult(float(statistic), p_value, mean, n, horizon, lag)
