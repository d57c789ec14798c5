"""The promotion gate on synthetic quantile forecasts: a better spread is promoted, an equal one is
rejected, a median worse than persistence's is rejected, and a champion that lost to the baseline
hands over to it."""

import numpy as np

from stock_assets.lib.distributions import DEFAULT_LEVELS, normal_shape
from stock_assets.lib.evaluation import SessionScores, better_baseline, gate_decision, score_quantiles

RNG = np.random.default_rng(11)
SESSIONS, TICKERS = 300, 4
LEVELS = DEFAULT_LEVELS


def market(vol_ratio: float = 3.0):
    """Closes whose daily volatility switches between calm and stormy regimes (a scale that can be known)."""
    sigma = np.where(np.arange(SESSIONS + 1) // 30 % 2 == 0, 0.01, 0.01 * vol_ratio)[:, None]
    returns = RNG.standard_normal((SESSIONS + 1, TICKERS)) * sigma
    close = 100 * np.exp(np.cumsum(returns, axis=0))
    return {"close": close, "tickers": np.array(list("ABCD"))}, sigma[:-1, 0]


def scores(arrays, sigma, median_shift=0.0):
    """Quantiles with the given per-session scale, scored on the sessions after ends 0..SESSIONS-1."""
    ends = np.arange(SESSIONS)
    q = median_shift + sigma[:, None, None] * normal_shape(LEVELS)[None, None, :] * np.ones((1, TICKERS, 1))
    return score_quantiles(q, arrays, ends, LEVELS)


def persistence_abs(arrays):
    close = arrays["close"]
    return np.abs(close[1:] - close[:-1])


def test_a_forecast_that_knows_the_scale_is_promoted_over_a_static_one():
    arrays, sigma = market()
    knows = scores(arrays, sigma)
    static = scores(arrays, np.full(SESSIONS, sigma.mean()))
    verdict = gate_decision(knows, None, static, persistence_abs(arrays), alpha=0.10)
    assert verdict.passed and verdict.p_value < 0.01 and verdict.n_sessions == SESSIONS
    assert verdict.verdict.startswith("promoted | pinball candidate")
    assert verdict.candidate_pinball < verdict.baseline_pinball and np.isnan(verdict.champion_pinball)


def test_an_equal_forecast_is_rejected_and_the_champion_holds():
    arrays, sigma = market()
    same = scores(arrays, sigma)
    verdict = gate_decision(same, same, same, persistence_abs(arrays), alpha=0.10)
    assert not verdict.passed and not verdict.champion_worse_than_baseline
    assert "pinball not below the baseline's" in verdict.verdict and "takes over" not in verdict.verdict


def test_a_better_spread_with_a_biased_median_is_rejected_by_the_point_rule():
    arrays, sigma = market()
    biased = scores(arrays, sigma, median_shift=0.004)  # knows the scale, but always calls "up"
    static = scores(arrays, np.full(SESSIONS, sigma.mean()))
    verdict = gate_decision(biased, None, static, persistence_abs(arrays), alpha=0.10)
    assert verdict.candidate_mae > verdict.persistence_mae and verdict.point_p_value < 0.10
    assert not verdict.passed and "median significantly worse than persistence's" in verdict.verdict


def test_a_champion_worse_than_the_baseline_hands_over_after_a_rejection():
    arrays, sigma = market()
    baseline = scores(arrays, sigma)
    champion = scores(arrays, sigma * 3)  # intervals three times too wide
    candidate = scores(arrays, sigma * 2)
    verdict = gate_decision(candidate, champion, baseline, persistence_abs(arrays), alpha=0.10)
    assert not verdict.passed and verdict.champion_worse_than_baseline
    assert "the baseline takes over" in verdict.verdict


def test_non_finite_candidates_are_rejected():
    arrays, sigma = market()
    baseline = scores(arrays, sigma)
    broken = SessionScores(np.full_like(baseline.pinball, np.nan), baseline.abs_error)
    assert not gate_decision(broken, None, baseline, persistence_abs(arrays), alpha=0.10).passed


def test_another_baseline_replaces_persistence_ewma_only_when_significantly_better():
    arrays, sigma = market()
    reference = scores(arrays, np.full(SESSIONS, sigma.mean()))
    assert better_baseline({"persistence": reference, "garch": scores(arrays, sigma)}, 0.10)[0] == "garch"
    assert better_baseline({"persistence": reference, "garch": reference}, 0.10)[0] == "persistence"
