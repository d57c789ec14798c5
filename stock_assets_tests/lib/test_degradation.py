import numpy as np
import pytest

from stock_assets.lib.degradation import (
    COVERAGE_MIN_ROWS,
    DetectorConfig,
    DetectorResult,
    coverage_p_values,
    degradation_statistic,
    detect_coverage_shortfall,
    detect_degradation,
)
from stock_assets.lib.distributions import pinball_loss

CONFIG = DetectorConfig()


def _streams(
    seed: int, n_streams: int, n_sessions: int, n_tickers: int = 4, change: int | None = None, worse: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-session mean absolute errors (champion, persistence), shape (streams, sessions).

    Moves: a market factor plus own noise, Student-t(4) tails, volatility regimes (log-vol AR(1)).
    Champion: a tiny forecast (moves ~10x smaller than realised), its errors scaled to exact parity
    with persistence, then by (1 + worse) from session `change` on. Prices differ per ticker.
    """
    rng = np.random.default_rng(seed)
    log_vol = np.zeros((n_streams, n_sessions, 1))
    shocks = 0.15 * rng.standard_normal((n_streams, n_sessions, 1))
    for t in range(1, n_sessions):
        log_vol[:, t] = 0.97 * log_vol[:, t - 1] + shocks[:, t]
    tails = rng.standard_t(4, size=(n_streams, n_sessions, n_tickers + 1)) / np.sqrt(2.0)
    moves = 0.015 * np.exp(log_vol) * (0.6 * tails[..., :1] + 0.8 * tails[..., 1:])
    predicted = 0.0004 + 0.0015 * rng.standard_normal(moves.shape)
    price = np.array([400.0, 30.0, 180.0, 600.0])[:n_tickers]
    champion = price * np.abs(predicted - moves)
    persistence = price * np.abs(moves)
    champion *= persistence.sum() / champion.sum()
    if change is not None:
        champion[:, change:] *= 1.0 + worse
    return champion.mean(axis=2), persistence.mean(axis=2)


def _alarms_per_250(champion: np.ndarray, persistence: np.ndarray) -> float:
    """First-alarm rate: alarms / monitored sessions x 250 (monitoring restarts after an alarm)."""
    above = degradation_statistic(champion, persistence) > CONFIG.threshold
    fired = above.any(axis=1)
    exposure = np.where(fired, above.argmax(axis=1) + 1, above.shape[1])
    return 250.0 * fired.sum() / exposure.sum()


def test_quiet_at_parity():
    champion, persistence = _streams(seed=1, n_streams=200, n_sessions=1000)
    assert _alarms_per_250(champion, persistence) <= 1.0


def test_fires_soon_after_an_injected_degradation():
    champion, persistence = _streams(seed=2, n_streams=200, n_sessions=200, change=60, worse=0.10)
    above = degradation_statistic(champion, persistence) > CONFIG.threshold
    quiet_before = ~above[:, :60].any(axis=1)
    assert quiet_before.mean() > 0.9
    after = above[quiet_before, 60:]
    assert after.any(axis=1).mean() > 0.95
    delays = np.where(after.any(axis=1), after.argmax(axis=1) + 1, 10_000)
    assert np.median(delays) <= 20


def test_identical_losses_never_fire():
    rng = np.random.default_rng(3)
    losses = np.abs(rng.standard_t(2, size=2000)) * np.exp(rng.standard_normal(2000))
    losses[[5, 50, 500]] = [0.0, 1e6, 1e-9]
    result = detect_degradation(losses, losses.copy())
    assert not result.fired and result.statistic == 0.0 and not result.statistic_series.any()
    assert result.loss_ratio == 1.0 and result.n_sessions == 2000
    zeros = detect_degradation(np.zeros(100), np.zeros(100))
    assert not zeros.fired and zeros.loss_ratio == 1.0


def test_single_ticker_stream():
    champion, persistence = _streams(seed=4, n_streams=1, n_sessions=400, n_tickers=1)
    quiet = detect_degradation(champion[0], persistence[0])
    assert not quiet.fired and quiet.statistic_series.shape == (400,)
    champion, persistence = _streams(seed=4, n_streams=1, n_sessions=120, n_tickers=1, change=40, worse=0.25)
    worse = detect_degradation(champion[0], persistence[0])
    assert worse.fired and 40 <= worse.first_alarm < 120
    assert worse.loss_ratio > 1.1


def test_reason_names_statistic_and_threshold():
    champion, persistence = _streams(seed=5, n_streams=1, n_sessions=100, change=0, worse=0.5)
    fired = detect_degradation(champion[0], persistence[0])
    assert fired.fired
    assert fired.reason.startswith(f"CUSUM {fired.statistic_series[fired.first_alarm]:.2f} > 9 after ")
    assert "x baseline" in fired.reason and "now CUSUM" in fired.reason
    at_alarm = detect_degradation(champion[0, : fired.first_alarm + 1], persistence[0, : fired.first_alarm + 1])
    assert at_alarm.reason == (
        f"CUSUM {at_alarm.statistic:.2f} > 9 after {fired.first_alarm + 1} sessions: "
        f"champion pinball {at_alarm.loss_ratio:.2f} x baseline"
    )
    quiet = detect_degradation(persistence[0], persistence[0])
    assert quiet.reason == "CUSUM 0.00 <= 9 after 100 sessions: champion pinball 1.00 x baseline"
    assert "warming up (3 of 10 sessions)" in detect_degradation(champion[0, :3], persistence[0, :3]).reason


def test_scale_free_causal_and_nan_tolerant():
    champion, persistence = _streams(seed=6, n_streams=1, n_sessions=150, change=50, worse=0.2)
    c, p = champion[0], persistence[0]
    series = detect_degradation(c, p).statistic_series
    np.testing.assert_allclose(detect_degradation(1e3 * c, 1e3 * p).statistic_series, series)
    np.testing.assert_array_equal(detect_degradation(c[:90], p[:90]).statistic_series, series[:90])
    np.testing.assert_array_equal(degradation_statistic(champion, persistence)[0], series)
    with_gap = detect_degradation(np.insert(c, 70, np.nan), np.insert(p, 70, 1.0))
    np.testing.assert_array_equal(np.delete(with_gap.statistic_series, 70), series)
    assert with_gap.statistic_series[70] == with_gap.statistic_series[69] and with_gap.n_sessions == 150


def test_margin_tolerates_a_known_excess_and_config_is_validated():
    champion, persistence = _streams(seed=7, n_streams=1, n_sessions=200, change=0, worse=0.10)
    assert detect_degradation(champion[0], persistence[0]).fired
    assert not detect_degradation(champion[0], persistence[0], DetectorConfig(margin=0.3)).fired
    with pytest.raises(ValueError):
        DetectorConfig(threshold=0)
    with pytest.raises(ValueError):
        detect_degradation(np.ones(5), np.ones(4))
    assert isinstance(detect_degradation(np.ones(3), np.ones(3)), DetectorResult)


def _pinball_streams(seed: int, sessions: int, wider_from: int | None = None, spread: float = 1.0):
    """Per-session mean pinball loss (4 tickers, default levels) of a champion and of the baseline on
    Student-t returns: both forecast the true scale; the champion's spread is x `spread` from
    session `wider_from` on (too wide or too narrow: worse either way)."""
    rng = np.random.default_rng(seed)
    levels = np.array([0.05, 0.25, 0.5, 0.75, 0.95])
    z = np.array([-1.6449, -0.6745, 0.0, 0.6745, 1.6449])
    scale = 0.015 * np.exp(0.3 * rng.standard_normal((sessions, 1)))
    r = scale * rng.standard_normal((sessions, 4))
    baseline = pinball_loss(r, scale[..., None] * z, levels).mean(axis=1)
    factor = np.ones((sessions, 1))
    if wider_from is not None:
        factor[wider_from:] = spread
    champion = pinball_loss(r, (factor * scale)[..., None] * z, levels).mean(axis=1)
    return champion, baseline


def test_detector_on_the_pinball_differential():
    champion, baseline = _pinball_streams(seed=8, sessions=300)
    quiet = detect_degradation(champion, baseline)
    assert not quiet.fired and quiet.loss_ratio == 1.0  # the champion is the baseline here
    champion, baseline = _pinball_streams(seed=8, sessions=300, wider_from=60, spread=0.5)
    narrow = detect_degradation(champion, baseline)
    assert narrow.fired and 60 <= narrow.first_alarm < 90 and narrow.loss_ratio > 1.05
    assert "champion pinball" in narrow.reason and "x baseline" in narrow.reason


def _misses(rate: float, sessions: int, seed: int, tickers: int = 4) -> np.ndarray:
    return (np.random.default_rng(seed).random((sessions, tickers)) < rate).sum(axis=1).astype(float)


def test_coverage_alarm_fires_on_30_percent_misses_not_on_10():
    rows = np.full(40, 4.0)
    for seed in range(5):
        bad = detect_coverage_shortfall(_misses(0.30, 40, seed), rows)
        assert bad.fired and bad.p_value < 0.01 and bad.rows == 160
        assert bad.reason.startswith("90% interval coverage 0.") and bad.reason.endswith("< 0.01")
        good = detect_coverage_shortfall(_misses(0.10, 40, seed), rows)
        assert not good.fired and good.reason.endswith(">= 0.01")
    # Too few rows never alarm, however bad.
    few = detect_coverage_shortfall(np.full(5, 4.0), np.full(5, 4.0))
    assert few.rows < COVERAGE_MIN_ROWS and not few.fired and "too few rows" in few.reason
    assert not detect_coverage_shortfall(np.array([]), np.array([])).fired


def test_coverage_p_values_are_cumulative_exact_binomial_tails():
    from scipy import stats

    misses, rows = np.array([1.0, 0.0, 3.0]), np.array([4.0, 0.0, 4.0])
    p = coverage_p_values(misses, rows)
    assert p[0] == pytest.approx(stats.binom.sf(0, 4, 0.1)) and p[1] == p[0]
    assert p[2] == pytest.approx(stats.binom.sf(3, 8, 0.1))
    assert coverage_p_values(np.zeros(2), np.zeros(2)).tolist() == [1.0, 1.0]
    batch = coverage_p_values(np.stack([misses, misses]), np.stack([rows, rows]))
    np.testing.assert_array_equal(batch[1], p)


def test_no_session_yet_is_a_warm_up_not_an_error():
    """Right after a retraining answered the last alarm the detector has nothing to judge."""
    import numpy as np

    from stock_assets.lib.degradation import degradation_statistic, detect_degradation

    assert degradation_statistic(np.array([]), np.array([])).shape == (0,)
    result = detect_degradation(np.array([]), np.array([]))
    assert not result.fired and result.n_sessions == 0 and result.reason.startswith("CUSUM warming up (0 of")
