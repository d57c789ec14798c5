import numpy as np
import pandas as pd
import pytest

from stock_assets.lib.evaluation import build_training_sets, gate_decision, score_on_sessions

C = {"mae": 1.0}
P = {"mae": 1.2}


def test_gate_passes_without_champion_within_the_persistence_bound():
    passed, summary = gate_decision({"mae": 1.25}, None, P, max_ratio=1.05)
    assert passed and "no champion yet" in summary and "skill -0.042" in summary


def test_gate_requires_a_real_improvement_over_the_champion():
    assert not gate_decision({"mae": 1.0}, C, P, 1.05)[0]  # a tie is no promotion
    assert not gate_decision({"mae": 0.9995}, C, P, 1.05, min_improvement=0.001)[0]
    assert gate_decision({"mae": 0.998}, C, P, 1.05, min_improvement=0.001)[0]
    passed, summary = gate_decision({"mae": 1.3}, C, P, 1.05)
    assert not passed
    assert "is not below champion MAE 1.0000" in summary and "exceeds 1.05 x persistence MAE 1.2000 = 1.2600" in summary


def test_gate_rejects_non_finite_candidates():
    assert not gate_decision({"mae": float("nan")}, None, P, 1.05)[0]


def _long(dates, tickers, close):
    rows = [{"date": d, "ticker": t, "f1": float(i), "adj_close": close[i][j]} for i, d in enumerate(dates) for j, t in enumerate(tickers)]
    frame = pd.DataFrame(rows)
    return frame[["date", "ticker", "f1"]], frame[["date", "ticker", "adj_close"]]


def test_training_sets_keep_the_last_window_and_score_the_exact_next_session():
    dates = [f"2020-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)][:200]
    close = np.exp(np.cumsum(np.full((200, 2), 0.01), axis=0)) * 100
    features, prices = _long(dates, ["A", "B"], close)
    scaler, arrays = build_training_sets(features, prices, ["A", "B"], ["f1"], training_window=160, max_sequence_length=10)
    assert len(arrays["dates"]) == 160 and arrays["dates"][-1] == dates[-1]
    assert arrays["holdout"].max() == 158  # the last session (no next close) is never a sample
    ends = arrays["holdout"]
    perfect = np.log(arrays["close"][ends + 1] / arrays["close"][ends])
    assert score_on_sessions(perfect, arrays, ends)["mae"] == pytest.approx(0.0, abs=1e-9)
    persistence = score_on_sessions(None, arrays, ends)
    assert persistence["directional_accuracy"] == 0.0  # flat forecast vs a rising series
    with pytest.raises(ValueError, match="re-materialize scalers"):
        other = dict(scaler, fitted_sessions={"first": "1999-01-01", "last": "1999-06-01"})
        build_training_sets(features, prices, ["A", "B"], ["f1"], 160, 10, scaler=other)
