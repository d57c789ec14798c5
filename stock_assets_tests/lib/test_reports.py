"""lib/reports.py and lib/links.py: the leaderboard, the champion timeline, the detector chart and
MLflow links, on small frames whose answers are known."""

import pandas as pd
import pytest

from stock_assets.lib import reports
from stock_assets.lib.links import MLFLOW_UI_URL_ENV, mlflow_ui_url

PNG = b"\x89PNG"


def predictions(rows):
    """daily_predictions rows: (prediction_date, ticker, version, kind[, served_by_fallback])."""
    frame = pd.DataFrame([r[:4] for r in rows], columns=["prediction_date", "ticker", "model_version", "model_kind"])
    if any(len(r) > 4 for r in rows):
        frame["served_by_fallback"] = [r[4] if len(r) > 4 else None for r in rows]
    return frame


def scored(rows):
    """performance_log rows: (prediction_date, version, abs_error, persistence_abs_error, pinball, baseline)."""
    frame = pd.DataFrame(
        rows,
        columns=["prediction_date", "model_version", "abs_error", "persistence_abs_error", "pinball_loss",
                 "baseline_pinball_loss"],
    )  # fmt: skip
    frame["target_date"] = frame["prediction_date"]
    return frame


def test_the_leaderboard_scores_each_version_and_shows_what_is_missing_as_a_dash():
    versions = [
        reports.VersionRecord("1", "persistence", "2006-01-03", promoted_for=("2006-01-03",)),
        reports.VersionRecord(
            "2",
            "lstm",
            "2006-01-05",
            metrics={"holdout_mae": 1.1, "persistence_mae": 1.0, "holdout_pinball": 0.009, "persistence_pinball": 0.01},
            tags={"gate_verdict": "promoted", "gate_p_value": "0.0312345", "gate_reason": "better than both"},
            promoted_for=("2006-01-05",),
            run_url="http://mlflow/run",
        ),
        # Rejected, and no gate_* tags yet: the verdict comes from the gate's evaluation.
        reports.VersionRecord("3", "lstm", "2006-01-09", gate={"verdict": "rejected: not better", "p_value": 0.4}),
    ]
    preds = predictions(
        [("2006-01-04", "A", "1", "persistence"), ("2006-01-05", "A", "2", "lstm"),
         ("2006-01-06", "A", "2", "lstm", True), ("2006-01-09", "A", "2", "lstm", False)]
    )  # fmt: skip
    log = scored(
        [("2006-01-05", "2", 2.0, 1.0, 0.02, 0.01), ("2006-01-06", "2", 9.0, 1.0, 0.09, 0.01),  # a fallback row
         ("2006-01-09", "2", 1.0, 1.0, 0.01, 0.01)]
    )  # fmt: skip
    log["served_by_fallback"] = [0.0, 1.0, 0.0]
    board = reports.leaderboard(versions, preds, log).set_index("version")
    assert list(board.index) == ["v3", "v2", "v1"]  # newest first
    v2 = board.loc["v2"]
    assert v2["holdout_mae_ratio"] == 1.1 and v2["holdout_pinball_ratio"] == 0.9
    assert v2["dm_p_value"] == 0.0312 and v2["verdict"] == "promoted" and v2["gate_reason"] == "better than both"
    # The fallback's session and row count for nobody: 2 sessions served, scores on the 2 own rows.
    assert v2["sessions_served"] == 2 and v2["served_mae_ratio"] == 1.5 and v2["served_pinball_ratio"] == 1.5
    assert board.loc["v3", "verdict"] == "rejected" and board.loc["v3", "dm_p_value"] == 0.4
    assert board.loc["v3", "sessions_served"] == 0 and board.loc["v1", "sessions_served"] == 1
    shown = {r["version"]: r for r in reports.display_records(board.reset_index())}
    assert shown["v1"]["holdout_mae_ratio"] == reports.MISSING and shown["v1"]["verdict"] == reports.MISSING
    assert shown["v1"]["promoted_for"] == "2006-01-03" and shown["v3"]["promoted_for"] == reports.MISSING
    links = reports.link_table(board.reset_index())
    assert "[run](http://mlflow/run)" in links and len(links) < reports.INLINE_MARKDOWN_CHARS


def test_old_rows_without_the_fallback_column_were_all_served_by_their_model():
    preds = predictions([("2006-01-04", "A", "1", "persistence"), ("2006-01-05", "A", "1", "persistence")])
    board = reports.leaderboard([reports.VersionRecord("1", "persistence")], preds, scored([]))
    assert board.loc[0, "sessions_served"] == 2 and board.loc[0, "served_mae_ratio"] is None


def test_the_link_table_stays_short_enough_to_show_inline():
    versions = [reports.VersionRecord(str(v), "lstm", run_url="http://x/" + "r" * 60) for v in range(1, 40)]
    board = reports.leaderboard(versions, predictions([("2006-01-04", "A", "1", "lstm")]), scored([]))
    links = reports.link_table(board)
    assert len(links) < reports.INLINE_MARKDOWN_CHARS and "of 39 versions" in links and "| v39 |" in links


def test_the_champion_timeline_has_one_row_per_run_of_sessions_served_by_one_version():
    preds = predictions(
        [("2006-01-03", "A", "1", "persistence"), ("2006-01-03", "B", "1", "persistence"),
         ("2006-01-04", "A", "1", "persistence"), ("2006-01-04", "B", "1", "persistence"),
         ("2006-01-05", "A", "3", "drill-biased", True), ("2006-01-05", "B", "3", "drill-biased", True),
         ("2006-01-06", "A", "3", "drill-biased"), ("2006-01-09", "A", "4", "lstm")]
    )  # fmt: skip
    log = scored([("2006-01-06", "3", 3.0, 1.0, 0.03, 0.01)])
    timeline = reports.champion_timeline(preds, log)
    assert timeline[["from", "to", "sessions", "version"]].values.tolist() == [
        ["2006-01-03", "2006-01-04", 2, "v1"],
        ["2006-01-05", "2006-01-06", 2, "v3"],
        ["2006-01-09", "2006-01-09", 1, "v4"],
    ]
    assert timeline["fallback_sessions"].tolist() == [0, 1, 0]
    assert timeline.loc[1, "served_mae_ratio"] == 3.0 and pd.isna(timeline.loc[0, "served_mae_ratio"])
    assert reports.champion_timeline(preds.iloc[:0], log).empty


def test_the_detector_chart_by_session_with_markers():
    entries = [
        ("2006-01-04", {"detector_statistic": 0.5, "detector_threshold": 9.0, "coverage_p_value": 0.4}),
        ("2006-01-03", {"detector_statistic": 0.0, "detector_threshold": 9.0, "coverage_p_value": 0.9}),
        ("2006-01-04", {"detector_statistic": 1.5, "detector_threshold": 9.0, "coverage_p_value": 0.001}),  # rerun
        ("2006-01-05", {"note": "nothing to score"}),
    ]
    series = reports.monitor_series(entries)
    assert series["session"].tolist() == ["2006-01-03", "2006-01-04"]
    assert series["detector_statistic"].tolist() == [0.0, 1.5]  # the latest materialization of a session wins
    markers = reports.markers_from(
        [("2006-01-03", "1", "persistence"), ("2006-01-04", "2", "drill-biased")], [("2006-01-04", "CUSUM 12")]
    )
    assert [(m.session, m.kind) for m in markers] == [
        ("2006-01-03", "promotion"),
        ("2006-01-04", "drill"),
        ("2006-01-04", "retraining"),
    ]
    assert reports.detector_chart_png(series, markers).startswith(PNG)
    assert reports.detector_chart_png(reports.monitor_series([]), []).startswith(PNG)


def test_rounding_keeps_four_significant_digits():
    assert reports.rounded(1.4711913500000038) == 1.471
    assert reports.rounded(0.000123456) == 0.0001235
    assert reports.rounded(float("nan")) is None and reports.rounded("x") is None and reports.rounded(0) == 0.0


def test_mlflow_links(monkeypatch):
    monkeypatch.delenv(MLFLOW_UI_URL_ENV, raising=False)
    assert mlflow_ui_url("run", "abc", experiment_id="1") == (
        "http://127.0.0.1:5000/#/experiments/1/runs/abc?workflowType=machine_learning"
    )
    assert mlflow_ui_url("model_version", "3", model_name="stock_lstm") == (
        "http://127.0.0.1:5000/#/models/stock_lstm/versions/3"
    )
    assert mlflow_ui_url("artifact", "r1", path="charts/d.png").endswith(
        "/get-artifact?path=charts%2Fd.png&run_uuid=r1"
    )
    # A tracking server serves its UI: its URL without the password.
    tracking = "https://me:s3cret@mlflow.example:8443/base"
    assert mlflow_ui_url("model", "stock_lstm", tracking_uri=tracking) == (
        "https://mlflow.example:8443/base/#/models/stock_lstm"
    )
    monkeypatch.setenv(MLFLOW_UI_URL_ENV, "http://ui.example:9000/")
    assert mlflow_ui_url("experiment", "7", tracking_uri=tracking) == (
        "http://ui.example:9000/#/experiments/7?workflowType=machine_learning"
    )
    with pytest.raises(ValueError, match="experiment_id"):
        mlflow_ui_url("run", "abc")
    with pytest.raises(ValueError, match="unknown"):
        mlflow_ui_url("trace", "abc")
