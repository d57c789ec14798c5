import math

import numpy as np
import pytest
from scipy import stats

from stock_assets.lib.significance import DMResult, diebold_mariano, session_loss_differential

N_SESSIONS, N_TICKERS = 250, 4


def _moves(rng: np.random.Generator, n_streams: int) -> np.ndarray:
    """Realised moves with cross-ticker correlation 0.5 (a market factor), shape (streams, sessions, tickers)."""
    market = rng.standard_normal((n_streams, N_SESSIONS, 1))
    own = rng.standard_normal((n_streams, N_SESSIONS, N_TICKERS))
    return math.sqrt(0.5) * market + math.sqrt(0.5) * own


def _loss(rng: np.random.Generator, moves: np.ndarray) -> np.ndarray:
    """Absolute errors of a forecaster predicting small noisy moves (no skill)."""
    return np.abs(moves - 0.3 * rng.standard_normal(moves.shape))


def _p_values(candidate: np.ndarray, reference: np.ndarray) -> np.ndarray:
    pairs = zip(candidate, reference, strict=True)
    return np.array([diebold_mariano(session_loss_differential(c, r)).p_value for c, r in pairs])


def test_hand_computed_statistic():
    d = np.array([0.5, -1.0, -2.0, 0.5, -1.5, -0.5])
    # mean -2/3; deviations 7/6, -1/3, -4/3, 7/6, -5/6, 1/6
    # gamma0 = (49 + 4 + 64 + 49 + 25 + 1) / 36 / 6 = 8/9
    # gamma1 = (7/6 * -1/3 + -1/3 * -4/3 + -4/3 * 7/6 + 7/6 * -5/6 + -5/6 * 1/6) / 6 = -47/108
    # h=1: DM = (-2/3) / sqrt((8/9) / 6) = -sqrt(3); HLN sqrt((6 + 1 - 2) / 6) -> -sqrt(5/2)
    one = diebold_mariano(d)
    assert one.statistic == pytest.approx(-math.sqrt(5 / 2))
    assert one.p_value == pytest.approx(stats.t.cdf(-math.sqrt(5 / 2), df=5))
    assert (one.mean_differential, one.n_sessions, one.max_lag) == (pytest.approx(-2 / 3), 6, 0)
    # h=2, lag 1 (Bartlett weight 1/2): LRV = 8/9 + 2 * 1/2 * -47/108 = 49/108;
    # DM = (-2/3) / sqrt(49/108 / 6) = -12 sqrt(2) / 7; HLN sqrt((6 + 1 - 4 + 2/6) / 6) = sqrt(5) / 3
    two = diebold_mariano(d, horizon=2)
    assert two.statistic == pytest.approx(-4 * math.sqrt(10) / 7)
    assert two.p_value == pytest.approx(stats.t.cdf(-4 * math.sqrt(10) / 7, df=5))
    # a larger lag than h - 1 is allowed: h=1 with lag 1 keeps HLN sqrt(5/6)
    wide = diebold_mariano(d, horizon=1, max_lag=1)
    assert wide.statistic == pytest.approx(-12 * math.sqrt(2) / 7 * math.sqrt(5 / 6))


def test_session_differential_averages_tickers_and_drops_empty_sessions():
    candidate = np.array([[1.0, 3.0], [np.nan, 2.0], [np.nan, np.nan], [4.0, 4.0]])
    reference = np.array([[2.0, 2.0], [5.0, 1.0], [1.0, 1.0], [4.0, np.nan]])
    np.testing.assert_allclose(session_loss_differential(candidate, reference), [0.0, 1.0, 0.0])
    np.testing.assert_allclose(session_loss_differential([1.0, 2.0, np.nan], [0.5, 3.0, 1.0]), [0.5, -1.0])
    with pytest.raises(ValueError, match="same shape"):
        session_loss_differential(candidate, reference[:, :1])


def test_degenerate_cases_are_explicit():
    assert diebold_mariano([-1.0, -2.0]).p_value == 1.0  # n < 3: cannot conclude
    assert math.isnan(diebold_mariano([]).statistic)
    assert diebold_mariano([-0.5] * 10).p_value == 0.0  # zero variance, better every session
    assert diebold_mariano([0.5] * 10).p_value == 1.0
    identical = diebold_mariano(np.zeros(10))
    assert (identical.p_value, identical.statistic) == (1.0, 0.0)
    assert diebold_mariano([-1.0, np.nan, -2.0, -1.5, np.nan]).n_sessions == 3
    with pytest.raises(ValueError):
        diebold_mariano([1.0, 2.0, 3.0], horizon=0)


def test_verdict_helpers():
    result = DMResult(statistic=-2.5, p_value=0.01, mean_differential=-0.2, n_sessions=40)
    assert result.significant(0.05) and not result.significant(0.01)
    assert "significantly lower" in result.verdict(0.05) and "p=0.0100" in result.verdict(0.05)
    assert "not significantly lower" in result.verdict(0.01)


def test_equal_forecasters_give_uniform_p_values():
    rng = np.random.default_rng(20240601)
    moves = _moves(rng, 2000)
    p = _p_values(_loss(rng, moves), _loss(rng, moves))
    assert stats.kstest(p, "uniform").pvalue > 0.01
    assert 0.06 <= np.mean(p < 0.10) <= 0.14


def test_better_and_worse_forecasters():
    rng = np.random.default_rng(7)
    moves = _moves(rng, 200)
    reference = _loss(rng, moves)
    assert np.median(_p_values(0.9 * _loss(rng, moves), reference)) < 0.01  # 10% lower expected loss
    assert np.median(_p_values(1.1 * _loss(rng, moves), reference)) > 0.9
