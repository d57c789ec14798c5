"""performance_log's monitor on a synthetic log: the champion's verdicts and the charts."""

import numpy as np
import pandas as pd

from stock_assets.defs.monitoring.assets import _plots, champion_monitor
from stock_assets.defs.plots import calibration_chart_png, fan_chart_png
from stock_assets.lib.contracts import MonitorMetadata
from stock_assets.lib.scoring import rolling_summary, score_predictions
from stock_assets.resources.policies import MonitoringPolicyResource
from stock_assets_tests.lib.test_scoring import actual, predictions

PNG = b"\x89PNG"


def session_log(first: str, sessions: int, miss_share: float, seed: int = 0) -> pd.DataFrame:
    """Scored rows of 4 tickers over `sessions` trading days from `first`; each row misses the served
    90% interval with probability `miss_share`, the baseline's interval is the same."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(first, periods=sessions + 1).strftime("%Y-%m-%d").tolist()
    frames = []
    for made, day in zip(dates, dates[1:], strict=False):
        q = [95.0, 98.0, 100.5, 102.0, 105.0]
        closes = {t: 110.0 if rng.random() < miss_share else 100.0 + rng.uniform(-3, 3) for t in "ABCD"}
        rows = predictions({t: q for t in "ABCD"}, day, made, trained_for="2006-03-01", baseline=q)
        frames.append(score_predictions(rows, actual(closes, day), day))
    return pd.concat(frames, ignore_index=True)


def judge_log(log: pd.DataFrame) -> tuple[MonitorMetadata, dict]:
    last = log[log["target_date"] == log["target_date"].max()]
    return champion_monitor(
        log, last.iloc[0], last["target_date"].iloc[0], rolling_summary(last), MonitoringPolicyResource()
    )


def test_coverage_alarm_fires_at_30_percent_misses_and_not_at_10():
    bad, tenure = judge_log(session_log("2006-03-02", 30, 0.30, seed=1))
    assert bad.coverage_alarm and bad.champion_covered_rows == 120 and bad.coverage_p_value < 0.01
    assert bad.champion_coverage_90 < 0.8 and bad.coverage_reason.endswith("< 0.01")
    assert tenure["champion_kupiec_90_p"] < 0.01 and "champion_christoffersen_90_p" in tenure
    good, _ = judge_log(session_log("2006-03-02", 30, 0.10, seed=1))
    assert not good.coverage_alarm and good.coverage_p_value >= 0.01
    # Identical served and baseline distributions: no pinball differential, the CUSUM stays at 0.
    assert good.champion_pinball_ratio == 1.0 and good.detector_statistic == 0.0 and not good.detector_fired
    assert "champion pinball 1.00 x baseline" in good.detector_reason
    read = MonitorMetadata.from_metadata(bad.to_metadata())
    assert read == bad


def test_charts_are_png_images_in_the_metadata():
    log = session_log("2006-03-02", 12, 0.10)
    fan = fan_chart_png(log, "holdout")
    calibration = calibration_chart_png(log)
    assert fan.startswith(PNG) and calibration.startswith(PNG)
    plots = _plots(log, window_sessions=5)
    assert set(plots) == {"fan_chart", "calibration_chart", "mae_ratio_plot"}
    assert "data:image/png;base64," in plots["fan_chart"].value


def test_metadata_numbers_are_rounded_and_a_missing_rate_is_a_gap_not_a_nan():
    from stock_assets.defs.monitoring.assets import plottable

    shown = plottable({"rolling_mae": 1.4711913500000038, "rolling_up_share": float("nan"), "rows": 4, "note": "x"})
    assert shown == {"rolling_mae": 1.471, "rows": 4, "note": "x"}
    # The monitor's contract keeps every key the sensor reads, finite or not.
    kept = plottable({"detector_statistic": float("nan"), "detector_fired": False}, keep=True)
    assert set(kept) == {"detector_statistic", "detector_fired"} and kept["detector_fired"] is False
