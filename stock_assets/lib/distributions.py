"""Quantile forecasts of the next session's log return: scores, calibration tests, volatility scales.

Why a module of its own: a point forecast of the close says nothing about how far the close may
move, and a forecaster is only as useful as its stated uncertainty is honest. Every model here
(EWMA, GARCH, networks) ends as the same object, quantiles of r = log(close[t+1] / close[t]) at
`levels` on the last axis, so scoring (pinball, coverage, Winkler, PIT), backtests (Kupiec,
Christoffersen) and online recalibration (ACI) are written once, in numpy/scipy, unit-tested
without models. Leading axes are free, e.g. (sessions, tickers); session is axis 0 where time
matters. NaN means "no forecast / no outcome" and propagates instead of being scored as zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import special, stats

DEFAULT_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
MIN_STANDARDIZED = 30  # fewer finite z's than this: the empirical shape is noise, use the normal


def quantile_column(level: float) -> str:
    """Column name of a level: 0.05 -> "q05", 0.5 -> "q50", 0.025 -> "q025", 0.975 -> "q975"."""
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {level}")
    digits = f"{float(level):.10f}".split(".")[1].rstrip("0")
    return "q" + digits.ljust(2, "0")


def check_levels(levels: Sequence[float]) -> tuple[float, ...]:
    """The levels as floats; ValueError naming the problem unless usable for interval forecasts."""
    out = tuple(float(x) for x in levels)
    if not out or not all(0.0 < x < 1.0 for x in out):
        raise ValueError(f"quantile levels must lie strictly inside (0, 1), got {out}")
    if any(b <= a for a, b in zip(out, out[1:])):
        raise ValueError(f"quantile levels must be strictly increasing, got {out}")
    if not any(math.isclose(x, 0.5) for x in out):
        raise ValueError(f"quantile levels must contain the median 0.5, got {out}")
    unpaired = [x for x in out if not any(math.isclose(x + y, 1.0, abs_tol=1e-9) for y in out)]
    if unpaired:
        raise ValueError(f"quantile levels must come in symmetric pairs (l, 1 - l); unpaired: {unpaired}")
    return out


def central_intervals(levels: Sequence[float]) -> dict[float, tuple[float, float]]:
    """Nominal coverage -> (lower level, upper level) for each symmetric pair, widest first."""
    levels = [float(x) for x in levels]
    pairs = {}
    for low in levels:
        if low < 0.5:
            for high in levels:
                if math.isclose(low + high, 1.0, abs_tol=1e-9):
                    pairs[round(high - low, 10)] = (low, high)
    return dict(sorted(pairs.items(), reverse=True))


def _median_index(levels: Sequence[float]) -> int:
    for i, x in enumerate(levels):
        if math.isclose(float(x), 0.5):
            return i
    raise ValueError(f"quantile levels must contain the median 0.5, got {tuple(levels)}")


def pinball_per_level(y, quantiles, levels) -> np.ndarray:
    """Pinball (quantile) loss per level, shape (..., L): max(l * d, (l - 1) * d), d = y - q."""
    y = np.asarray(y, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64)
    lv = np.asarray(levels, dtype=np.float64)
    d = y[..., None] - q
    return np.maximum(lv * d, (lv - 1.0) * d)


def pinball_loss(y, quantiles, levels) -> np.ndarray:
    """Mean pinball loss over levels (...); NaN where y or any quantile is NaN."""
    return pinball_per_level(y, quantiles, levels).mean(axis=-1)


def interval_covered(y, lower, upper) -> np.ndarray:
    """1.0 where lower <= y <= upper, 0.0 outside, NaN where any input is NaN."""
    y, lo, hi = (np.asarray(a, dtype=np.float64) for a in (y, lower, upper))
    covered = ((lo <= y) & (y <= hi)).astype(np.float64)
    return np.where(np.isnan(y) | np.isnan(lo) | np.isnan(hi), np.nan, covered)


def winkler_score(y, lower, upper, alpha: float) -> np.ndarray:
    """Interval score of a (1 - alpha) interval: width + 2 / alpha * distance of y outside it."""
    y, lo, hi = (np.asarray(a, dtype=np.float64) for a in (y, lower, upper))
    return (hi - lo) + 2.0 / alpha * (np.maximum(lo - y, 0.0) + np.maximum(y - hi, 0.0))


def pit_values(y, quantiles, levels) -> np.ndarray:
    """Forecast CDF at y (probability integral transform), strictly inside (0, 1), monotone in y.

    Between quantiles: linear interpolation in level space. Tail rule: beyond the outer quantile
    the CDF decays exponentially, F(y) = l_0 * exp(s (y - q_0)) below and
    1 - F(y) = (1 - l_L) * exp(-s' (y - q_L)) above, with the rate chosen so the density is
    continuous with the outer linear segment (s = slope / l_0). Exponential (Laplace-like) tails
    never reach 0 or 1, so an outcome far outside the forecast gets a tiny but ordered PIT.
    Crossed quantiles are sorted first. NaN where y or any quantile is NaN.
    """
    y = np.asarray(y, dtype=np.float64)[..., None]
    q = np.sort(np.asarray(quantiles, dtype=np.float64), axis=-1)
    lv = np.asarray(levels, dtype=np.float64)
    n = lv.size
    tiny = np.finfo(np.float64).tiny
    idx = np.clip((q <= y).sum(axis=-1, keepdims=True), 1, n - 1)
    q_lo, q_hi = np.take_along_axis(q, idx - 1, -1), np.take_along_axis(q, idx, -1)
    l_lo, l_hi = lv[idx - 1], lv[idx]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        frac = np.clip((y - q_lo) / np.maximum(q_hi - q_lo, tiny), 0.0, 1.0)
        inner = l_lo + frac * (l_hi - l_lo)
        rate_lo = (lv[1] - lv[0]) / np.maximum(q[..., 1:2] - q[..., :1], tiny) / lv[0]
        rate_hi = (lv[-1] - lv[-2]) / np.maximum(q[..., -1:] - q[..., -2:-1], tiny) / (1 - lv[-1])
        below = lv[0] * np.exp(rate_lo * np.minimum(y - q[..., :1], 0.0))
        above = 1.0 - (1.0 - lv[-1]) * np.exp(-rate_hi * np.maximum(y - q[..., -1:], 0.0))
    pit = np.where(y < q[..., :1], below, np.where(y > q[..., -1:], above, inner))[..., 0]
    eps = np.finfo(np.float64).eps
    pit = np.clip(pit, tiny, 1.0 - eps)
    return np.where(np.isnan(y[..., 0]) | np.isnan(q).any(axis=-1), np.nan, pit)


def binomial_band(n: int, p: float, confidence: float = 0.95) -> tuple[float, float]:
    """Central `confidence` band of the observed share of n Bernoulli(p) trials (exact quantiles)."""
    tail = (1.0 - confidence) / 2.0
    low, high = stats.binom.ppf([tail, 1.0 - tail], int(n), p)
    return float(low) / n, float(high) / n


def _finite_misses(misses) -> np.ndarray:
    m = np.asarray(misses, dtype=np.float64).ravel()
    return m[np.isfinite(m)]


def kupiec_pof(misses, p: float) -> float:
    """p-value of Kupiec's proportion-of-failures LR test that the miss rate is p (chi2, 1 dof).

    LR = -2 [log L(p) - log L(x / n)] with x misses in n trials; 0 log 0 = 0, so no misses or all
    misses are handled (they are strong evidence against p, not NaN). NaN entries are ignored;
    no finite entry at all gives NaN.
    """
    m = _finite_misses(misses)
    n, x = m.size, float(m.sum())
    if n == 0:
        return float("nan")
    pi = x / n
    ll_null = special.xlogy(x, p) + special.xlogy(n - x, 1.0 - p)
    ll_alt = special.xlogy(x, pi) + special.xlogy(n - x, 1.0 - pi)
    return float(stats.chi2.sf(max(-2.0 * (ll_null - ll_alt), 0.0), 1))


def christoffersen_independence(misses) -> float:
    """p-value of Christoffersen's (1998) Markov independence LR test (chi2, 1 dof), oldest first.

    H0: a miss is as likely after a hit as after a miss (no clustering). Transitions are counted
    between adjacent sessions only where both are finite (a NaN breaks the chain, it is not
    bridged). NaN when undefined: no transition out of one of the states (no misses, all misses,
    or the only miss is the last observation), since pi_11 or pi_01 then has no data.
    """
    m = np.asarray(misses, dtype=np.float64).ravel()
    prev, cur = m[:-1], m[1:]
    ok = np.isfinite(prev) & np.isfinite(cur)
    prev, cur = prev[ok] > 0.5, cur[ok] > 0.5
    n00, n01 = float(np.sum(~prev & ~cur)), float(np.sum(~prev & cur))
    n10, n11 = float(np.sum(prev & ~cur)), float(np.sum(prev & cur))
    if n00 + n01 == 0 or n10 + n11 == 0:
        return float("nan")
    pi01, pi11 = n01 / (n00 + n01), n11 / (n10 + n11)
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    ll_null = special.xlogy(n00 + n10, 1.0 - pi) + special.xlogy(n01 + n11, pi)
    xlogy = special.xlogy
    ll_alt = xlogy(n00, 1.0 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1.0 - pi11) + xlogy(n11, pi11)
    return float(stats.chi2.sf(max(-2.0 * (ll_null - ll_alt), 0.0), 1))


def ewma_variance(log_returns, lam: float = 0.94, warmup: int = 20) -> np.ndarray:
    """RiskMetrics variance; row t is the forecast for the session after t (uses r up to t).

    s2[t + 1] = lam * s2[t] + (1 - lam) * r[t]^2 along axis 0. The state before a column's first
    return is the mean square of its first `warmup` finite returns, so the first `warmup` rows
    of a column have seen a few later returns: scoring should skip them. NaN returns are skipped
    (variance carried forward); rows before a column's first finite return are NaN.
    """
    r = np.asarray(log_returns, dtype=np.float64)
    flat = r.reshape(r.shape[0], -1)
    finite = np.isfinite(flat)
    rank = np.cumsum(finite, axis=0)
    early = finite & (rank <= warmup)
    with np.errstate(invalid="ignore", divide="ignore"):
        s2 = (np.where(early, flat, 0.0) ** 2).sum(axis=0) / early.sum(axis=0)
    out = np.empty_like(flat)
    for t in range(flat.shape[0]):
        s2 = np.where(finite[t], lam * s2 + (1.0 - lam) * np.where(finite[t], flat[t], 0.0) ** 2, s2)
        out[t] = s2
    return np.where(rank > 0, out, np.nan).reshape(r.shape)


def ewma_volatility(log_returns, lam: float = 0.94, warmup: int = 20) -> np.ndarray:
    """Square root of `ewma_variance`: the volatility forecast for the session after each row."""
    return np.sqrt(ewma_variance(log_returns, lam=lam, warmup=warmup))


def normal_shape(levels) -> np.ndarray:
    """Standard normal quantiles at `levels`, shape (L,)."""
    return stats.norm.ppf(np.asarray(levels, dtype=np.float64))


def student_t_shape(levels, nu) -> np.ndarray:
    """Unit-variance Student-t quantiles, t.ppf(l, nu) * sqrt((nu - 2) / nu); nu > 2 (scalar or (T,))."""
    nu = np.asarray(nu, dtype=np.float64)
    if not np.all(nu > 2.0):
        raise ValueError(f"Student-t shape needs nu > 2 for a finite variance, got {nu}")
    lv = np.asarray(levels, dtype=np.float64)
    return stats.t.ppf(lv, nu[..., None]) * np.sqrt((nu - 2.0) / nu)[..., None]


def standardized_quantiles(log_returns, sigma_before, levels, center: bool = True) -> np.ndarray:
    """Empirical quantiles of z = r / sigma_before per column, shape (tickers, L) ((L,) for 1-d).

    sigma_before[t] must be the volatility forecast made before r[t] (ewma_volatility shifted by
    one row), so the shape is out-of-sample in the volatility. `center` moves the 0.5 quantile
    to 0, i.e. the median of persistence. NaNs are ignored; columns with fewer than
    MIN_STANDARDIZED finite z's get the standard normal quantiles.
    """
    r = np.asarray(log_returns, dtype=np.float64)
    one_d = r.ndim == 1
    with np.errstate(invalid="ignore", divide="ignore"):
        z = r / np.asarray(sigma_before, dtype=np.float64)
    z = np.where(np.isfinite(z), z, np.nan).reshape(r.shape[0], -1)
    lv = np.asarray(levels, dtype=np.float64)
    enough = np.isfinite(z).sum(axis=0) >= MIN_STANDARDIZED
    out = np.tile(normal_shape(lv), (z.shape[1], 1))
    if enough.any():
        out[enough] = np.nanquantile(z[:, enough], lv, axis=0).T
    if center:
        out = out - out[:, [_median_index(lv)]]
    return out[0] if one_d else out


def location_scale_quantiles(median, sigma, shape) -> np.ndarray:
    """median[..., None] + sigma[..., None] * shape; shape is (L,) or (tickers, L)."""
    median = np.asarray(median, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    return median[..., None] + sigma[..., None] * np.asarray(shape, dtype=np.float64)


def rescale_spread(quantiles, levels, k) -> np.ndarray:
    """q50 + k * (q - q50): stretches (k > 1) or shrinks the spread; order kept for any k > 0."""
    k = np.asarray(k, dtype=np.float64)
    if not np.all(k > 0):
        raise ValueError(f"spread factor must be > 0, got {k}")
    q = np.asarray(quantiles, dtype=np.float64)
    median = q[..., _median_index(levels)][..., None]
    return median + k[..., None] * (q - median)


def aci_scale(misses, target: float = 0.10, gamma: float = 0.05, k_min: float = 0.25, k_max: float = 4.0) -> float:
    """Spread factor k by adaptive conformal calibration (after Gibbs & Candes 2021), online form.

    From k = 1, for each scored session in order (oldest first, NaN skipped):
    log k += gamma * (miss - target), clipped to [log k_min, log k_max]. `misses` must be those of
    the intervals actually served, already rescaled by the k in force at the time; replaying this
    function over the growing history then reproduces the online sequence exactly.

    Why coverage converges to 1 - target whatever the model: while the clip does not bind, the
    updates telescope, sum_t (miss_t - target) = (log k_T - log k_0) / gamma, and log k stays in
    [log k_min, log k_max], so |miss rate - target| <= log(k_max / k_min) / (gamma * T) -> 0.
    Nothing about the model or the return distribution is assumed; only that a wider interval
    misses less often makes k settle rather than oscillate. Honest limits: the bound is a
    long-run average (a volatility jump still costs a transient of a few dozen sessions), and when
    the clip binds (a model so wrong that more than k_max times its spread is needed) the excess is
    absorbed by the clip and the guarantee is lost; a factor pinned at a bound means "retrain".
    """
    lo, hi = math.log(k_min), math.log(k_max)
    log_k = 0.0
    for step in (gamma * (_finite_misses(misses) - target)).tolist():  # plain floats: replayed every session
        log_k += step
        if log_k < lo:
            log_k = lo
        elif log_k > hi:
            log_k = hi
    return math.exp(log_k)


def aci_scales(
    misses_by_ticker, target: float = 0.10, gamma: float = 0.05, k_min: float = 0.25, k_max: float = 4.0
) -> dict[str, float] | np.ndarray:
    """`aci_scale` per ticker: a mapping ticker -> misses gives a dict, a (sessions, tickers) array a (tickers,)."""
    if isinstance(misses_by_ticker, Mapping):
        return {key: aci_scale(m, target, gamma, k_min, k_max) for key, m in misses_by_ticker.items()}
    m = np.asarray(misses_by_ticker, dtype=np.float64)
    m = m.reshape(m.shape[0], -1) if m.ndim else m.reshape(1, 1)
    lo, hi = math.log(k_min), math.log(k_max)
    log_k = np.zeros(m.shape[1])
    for row in m:
        finite = np.isfinite(row)
        log_k = np.where(finite, np.clip(log_k + gamma * (np.where(finite, row, 0.0) - target), lo, hi), log_k)
    return np.exp(log_k)


def price_quantiles(last_close, log_return_quantiles) -> np.ndarray:
    """Price quantiles close * exp(q): positive, and monotone because exp is."""
    close = np.asarray(last_close, dtype=np.float64)
    return close[..., None] * np.exp(np.asarray(log_return_quantiles, dtype=np.float64))


def volatility_from_quantiles(quantiles, levels) -> np.ndarray:
    """Normal-equivalent volatility of a quantile forecast, from its widest symmetric pair.

    sigma = (q_{1-l} - q_l) / (2 z_{1-l}), e.g. (q95 - q05) / (2 * 1.6449): exact for a normal
    forecast; for a fat-tailed one it is the scale a normal with the same central width would
    have (not its standard deviation). Lets any quantile model be compared with EWMA/GARCH sigma.
    """
    lv = [float(x) for x in levels]
    pairs = central_intervals(lv)
    if not pairs:
        raise ValueError(f"no symmetric pair of levels to read a volatility from: {tuple(lv)}")
    low, high = next(iter(pairs.values()))
    q = np.asarray(quantiles, dtype=np.float64)
    width = q[..., lv.index(high)] - q[..., lv.index(low)]
    return width / (2.0 * stats.norm.ppf(high))
