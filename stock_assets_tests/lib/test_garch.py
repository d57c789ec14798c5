"""GARCH(1,1)-t: recovery of known parameters, the numpy filter against arch's, JSON round trip."""

import json
import math

import numpy as np
import pytest
from scipy import stats

from stock_assets.lib import distributions as d
from stock_assets.lib import garch as g

TRUE = g.GarchParams(mu=0.0, omega=4.5e-6, alpha=0.08, beta=0.90, nu=6.0)  # unconditional sigma 1.5%


def simulate(params: g.GarchParams, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = stats.t.rvs(params.nu, size=n, random_state=rng) * math.sqrt((params.nu - 2) / params.nu)
    r = np.empty(n)
    s2 = params.unconditional_variance
    for t in range(n):
        r[t] = params.mu + math.sqrt(s2) * z[t]
        s2 = params.omega + params.alpha * (r[t] - params.mu) ** 2 + params.beta * s2
    return r


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return simulate(TRUE, 2000, seed=7)


def test_fit_recovers_known_parameters(sample):
    fit = g.fit_garch(sample)
    assert fit.mu == 0.0
    assert abs((fit.alpha + fit.beta) - (TRUE.alpha + TRUE.beta)) < 0.05
    assert 4.0 < fit.nu < 9.0
    assert fit.unconditional_variance == pytest.approx(TRUE.unconditional_variance, rel=0.35)


def test_numpy_filter_matches_arch_conditional_variance(sample):
    from arch import arch_model

    res = arch_model(100 * sample, mean="Zero", vol="GARCH", p=1, q=1, dist="t", rescale=False).fit(disp="off")
    p = res.params
    params = g.GarchParams(0.0, p["omega"] / 1e4, p["alpha[1]"], p["beta[1]"], p["nu"])
    arch_var = np.asarray(res.conditional_volatility) ** 2 / 1e4  # row t: variance OF session t
    ours = g.garch_variance(params, sample, initial_variance=arch_var[0])  # row t: variance AFTER t
    np.testing.assert_allclose(ours[:-1], arch_var[1:], rtol=1e-6)
    default = g.garch_variance(params, sample)  # starts at the unconditional variance instead
    np.testing.assert_allclose(default[500:], ours[500:], rtol=1e-6)  # the start is forgotten


def test_variance_per_ticker_skips_nan_and_quantiles(sample):
    other = g.GarchParams(0.0005, 2e-6, 0.05, 0.93, 5.0)
    r = np.column_stack([sample[:300], 0.5 * sample[300:600]])
    r[10, 1] = np.nan
    both = g.garch_variance_per_ticker([TRUE, other], r)
    np.testing.assert_allclose(both[:, 0], g.garch_variance(TRUE, r[:, 0]))
    assert both[10, 1] == both[9, 1] and np.all(np.isfinite(both))
    q = g.garch_quantiles([TRUE, other], np.sqrt(both), d.DEFAULT_LEVELS)
    assert q.shape == (300, 2, 5) and np.all(np.diff(q, axis=-1) > 0)
    np.testing.assert_allclose(q[:, 1, 2], other.mu)
    one = g.garch_quantiles(other, 0.01, d.DEFAULT_LEVELS)
    np.testing.assert_allclose(one, other.mu + 0.01 * d.student_t_shape(d.DEFAULT_LEVELS, 5.0))


def test_round_trip_and_validation():
    again = g.GarchParams.from_dict(json.loads(json.dumps(TRUE.to_dict())))
    assert again == TRUE
    for bad in [
        dict(omega=0.0),
        dict(alpha=-0.01),
        dict(beta=-0.01),
        dict(alpha=0.1, beta=0.9),
        dict(nu=2.0),
        dict(mu=math.nan),
        dict(omega=math.inf),
    ]:
        with pytest.raises(ValueError):
            g.GarchParams(**{**TRUE.to_dict(), **bad}).validate()
    with pytest.raises(ValueError, match="missing"):
        g.GarchParams.from_dict({"mu": 0.0})


def test_fallback_when_too_short_and_per_ticker():
    short = 0.01 * np.random.default_rng(0).standard_normal(50)
    fit = g.fit_garch(short)
    assert (fit.alpha, fit.beta, fit.nu) == (g.FALLBACK_ALPHA, g.FALLBACK_BETA, g.FALLBACK_NU)
    assert fit.unconditional_variance == pytest.approx(np.mean(short**2))
    assert g.fit_garch(np.zeros(500)).validate().omega > 0  # constant prices: still a valid model
    fits = g.fit_garch_per_ticker(np.column_stack([short, short[::-1]]))
    assert len(fits) == 2 and all(isinstance(f, g.GarchParams) for f in fits)
