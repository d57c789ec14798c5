"""GARCH(1,1) with Student-t innovations: fitted with `arch` at retraining, served with numpy only.

Why: EWMA fixes the reaction to news (1 - lam) and has no mean reversion, so after a calm or a
storm its forecast stays where the last weeks left it. GARCH(1,1) estimates both, and pulls the
variance back toward omega / (1 - alpha - beta); the Student-t innovation gives the fat tails of
daily returns that a normal shape misses at the 5%/95% levels. Fitting needs the `arch`
optimiser (imported only inside `fit_garch`); serving is a 3-parameter recursion, so the
parameters are stored as JSON and the filter below is plain numpy, vectorised over tickers.

Mean: `fit_garch` uses arch's "Zero" mean (mu = 0). A daily drift of a few basis points is
smaller than its own standard error over a few thousand sessions (sigma / sqrt(n)), so
estimating it adds noise, and mu = 0 keeps the forecast median equal to persistence's, as in
`distributions.standardized_quantiles(center=True)`. `mu` stays a field so a drift can be set.

Units: arch fits better on percent returns (100 r); parameters are converted back to log-return
units (mu / 100, omega / 1e4; alpha, beta, nu are scale-free).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from stock_assets.lib.distributions import student_t_shape

log = logging.getLogger(__name__)

MIN_FIT_SESSIONS = 100  # fewer finite returns than this: no fit, the fallback below
# Fallback when a fit is impossible or not stationary: RiskMetrics-like reaction to news
# (alpha = 1 - 0.94) with persistence 0.99 (half-life ~69 sessions) so the variance is still
# mean-reverting, omega matching the sample variance, and nu = 8 (moderately fat tails, inside the
# 4-10 range daily equity fits usually give).
FALLBACK_ALPHA, FALLBACK_BETA, FALLBACK_NU = 0.06, 0.93, 8.0


@dataclass(frozen=True)
class GarchParams:
    """sigma2[t+1] = omega + alpha * (r[t] - mu)^2 + beta * sigma2[t]; r = mu + sigma * t_nu (unit var)."""

    mu: float
    omega: float
    alpha: float
    beta: float
    nu: float

    def validate(self) -> GarchParams:
        """Self, or ValueError naming the violated constraint (stationary, positive, finite variance)."""
        values = asdict(self)
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"GARCH parameters must be finite, got {values}")
        if self.omega <= 0:
            raise ValueError(f"GARCH omega must be > 0, got {self.omega}")
        if self.alpha < 0 or self.beta < 0:
            raise ValueError(f"GARCH alpha and beta must be >= 0, got alpha={self.alpha}, beta={self.beta}")
        if self.alpha + self.beta >= 1:
            raise ValueError(f"GARCH alpha + beta must be < 1 (stationary), got {self.alpha + self.beta}")
        if self.nu <= 2:
            raise ValueError(f"Student-t nu must be > 2 (finite variance), got {self.nu}")
        return self

    @property
    def unconditional_variance(self) -> float:
        return self.omega / (1.0 - self.alpha - self.beta)

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> GarchParams:
        missing = [k for k in ("mu", "omega", "alpha", "beta", "nu") if k not in data]
        if missing:
            raise ValueError(f"GARCH parameters missing {missing}")
        return cls(**{k: float(data[k]) for k in ("mu", "omega", "alpha", "beta", "nu")}).validate()


def fallback_params(log_returns_1d) -> GarchParams:
    """The documented EWMA-like parameters, scaled to the sample variance of the finite returns."""
    r = np.asarray(log_returns_1d, dtype=np.float64)
    r = r[np.isfinite(r)]
    variance = float(np.mean(r**2)) if r.size else 0.0
    variance = max(variance, 1e-12)  # constant prices: a tiny positive variance, not omega = 0
    omega = variance * (1.0 - FALLBACK_ALPHA - FALLBACK_BETA)
    return GarchParams(0.0, omega, FALLBACK_ALPHA, FALLBACK_BETA, FALLBACK_NU)


def fit_garch(log_returns_1d) -> GarchParams:
    """Maximum-likelihood GARCH(1,1)-t on one ticker's log returns (NaN dropped, gaps joined).

    arch_model(100 r, mean="Zero", vol="GARCH", p=1, q=1, dist="t").fit(disp="off"). Falls back to
    `fallback_params` (logged) when there are fewer than MIN_FIT_SESSIONS returns, the optimiser
    fails or does not converge, or the estimate is not valid (e.g. alpha + beta >= 1).
    """
    from arch import arch_model

    r = np.asarray(log_returns_1d, dtype=np.float64).ravel()
    r = r[np.isfinite(r)]
    if r.size < MIN_FIT_SESSIONS:
        log.warning("GARCH fit skipped: %d finite returns < %d; using fallback", r.size, MIN_FIT_SESSIONS)
        return fallback_params(r)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = arch_model(100.0 * r, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(
                disp="off", show_warning=False
            )
        if res.convergence_flag != 0:
            raise ValueError(f"optimiser did not converge (flag {res.convergence_flag})")
        p = res.params
        omega, alpha, beta, nu = (float(p[k]) for k in ("omega", "alpha[1]", "beta[1]", "nu"))
        return GarchParams(mu=0.0, omega=omega / 1e4, alpha=alpha, beta=beta, nu=nu).validate()
    except Exception as exc:  # any optimiser failure: a served model beats none
        log.warning("GARCH fit failed (%s); using fallback", exc)
        return fallback_params(r)


def fit_garch_per_ticker(log_returns_2d) -> list[GarchParams]:
    """`fit_garch` per column of a (sessions, tickers) array, in column order."""
    r = np.asarray(log_returns_2d, dtype=np.float64)
    return [fit_garch(r[:, j]) for j in range(r.shape[1])]


def _stack(params: Sequence[GarchParams]) -> tuple[np.ndarray, ...]:
    return tuple(np.array([getattr(p, name) for p in params]) for name in ("mu", "omega", "alpha", "beta", "nu"))


def garch_variance_per_ticker(params: Sequence[GarchParams], log_returns_2d, initial_variance=None) -> np.ndarray:
    """Variance forecasts (sessions, tickers): row t is the forecast for the session after t.

    The state before row 0 is `initial_variance` (per ticker; default the unconditional variance
    omega / (1 - alpha - beta)). NaN returns are skipped (variance carried forward).
    """
    r = np.asarray(log_returns_2d, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] != len(params):
        raise ValueError(f"need (sessions, {len(params)}) returns, got shape {r.shape}")
    mu, omega, alpha, beta, _ = _stack(params)
    if initial_variance is None:
        s2 = omega / (1.0 - alpha - beta)
    else:
        s2 = np.broadcast_to(np.asarray(initial_variance, dtype=np.float64), omega.shape).copy()
    finite = np.isfinite(r)
    eps2 = np.where(finite, r - mu, 0.0) ** 2
    out = np.empty_like(r)
    for t in range(r.shape[0]):
        s2 = np.where(finite[t], omega + alpha * eps2[t] + beta * s2, s2)
        out[t] = s2
    return out


def garch_variance(params: GarchParams, log_returns_1d, initial_variance: float | None = None) -> np.ndarray:
    """One ticker's variance forecasts, same convention as `distributions.ewma_variance`."""
    r = np.asarray(log_returns_1d, dtype=np.float64).ravel()
    init = None if initial_variance is None else [initial_variance]
    return garch_variance_per_ticker([params], r[:, None], init)[:, 0]


def garch_quantiles(params: GarchParams | Sequence[GarchParams], sigma_next, levels) -> np.ndarray:
    """mu + sigma * unit-variance Student-t(nu) quantiles, shape sigma.shape + (L,).

    One GarchParams for any sigma; a sequence (one per ticker) for sigma of shape (..., tickers).
    """
    sigma = np.asarray(sigma_next, dtype=np.float64)
    if isinstance(params, GarchParams):
        return params.mu + sigma[..., None] * student_t_shape(levels, params.nu)
    mu, _, _, _, nu = _stack(params)
    return mu[:, None] + sigma[..., None] * student_t_shape(levels, nu)
