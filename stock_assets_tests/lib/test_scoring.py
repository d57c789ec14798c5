"""Scoring served distributions: hand-computed rows, rolling metadata, the walk-forward scorecard."""

import math

import numpy as np
import pandas as pd
import pytest

from stock_assets.lib.distributions import DEFAULT_LEVELS
from stock_assets.lib.scoring import (
    LOG_COLUMNS,
    champion_session_losses,
    champion_session_misses,
    empty_log,
    interval_backtests,
    log_columns,
    rolling_summary,
    score_predictions,
    static_interval_quantiles,
    walk_forward_summary,
)

DAY, BEFORE = "2024-01-03", "2024-01-02"
PRICES = {  # price quantiles q05 q25 q50 q75 q95 around a last close of 100
    "A": [95.0, 98.0, 101.0, 103.0, 106.0],
    "B": [96.0, 99.0, 100.0, 101.0, 104.0],  # flat median: no direction called
    "C": [90.0, 95.0, 99.0, 102.0, 108.0],
}
BASELINE = [95.0, 98.0, 100.0, 102.0, 105.0]


def predictions(quantiles=PRICES, target=DAY, made=BEFORE, version="3", trained_for="2024-01-01", baseline=BASELINE):
    """daily_predictions rows as serving writes them (the contract of issue 19)."""
    rows = []
    for ticker, q in quantiles.items():
        row = {
            "prediction_date": made, "target_date": target, "ticker": ticker, "last_close": 100.0,
            "predicted_log_return": math.log(q[2] / 100), "predicted_close": q[2],
            "predicted_change_pct": q[2] - 100.0, "predicted_volatility": 0.02, "baseline_volatility": 0.021,
            "calibration_scale": 1.0, "model_name": "stock_lstm", "model_version": version, "model_run_id": "run",
            "model_trained_for": trained_for, "model_kind": "lstm", "created_at": "2024-01-02T23:00:00",
        }  # fmt: skip
        row |= {f"q{int(round(100 * x)):02d}": v for x, v in zip(DEFAULT_LEVELS, q, strict=True)}
        row |= {f"baseline_q{int(round(100 * x)):02d}": v for x, v in zip(DEFAULT_LEVELS, baseline, strict=True)}
        rows.append(row)
    return pd.DataFrame(rows)


def actual(closes, day=DAY):
    return pd.DataFrame({"date": day, "ticker": list(closes), "adj_close": list(closes.values())})


def pinball(y, q, levels=DEFAULT_LEVELS):
    return sum(max(level * (y - x), (level - 1) * (y - x)) for level, x in zip(levels, q, strict=True)) / len(levels)


def test_hand_computed_rows_inside_and_outside_each_interval():
    scored = score_predictions(predictions(), actual({"A": 102.0, "B": 97.0, "C": 110.0}), DAY).set_index("ticker")
    # A: 102 inside 98..103 and 95..106; B: 97 outside 99..101, inside 96..104; C: 110 outside both.
    assert scored["covered_50"].tolist() == [1.0, 0.0, 0.0]
    assert scored["covered_90"].tolist() == [1.0, 1.0, 0.0]
    assert scored["baseline_covered_90"].tolist() == [1.0, 1.0, 0.0]
    for ticker, close in (("A", 102.0), ("B", 97.0), ("C", 110.0)):
        y, q = math.log(close / 100), [math.log(p / 100) for p in PRICES[ticker]]
        assert scored.loc[ticker, "pinball_loss"] == pytest.approx(pinball(y, q))
        assert scored.loc[ticker, "baseline_pinball_loss"] == pytest.approx(
            pinball(y, [math.log(p / 100) for p in BASELINE])
        )
    y, lo, hi = math.log(1.10), math.log(0.90), math.log(1.08)
    assert scored.loc["C", "winkler_90"] == pytest.approx(hi - lo + 2 / 0.1 * (y - hi))
    assert scored.loc["A", "winkler_90"] == pytest.approx(math.log(1.06) - math.log(0.95))
    # PIT: A sits between q50 (101) and q75 (103) in log space; C beyond q95 gets a tail value above 0.95.
    a = (math.log(1.02) - math.log(1.01)) / (math.log(1.03) - math.log(1.01))
    assert scored.loc["A", "pit"] == pytest.approx(0.5 + 0.25 * a)
    assert 0.95 < scored.loc["C", "pit"] < 1.0
    # Point columns kept; a flat forecast calls no direction.
    assert scored.loc["A", "abs_error"] == 1.0 and scored.loc["C", "persistence_abs_error"] == 10.0
    assert scored.loc["A", "direction_hit"] == 1.0 and scored.loc["C", "direction_hit"] == 0.0
    assert np.isnan(scored.loc["B", "direction_hit"])
    assert scored.loc["A", "calibration_scale"] == 1.0 and scored.loc["A", "q95"] == 106.0


def test_columns_follow_the_levels_and_the_empty_log_is_typed():
    assert list(score_predictions(predictions(), actual({"A": 100.0}), DAY).columns) == LOG_COLUMNS
    empty = empty_log()
    assert list(empty.columns) == LOG_COLUMNS and len(empty) == 0
    assert all(empty[c].dtype == float for c in ["pinball_loss", "covered_90", "winkler_90", "pit", "baseline_pit"])
    assert list(score_predictions(predictions(), actual({"A": 1.0}), "2024-01-04").columns) == LOG_COLUMNS
    wide = (0.025, 0.25, 0.5, 0.75, 0.975)
    assert {"q025", "q975", "covered_95", "baseline_covered_95"} <= set(log_columns(wide))
    # Rows written before distributions: same columns, NaN scores.
    point = predictions().drop(columns=[c for c in predictions().columns if c.startswith(("q", "baseline_q"))])
    old = score_predictions(point, actual({"A": 102.0}), DAY)
    assert list(old.columns) == LOG_COLUMNS and old["pinball_loss"].isna().all() and old["abs_error"].notna().all()


def synthetic_log(sessions=20, coverage_misses=2, seed=0):
    """A log of 4 tickers; on each session `coverage_misses` of the 4 rows fall outside the 90% interval."""
    rng = np.random.default_rng(seed)
    frames = []
    dates = pd.bdate_range("2024-01-02", periods=sessions + 1).strftime("%Y-%m-%d").tolist()
    for made, day in zip(dates, dates[1:], strict=False):
        quantiles = {t: [95.0, 98.0, 100.5, 102.0, 105.0] for t in "ABCD"}
        closes = {t: (110.0 if i < coverage_misses else 100.0 + rng.uniform(-1, 1)) for i, t in enumerate("ABCD")}
        frames.append(score_predictions(predictions(quantiles, day, made), actual(closes, day), day))
    return pd.concat(frames, ignore_index=True)


def test_rolling_summary_keys_and_values_on_a_small_log():
    log = synthetic_log(sessions=10, coverage_misses=1)
    summary = rolling_summary(log)
    assert summary["rolling_samples"] == 40 and summary["rolling_directional_samples"] == 40
    assert summary["rolling_coverage_90"] == 0.75 and summary["rolling_coverage_90_band"] == "0.80–0.97"
    assert summary["rolling_coverage_50"] == pytest.approx(0.75) and summary["rolling_coverage_50_band"] == "0.35–0.65"
    ratio = log["pinball_loss"].mean() / log["baseline_pinball_loss"].mean()
    assert summary["rolling_pinball_ratio"] == float(f"{ratio:.4g}")
    assert summary["rolling_pinball"] == float(f"{log['pinball_loss'].mean():.4g}")
    up = (log["actual_close"] > log["last_close"]).mean()
    assert summary["rolling_up_share"] == float(f"{up:.4g}")
    assert summary["rolling_mae_ratio"] == float(f"{log['abs_error'].mean() / log['persistence_abs_error'].mean():.4g}")
    for key in ("rolling_mae", "rolling_persistence_mae", "rolling_mape", "rolling_direction_accuracy"):
        assert key in summary
    tests = interval_backtests(log, 90)
    assert tests["rows"] == 40 and tests["coverage"] == 0.75 and tests["kupiec_p"] < 0.01
    assert 0 <= tests["christoffersen_p"] <= 1


def test_champion_streams_per_session():
    log = synthetic_log(sessions=5, coverage_misses=1)
    pinball_loss, baseline = champion_session_losses(log, "3", "2024-01-01")
    assert pinball_loss.shape == baseline.shape == (5,)
    assert pinball_loss[0] == pytest.approx(log[log["target_date"] == log["target_date"].min()]["pinball_loss"].mean())
    misses, rows = champion_session_misses(log, "3", "2024-01-01")
    assert misses.tolist() == [1.0] * 5 and rows.tolist() == [4.0] * 5
    assert champion_session_losses(log, "4", "2024-01-01")[0].size == 0


def test_walk_forward_summary_rows_and_the_static_interval():
    log = synthetic_log(sessions=30, coverage_misses=0)
    dates = pd.bdate_range("2021-01-01", periods=700).strftime("%Y-%m-%d")
    rng = np.random.default_rng(1)
    prices = pd.concat(
        pd.DataFrame(
            {"date": dates, "ticker": t, "adj_close": 100 * np.exp(np.cumsum(0.01 * rng.standard_normal(700)))}
        )
        for t in "ABCD"
    )
    prices = prices[prices["date"] < "2024-01-01"]
    static = static_interval_quantiles(prices, log)
    assert list(static.columns) == ["target_date", "ticker", "q05", "q25", "q50", "q75", "q95"]
    past = np.diff(np.log(prices[prices["ticker"] == "A"]["adj_close"].to_numpy()))[-500:]
    first = static[(static["ticker"] == "A")].iloc[0]
    assert first["q05"] == pytest.approx(np.quantile(past, 0.05))
    summary = walk_forward_summary(log, static_quantiles=static)
    assert summary["coverage 90%"].startswith("1.0000 over 120 rows")
    assert "95% band if calibrated 0." in summary["coverage 50%"]
    for key in (
        "pinball / baseline", "p-value (pinball < baseline)", "pinball / static interval",
        "p-value (pinball < static interval)", "Kupiec p-value (90% interval)", "directional accuracy",
        "up-share on the same rows (always-up accuracy)", "model MAE / persistence MAE",
    ):  # fmt: skip
        assert key in summary
    assert summary["pinball / baseline"] == round(log["pinball_loss"].mean() / log["baseline_pinball_loss"].mean(), 4)
    assert (
        walk_forward_summary(log, static_quantiles=lambda _: static)["pinball / static interval"]
        == summary["pinball / static interval"]
    )
    assert "pinball / static interval" not in walk_forward_summary(log)


def test_direction_accuracy_only_over_directional_forecasts():
    flat = {t: [95.0, 98.0, 100.0, 102.0, 105.0] for t in "AB"}
    moving = {"C": [95.0, 98.0, 101.0, 102.0, 105.0], "D": [95.0, 98.0, 101.0, 102.0, 105.0]}
    log = score_predictions(predictions(flat | moving), actual({"A": 101.0, "B": 99.0, "C": 102.0, "D": 99.0}), DAY)
    summary = rolling_summary(log)
    assert summary["rolling_directional_samples"] == 2
    assert summary["rolling_direction_accuracy"] == 0.5 and summary["rolling_up_share"] == 0.5
    card = walk_forward_summary(log)
    assert card["directional accuracy"] == "0.5000 over 2 directional forecasts"
    assert card["up-share on the same rows (always-up accuracy)"] == 0.5
