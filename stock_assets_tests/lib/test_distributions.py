"""Quantile scores, calibration tests and volatility scales against hand-computed cases."""

import math

import numpy as np
import pytest
from scipy import stats

from stock_assets.lib import distributions as d

LEVELS = d.DEFAULT_LEVELS


def test_level_names_pairs_and_checks():
    assert [d.quantile_column(x) for x in LEVELS] == ["q05", "q25", "q50", "q75", "q95"]
    assert d.quantile_column(0.025) == "q025" and d.quantile_column(0.975) == "q975"
    assert d.quantile_column(0.1 + 0.2) == "q30"
    assert d.central_intervals(LEVELS) == {0.9: (0.05, 0.95), 0.5: (0.25, 0.75)}
    assert d.check_levels([0.05, 0.5, 0.95]) == (0.05, 0.5, 0.95)
    for bad, word in [
        ((0.0, 0.5, 1.0), "inside"),
        ((0.5, 0.25, 0.75), "increasing"),
        ((0.25, 0.75), "median"),
        ((0.05, 0.5, 0.9), "unpaired"),
    ]:
        with pytest.raises(ValueError, match=word):
            d.check_levels(bad)
    with pytest.raises(ValueError):
        d.quantile_column(1.0)


def test_pinball_hand_case_half_mae_and_nan():
    q = np.array([-0.02, 0.0, 0.01, 0.02, 0.03])
    per = d.pinball_per_level(0.01, q, LEVELS)
    np.testing.assert_allclose(per, [0.0015, 0.0025, 0.0, 0.0025, 0.001], atol=1e-15)
    assert d.pinball_loss(0.01, q, LEVELS) == pytest.approx(0.0015)
    rng = np.random.default_rng(0)
    y, q = rng.normal(size=(50, 3)), rng.normal(size=(50, 3, 5))
    np.testing.assert_allclose(d.pinball_per_level(y, q, LEVELS)[..., 2], 0.5 * np.abs(y - q[..., 2]))
    assert d.pinball_loss(y, q, LEVELS).shape == (50, 3)
    q[0, 0, 4] = np.nan
    y[1, 1] = np.nan
    loss = d.pinball_loss(y, q, LEVELS)
    assert np.isnan(loss[0, 0]) and np.isnan(loss[1, 1]) and np.isfinite(loss).sum() == 148


def test_coverage_and_winkler():
    covered = d.interval_covered([0.0, 0.05, np.nan, -0.02, 0.0], -0.02, [0.03, 0.03, 0.03, 0.03, np.nan])
    np.testing.assert_array_equal(covered, [1.0, 0.0, np.nan, 1.0, np.nan])
    score = d.winkler_score(np.array([0.05, 0.0, -0.03]), -0.02, 0.03, 0.1)
    np.testing.assert_allclose(score, [0.05 + 20 * 0.02, 0.05, 0.05 + 20 * 0.01])


def test_pit_monotone_exact_at_knots_and_in_open_interval():
    q = np.array([-0.03, -0.01, 0.0, 0.012, 0.04])
    np.testing.assert_allclose(d.pit_values(q, np.tile(q, (5, 1)), LEVELS), LEVELS)
    grid = np.linspace(-1.0, 1.0, 20001)
    pit = d.pit_values(grid, np.broadcast_to(q, (grid.size, 5)), LEVELS)
    assert np.all(np.diff(pit) >= 0) and np.all((pit > 0) & (pit < 1))
    assert np.all(np.diff(pit[(grid > -0.2) & (grid < 0.2)]) > 0)  # strictly, away from float underflow
    assert d.pit_values(-0.01 + (0.0 + 0.01) / 2, q, LEVELS) == pytest.approx(0.375)
    assert np.isnan(d.pit_values(np.nan, q, LEVELS)) and np.isnan(d.pit_values(0.0, [np.nan, 0, 0, 0, 1], LEVELS))


def test_pit_uniform_on_correctly_specified_normal_data():
    rng = np.random.default_rng(42)
    sigma = rng.uniform(0.005, 0.03, 5000)
    y = sigma * rng.standard_normal(5000)
    fine = np.round(np.arange(1, 20) * 0.05, 10)  # fine grid: the piecewise-linear CDF is close to Phi
    pit = d.pit_values(y, d.location_scale_quantiles(0.0, sigma, d.normal_shape(fine)), fine)
    assert stats.kstest(pit, "uniform").pvalue > 0.01
    # Five levels: linear interpolation bends the CDF by up to ~0.03, so only "uniform-ish".
    pit5 = d.pit_values(y, d.location_scale_quantiles(0.0, sigma, d.normal_shape(LEVELS)), LEVELS)
    shares = np.histogram(pit5, bins=10, range=(0, 1))[0] / 5000
    assert np.max(np.abs(shares - 0.1)) < 0.04


def test_binomial_band_250_at_090():
    low, high = d.binomial_band(250, 0.9)
    assert (low, high) == (215 / 250, 234 / 250)
    assert stats.binom.cdf(214, 250, 0.9) < 0.025 <= stats.binom.cdf(215, 250, 0.9)
    assert stats.binom.cdf(233, 250, 0.9) < 0.975 <= stats.binom.cdf(234, 250, 0.9)


def test_kupiec_hand_computed_and_edges():
    misses = np.zeros(250)
    misses[::25] = 1.0  # 10 misses at p = 0.05: observed 0.04
    lr = 2 * (10 * math.log(0.04 / 0.05) + 240 * math.log(0.96 / 0.95))
    assert lr == pytest.approx(0.56335, abs=1e-5)
    assert d.kupiec_pof(misses, 0.05) == pytest.approx(stats.chi2.sf(lr, 1))
    assert d.kupiec_pof(np.append(misses, np.nan), 0.05) == pytest.approx(stats.chi2.sf(lr, 1))
    assert d.kupiec_pof(np.zeros(250), 0.05) == pytest.approx(stats.chi2.sf(-2 * 250 * math.log(0.95), 1))
    assert d.kupiec_pof(np.ones(20), 0.05) == pytest.approx(stats.chi2.sf(-2 * 20 * math.log(0.05), 1))
    assert math.isnan(d.kupiec_pof([np.nan], 0.05))


def test_christoffersen_hand_computed_and_undefined():
    # transitions 00,00,00,01,11,11,10,00,00: n00=5 n01=1 n10=1 n11=2
    misses = [0, 0, 0, 0, 1, 1, 1, 0, 0, 0]
    ll_null = 6 * math.log(2 / 3) + 3 * math.log(1 / 3)
    ll_alt = 5 * math.log(5 / 6) + math.log(1 / 6) + math.log(1 / 3) + 2 * math.log(2 / 3)
    lr = -2 * (ll_null - ll_alt)
    assert lr == pytest.approx(2.2314, abs=1e-4)
    assert d.christoffersen_independence(misses) == pytest.approx(stats.chi2.sf(lr, 1))
    assert d.christoffersen_independence([0, 0, 1, 1, 0, 0, 0, 1, 0, 0]) == pytest.approx(1.0)  # pi01 = pi11
    assert math.isnan(d.christoffersen_independence(np.zeros(50)))
    assert math.isnan(d.christoffersen_independence([0, 0, 0, 1]))  # the only miss is last
    # a NaN breaks the chain: (1, nan, 1) gives no 1 -> 1 transition
    assert d.christoffersen_independence([0, 1, np.nan, 1, 0, 0]) == d.christoffersen_independence([0, 1, 0, 0])


def test_ewma_variance_matches_plain_loop():
    rng = np.random.default_rng(1)
    r = 0.01 * rng.standard_normal((60, 3))
    r[5, 0] = r[30, 2] = np.nan
    r[:10, 1] = np.nan  # ticker listed later
    got = d.ewma_variance(r, lam=0.9, warmup=20)
    for j in range(3):
        col = r[:, j]
        finite = col[np.isfinite(col)]
        s2 = np.mean(finite[:20] ** 2)
        for t in range(60):
            if np.isfinite(col[t]):
                s2 = 0.9 * s2 + 0.1 * col[t] ** 2
            expected = np.nan if not np.isfinite(col[: t + 1]).any() else s2
            np.testing.assert_allclose(got[t, j], expected, rtol=1e-12)
    np.testing.assert_allclose(d.ewma_volatility(r, 0.9, 20), np.sqrt(got))
    assert d.ewma_variance(r[:, 0]).shape == (60,)


def test_standardized_quantiles_normal_and_fallback():
    rng = np.random.default_rng(2)
    sigma = np.exp(rng.normal(-4.5, 0.3, size=(4000, 2)))
    r = sigma * rng.standard_normal((4000, 2))
    r[:, 1][10:] = np.nan  # too few for an empirical shape
    shape = d.standardized_quantiles(r, sigma, LEVELS)
    assert shape.shape == (2, 5) and shape[0, 2] == 0.0
    np.testing.assert_allclose(shape[0], d.normal_shape(LEVELS), atol=0.06)
    np.testing.assert_allclose(shape[1], d.normal_shape(LEVELS), atol=1e-12)
    raw = d.standardized_quantiles(r[:, 0] + 0.5 * sigma[:, 0], sigma[:, 0], LEVELS, center=False)
    assert raw.shape == (5,) and raw[2] == pytest.approx(0.5, abs=0.06)


def test_shapes_location_scale_and_prices():
    t_shape = d.student_t_shape(LEVELS, 5.0)
    np.testing.assert_allclose(t_shape, stats.t(5.0, scale=math.sqrt(3 / 5)).ppf(LEVELS))
    assert d.student_t_shape(LEVELS, np.array([4.0, 30.0])).shape == (2, 5)
    with pytest.raises(ValueError):
        d.student_t_shape(LEVELS, 2.0)
    q = d.location_scale_quantiles(np.array([0.001, 0.0]), np.array([0.01, 0.02]), d.normal_shape(LEVELS))
    assert q.shape == (2, 5) and q[0, 2] == pytest.approx(0.001)
    np.testing.assert_allclose(d.volatility_from_quantiles(q, LEVELS), [0.01, 0.02])
    prices = d.price_quantiles(np.array([100.0, 50.0]), q)
    assert np.all(prices > 0) and np.all(np.diff(prices, axis=-1) > 0)
    np.testing.assert_allclose(prices[1], 50.0 * np.exp(q[1]))


def test_rescale_spread_monotone_and_centred():
    q = d.location_scale_quantiles(np.zeros(3), np.array([0.01, 0.02, 0.03]), d.normal_shape(LEVELS)) + 0.002
    np.testing.assert_allclose(d.rescale_spread(q, LEVELS, 1.0), q)
    wide = d.rescale_spread(q, LEVELS, np.array([0.3, 1.0, 2.5]))
    assert np.all(np.diff(wide, axis=-1) > 0)
    np.testing.assert_allclose(wide[:, 2], q[:, 2])
    np.testing.assert_allclose(wide[2, 4] - wide[2, 0], 2.5 * (q[2, 4] - q[2, 0]))
    with pytest.raises(ValueError):
        d.rescale_spread(q, LEVELS, 0.0)


def test_aci_scale_update_clip_and_vectorised_form():
    assert d.aci_scale([]) == 1.0
    assert d.aci_scale([1.0, np.nan]) == pytest.approx(math.exp(0.05 * 0.9))
    assert d.aci_scale(np.zeros(10)) == pytest.approx(math.exp(-0.05))
    assert d.aci_scale(np.ones(1000)) == pytest.approx(4.0) and d.aci_scale(np.zeros(10_000)) == pytest.approx(0.25)
    rng = np.random.default_rng(3)
    m = (rng.random((300, 4)) < [0.02, 0.1, 0.3, 0.6]).astype(float)
    m[::7, 1] = np.nan
    vec = d.aci_scales(m)
    np.testing.assert_allclose(vec, [d.aci_scale(m[:, j]) for j in range(4)])
    assert d.aci_scales({"A": m[:, 0], "B": m[:, 3]}) == {"A": vec[0], "B": vec[3]}


def test_aci_keeps_coverage_when_volatility_doubles():
    """A fixed interval loses its 90% after a volatility jump; the ACI-rescaled one keeps it."""
    n = 2000
    rng = np.random.default_rng(11)
    y = np.where(np.arange(n) < n // 2, 0.01, 0.02) * rng.standard_normal(n)
    fixed = np.tile(d.location_scale_quantiles(0.0, 0.01, d.normal_shape(LEVELS)), (n, 1))
    low, high = d.binomial_band(n, 0.9)
    fixed_cover = d.interval_covered(y, fixed[:, 0], fixed[:, -1])
    assert fixed_cover.mean() < low - 0.1 and fixed_cover[n // 2 :].mean() < 0.7

    misses = np.full(n, np.nan)
    k = np.empty(n)
    for t in range(n):
        k[t] = d.aci_scale(misses[:t])  # each session: replay the served intervals' past misses
        served = d.rescale_spread(fixed[t], LEVELS, k[t])
        misses[t] = 1.0 - d.interval_covered(y[t], served[0], served[-1])
    cover = 1.0 - misses
    assert low <= cover.mean() <= high
    # The second half carries the whole adaptation cost, log(2) / gamma ~ 14 extra misses, yet stays in band.
    half_low, half_high = d.binomial_band(n // 2, 0.9)
    assert half_low <= cover[n // 2 :].mean() <= half_high
    assert 1.5 < d.aci_scale(misses) < 3.0  # learned roughly the doubling
    # The ACI identity behind the guarantee (clip never bound here): misses - target telescope.
    assert np.sum(misses - 0.1) == pytest.approx(math.log(d.aci_scale(misses)) / 0.05)
