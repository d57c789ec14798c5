"""The promotion gate on synthetic loss streams: better is promoted, equal and worse are rejected."""

import numpy as np

from stock_assets.lib.evaluation import gate_decision

RNG = np.random.default_rng(11)
SESSIONS, TICKERS = 220, 4


def losses(scale=1.0, base=None, noise=0.3):
    """Absolute-error-like losses (sessions, tickers) sharing a market factor across tickers."""
    if base is None:
        market = RNG.gamma(2.0, 0.5, size=(SESSIONS, 1))
        base = market * RNG.gamma(4.0, 0.25, size=(SESSIONS, TICKERS))
    return base * scale * np.exp(RNG.normal(0, noise, size=base.shape) * 0.1), base


def test_a_clearly_better_candidate_is_promoted_with_a_small_p_value():
    persistence, base = losses()
    candidate, _ = losses(0.9, base)
    verdict = gate_decision(candidate, None, persistence, alpha=0.10)
    assert verdict.passed and verdict.p_value < 0.01 and verdict.n_sessions == SESSIONS
    assert verdict.verdict.startswith("promoted (MAE candidate")
    assert np.isnan(verdict.champion_mae)


def test_an_equal_candidate_is_rejected_with_its_p_value():
    persistence, base = losses()
    candidate, _ = losses(1.0, base)
    verdict = gate_decision(candidate, persistence, persistence, alpha=0.10)
    assert not verdict.passed
    assert "rejected" in verdict.verdict and f"p={verdict.p_value:.3f}" in verdict.verdict


def test_a_worse_candidate_is_rejected_and_names_the_rivals_it_lost_to():
    persistence, base = losses()
    champion, _ = losses(0.95, base)
    candidate, _ = losses(1.05, base)
    verdict = gate_decision(candidate, champion, persistence, alpha=0.10)
    assert not verdict.passed and verdict.p_value > 0.9
    assert "MAE not below persistence's" in verdict.verdict and "MAE not below champion's" in verdict.verdict
    assert verdict.champion_mae < verdict.persistence_mae < verdict.candidate_mae


def test_beating_a_weak_champion_is_not_enough_when_persistence_is_stronger():
    persistence, base = losses()
    champion, _ = losses(1.2, base)
    candidate, _ = losses(1.05, base)
    verdict = gate_decision(candidate, champion, persistence, alpha=0.10)
    assert not verdict.passed and "MAE not below persistence's" in verdict.verdict
    assert "DM vs persistence" in verdict.verdict  # the stronger rival is the one reported
    assert verdict.champion_worse_than_persistence and "persistence takes over" in verdict.verdict


def test_a_champion_at_least_as_good_as_persistence_holds_after_a_rejection():
    persistence, base = losses()
    champion, _ = losses(0.97, base)
    candidate, _ = losses(1.0, base)
    verdict = gate_decision(candidate, champion, persistence, alpha=0.10)
    assert not verdict.passed and not verdict.champion_worse_than_persistence
    assert "persistence takes over" not in verdict.verdict
    tied = gate_decision(candidate, persistence, persistence, alpha=0.10)  # a persistence champion never yields
    assert not tied.champion_worse_than_persistence


def test_non_finite_candidates_are_rejected():
    persistence, _ = losses()
    verdict = gate_decision(np.full_like(persistence, np.nan), None, persistence, alpha=0.10)
    assert not verdict.passed
