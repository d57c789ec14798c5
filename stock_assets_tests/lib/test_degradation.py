import numpy as np
import pytest

from stock_assets.lib.degradation import DetectorConfig, DetectorResult, degradation_statistic, detect_degradation

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
    assert result.mae_ratio == 1.0 and result.n_sessions == 2000
    zeros = detect_degradation(np.zeros(100), np.zeros(100))
    assert not zeros.fired and zeros.mae_ratio == 1.0


def test_single_ticker_stream():
    champion, persistence = _streams(seed=4, n_streams=1, n_sessions=400, n_tickers=1)
    quiet = detect_degradation(champion[0], persistence[0])
    assert not quiet.fired and quiet.statistic_series.shape == (400,)
    champion, persistence = _streams(seed=4, n_streams=1, n_sessions=120, n_tickers=1, change=40, worse=0.25)
    worse = detect_degradation(champion[0], persistence[0])
    assert worse.fired and 40 <= worse.first_alarm < 120
    assert worse.mae_ratio > 1.1


def test_reason_names_statistic_and_threshold():
    champion, persistence = _streams(seed=5, n_streams=1, n_sessions=100, change=0, worse=0.5)
    fired = detect_degradation(champion[0], persistence[0])
    assert fired.fired
    assert fired.reason.startswith(f"CUSUM {fired.statistic_series[fired.first_alarm]:.2f} > 9 after ")
    assert "x persistence" in fired.reason and "now CUSUM" in fired.reason
    at_alarm = detect_degradation(champion[0, : fired.first_alarm + 1], persistence[0, : fired.first_alarm + 1])
    assert at_alarm.reason == (
        f"CUSUM {at_alarm.statistic:.2f} > 9 after {fired.first_alarm + 1} sessions: "
        f"champion MAE {at_alarm.mae_ratio:.2f} x persistence"
    )
    quiet = detect_degradation(persistence[0], persistence[0])
    assert quiet.reason == "CUSUM 0.00 <= 9 after 100 sessions: champion MAE 1.00 x persistence"
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
