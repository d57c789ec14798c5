import json

import numpy as np
import pandas as pd
import pytest
import torch

from stock_assets.lib.datasets import (
    Panel,
    Split,
    apply_scaler,
    build_panel,
    build_training_sets,
    chronological_split,
    cut_windows,
    fit_scaler,
    minimum_sessions,
    next_session_log_returns,
    predicted_close,
    scale_targets,
    unscale_predictions,
)
from stock_assets.lib.evaluation import point_metrics
from stock_assets.lib.window_dataset import WindowDataset

COLUMNS = ["f_index", "f_noise", "f_const"]
TICKERS = ["BBB", "AAA"]  # deliberately not alphabetical: the given order must be kept


def _dates(n: int) -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.bdate_range("2024-01-01", periods=n)]


def _frames(n: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long frames, shuffled: feature f_index = session index (+1000 for AAA), closes a known walk."""
    rng = np.random.default_rng(seed)
    feats, prices = [], []
    for k, ticker in enumerate(TICKERS):
        close = 100.0 * np.cumprod(1 + rng.normal(0, 0.02, n)) * (k + 1)
        for i, date in enumerate(_dates(n)):
            row = {"f_index": i + 1000.0 * k, "f_noise": rng.normal(), "f_const": 3.0}
            feats.append({"date": date, "ticker": ticker, **row})
            prices.append({"date": date, "ticker": ticker, "adj_close": close[i], "close": close[i] * 1.5})
    f, p = pd.DataFrame(feats), pd.DataFrame(prices)
    return f.sample(frac=1.0, random_state=1), p.sample(frac=1.0, random_state=2)


def _panel(n: int = 80) -> Panel:
    return build_panel(*_frames(n), TICKERS, COLUMNS)


def test_target_is_the_next_session_log_return_on_a_hand_made_series():
    close = np.array([[100.0], [110.0], [121.0], [96.8], [130.0]])
    y = next_session_log_returns(close)
    for t in range(4):
        assert y[t, 0] == np.log(close[t + 1, 0] / close[t, 0])
    assert y[0, 0] == pytest.approx(np.log(1.1)) and y[2, 0] == pytest.approx(np.log(0.8))
    assert np.isnan(y[4, 0])  # the last session's next close is unknown


def test_window_ending_at_t_pairs_with_target_of_t():
    panel = _panel(40)
    seq = 4
    y = next_session_log_returns(panel.close)
    ds = WindowDataset(panel.features, y, np.arange(seq - 1, panel.n_sessions - 1), seq)
    for i in (0, 7, len(ds) - 1):
        x, target = ds[i]
        t = seq - 1 + i
        assert x[-1, 0, 0].item() == t and x[0, 0, 0].item() == t - seq + 1  # rows t-seq+1..t, BBB first
        expected = np.log(panel.close[t + 1] / panel.close[t]).astype(np.float32)
        np.testing.assert_array_equal(target.numpy(), expected)
        np.testing.assert_allclose(predicted_close(panel.close[t], y[t]), panel.close[t + 1], rtol=1e-12)


@pytest.mark.parametrize("n, seq", [(60, 3), (61, 5), (200, 10), (minimum_sessions(7), 7)])
def test_the_last_session_is_never_a_sample(n, seq):
    split = chronological_split(n, seq)
    ends = np.concatenate([split.train, split.validation, split.holdout])
    assert n - 1 not in ends and ends.max() == n - 2 and ends.min() == seq - 1
    targets = next_session_log_returns(np.ones((n, 1)))
    with pytest.raises(ValueError, match="no finite target"):
        WindowDataset(np.zeros((n, 1, 1), np.float32), targets, [n - 1], seq)


def test_build_panel_orders_by_date_and_given_tickers_without_filling():
    features, prices = _frames(10)
    panel = build_panel(features, prices, TICKERS, COLUMNS)
    assert panel.tickers == TICKERS and panel.dates == _dates(10) and panel.n_sessions == 10
    assert panel.features.shape == (10, 2, 3) and panel.features.dtype == np.float32
    assert panel.close.dtype == np.float64
    np.testing.assert_array_equal(panel.features[:, 0, 0], np.arange(10))  # BBB
    np.testing.assert_array_equal(panel.features[:, 1, 0], np.arange(10) + 1000)  # AAA
    row = prices[(prices["ticker"] == "AAA") & (prices["date"] == _dates(10)[4])]
    assert panel.close[4, 1] == row["adj_close"].item()  # adj_close, not close


def test_build_panel_drops_sessions_any_ticker_lacks():
    features, prices = _frames(10)
    d = _dates(10)
    features = features[~((features["ticker"] == "AAA") & (features["date"] == d[2]))]
    prices = prices[~((prices["ticker"] == "BBB") & (prices["date"] == d[5]))]
    features.loc[(features["ticker"] == "BBB") & (features["date"] == d[7]), "f_noise"] = np.nan
    panel = build_panel(features, prices, TICKERS, COLUMNS)
    assert panel.dates == [x for i, x in enumerate(d) if i not in (2, 5, 7)]
    np.testing.assert_array_equal(panel.features[:, 0, 0], [0, 1, 3, 4, 6, 8, 9])
    assert np.isfinite(panel.features).all() and np.isfinite(panel.close).all()


def test_build_panel_errors_name_the_problem():
    features, prices = _frames(10)
    with pytest.raises(ValueError, match=r"\['CCC'\] have no rows at all in features"):
        build_panel(features, prices, [*TICKERS, "CCC"], COLUMNS)
    with pytest.raises(ValueError, match=r"\['AAA'\] have no rows at all in prices"):
        build_panel(features, prices[prices["ticker"] != "AAA"], TICKERS, COLUMNS)
    few = features[~((features["ticker"] == "AAA") & (features["date"] > _dates(10)[2]))]
    with pytest.raises(ValueError, match=r"only 3 sessions .*need at least 20.*'AAA': 3"):
        build_panel(few, prices, TICKERS, COLUMNS, min_sessions=20)
    with pytest.raises(ValueError, match="duplicate"):
        build_panel(pd.concat([features, features.head(1)]), prices, TICKERS, COLUMNS)
    zero = prices.copy()
    zero.loc[zero.index[0], "adj_close"] = 0.0
    with pytest.raises(ValueError, match="non-positive adj_close"):
        build_panel(features, zero, TICKERS, COLUMNS)


def _check_part_boundary(before: np.ndarray, after: np.ndarray, seq: int) -> None:
    assert before.max() < after.min()
    assert after.min() - before.max() - 1 >= seq  # skipped window ends: the embargo
    assert (before + 1).max() < after.min() - seq + 1  # every target of `before` precedes `after`'s windows


@pytest.mark.parametrize("n, seq", [(100, 5), (257, 20), (minimum_sessions(30), 30)])
def test_split_is_chronological_embargoed_and_disjoint(n, seq):
    split = chronological_split(n, seq)
    parts = [split.train, split.validation, split.holdout]
    for part in parts:
        assert len(part) >= 5 and np.all(np.diff(part) == 1)
    assert len(np.unique(np.concatenate(parts))) == sum(map(len, parts))
    _check_part_boundary(split.train, split.validation, seq)
    _check_part_boundary(split.validation, split.holdout, seq)
    if n - 3 * seq > 100:  # far above the per-part minimum the fractions rule
        assert len(split.validation) == pytest.approx(0.15 * (n - 3 * seq), abs=1)


def test_split_with_too_few_sessions_names_the_minimum():
    need = minimum_sessions(10, min_samples=5)
    assert need == 3 * 10 + 3 * 5
    chronological_split(need, 10)
    with pytest.raises(
        ValueError, match=rf"{need - 1} sessions are too few for sequence_length=10: need at least {need}"
    ):
        chronological_split(need - 1, 10)
    assert minimum_sessions(10, min_samples=8) == 54
    with pytest.raises(ValueError, match="fractions"):
        chronological_split(500, 10, validation_fraction=0.6, holdout_fraction=0.5)


def _altered(panel: Panel, rows: slice, features: bool = True, close: bool = True) -> Panel:
    f, c = panel.features.copy(), panel.close.copy()
    if features:
        f[rows] += 5.0
    if close:
        c[rows] *= 1.3
    return Panel(panel.dates, panel.tickers, panel.feature_columns, f, c)


def test_scaler_is_fitted_on_train_rows_only():
    panel, seq = _panel(80), 5
    split = chronological_split(panel.n_sessions, seq)
    last_train = int(split.train.max())
    scaler = fit_scaler(panel, split, seq)
    rows = panel.features[: last_train + 1].astype(np.float64)
    np.testing.assert_allclose(scaler["mean"], rows.mean(axis=0))
    targets = next_session_log_returns(panel.close)[split.train]
    np.testing.assert_allclose(scaler["target_std"], targets.std(axis=0))
    assert scaler["fitted_sessions"] == {"first": panel.dates[0], "last": panel.dates[last_train]}
    assert scaler["tickers"] == TICKERS and scaler["feature_columns"] == COLUMNS

    later = slice(int(split.validation.min()) - seq + 1, None)  # every validation and holdout row
    assert fit_scaler(_altered(panel, later), split, seq) == scaler
    assert fit_scaler(_altered(panel, slice(3, 4), close=False), split, seq)["mean"] != scaler["mean"]
    changed = fit_scaler(_altered(panel, slice(last_train + 1, None), features=False), split, seq)
    assert changed["target_mean"] != scaler["target_mean"]  # close[last_train + 1] is a train target


def test_scaler_is_plain_json_and_handles_constant_features():
    panel, seq = _panel(60), 4
    split = chronological_split(panel.n_sessions, seq)
    scaler = fit_scaler(panel, split, seq)
    assert json.loads(json.dumps(scaler)) == scaler
    assert np.array(scaler["mean"]).shape == (2, 3) and np.array(scaler["target_mean"]).shape == (2,)
    scaled = apply_scaler(panel.features, scaler)
    assert scaled.dtype == np.float32 and np.isfinite(scaled).all()
    np.testing.assert_array_equal(scaled[..., 2], 0.0)  # f_const: std floored, no division by zero
    train_rows = scaled[: int(split.train.max()) + 1].astype(np.float64)
    np.testing.assert_allclose(train_rows[..., :2].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(train_rows[..., :2].std(axis=0), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="scaler expects"):
        apply_scaler(panel.features[:, :1], scaler)


def test_target_scaling_round_trips():
    scaler = {"target_mean": [0.001, -0.002], "target_std": [0.01, 0.02]}
    y = np.array([[0.011, 0.018], [np.nan, np.nan]])
    scaled = scale_targets(y, scaler)
    np.testing.assert_allclose(scaled[0], [1.0, 1.0], rtol=1e-6)
    assert np.isnan(scaled[1]).all()
    np.testing.assert_allclose(unscale_predictions(scaled[:1], scaler), y[:1], rtol=1e-6)


def test_window_dataset_slices_on_demand_from_one_array():
    n, seq = 50, 6
    features = np.arange(n * 2 * 3, dtype=np.float32).reshape(n, 2, 3)
    targets = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    ends = np.array([5, 9, 30, 48])
    ds = WindowDataset(features, targets, ends, seq)
    assert len(ds) == 4
    x, y = ds[2]
    assert x.dtype == y.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), features[25:31])
    np.testing.assert_array_equal(y.numpy(), targets[30])
    xb, yb = ds[[3, 0]]  # batched gather == stacked items
    np.testing.assert_array_equal(xb.numpy(), np.stack([features[43:49], features[0:6]]))
    np.testing.assert_array_equal(yb.numpy(), targets[[48, 5]])
    # memory: the dataset references the caller's array, holds no stacked windows
    assert ds.features is features
    held = sum(v.nbytes for v in vars(ds).values() if isinstance(v, np.ndarray))
    assert held < features.nbytes + targets.nbytes + 1024
    with pytest.raises(ValueError, match="end indices must lie in"):
        WindowDataset(features, targets, [4], seq)


def test_cut_windows_serves_any_ends_including_the_last_window():
    features = np.arange(20 * 2 * 1, dtype=np.float32).reshape(20, 2, 1)
    w = cut_windows(features, [-1], 5)
    assert w.shape == (1, 5, 2, 1) and w.dtype == np.float32
    np.testing.assert_array_equal(w[0], features[15:20])
    both = cut_windows(features, [4, 19], 5)
    np.testing.assert_array_equal(both[0], features[0:5])
    np.testing.assert_array_equal(both[1], features[15:20])
    with pytest.raises(ValueError, match="must end in"):
        cut_windows(features, [3], 5)


def test_split_dataclass_is_frozen():
    split = Split(np.arange(3), np.arange(3), np.arange(3))
    with pytest.raises(AttributeError):
        split.train = np.arange(2)  # type: ignore[misc]


def _long(dates, tickers, close):
    rows = [
        {"date": d, "ticker": t, "f1": float(i), "adj_close": close[i][j]}
        for i, d in enumerate(dates)
        for j, t in enumerate(tickers)
    ]
    frame = pd.DataFrame(rows)
    return frame[["date", "ticker", "f1"]], frame[["date", "ticker", "adj_close"]]


def test_training_sets_keep_the_last_window_and_score_the_exact_next_session():
    dates = [f"2020-{m:02d}-{d:02d}" for m in range(1, 13) for d in range(1, 29)][:200]
    close = np.exp(np.cumsum(np.full((200, 2), 0.01), axis=0)) * 100
    features, prices = _long(dates, ["A", "B"], close)
    scaler, arrays = build_training_sets(
        features, prices, ["A", "B"], ["f1"], training_window=160, max_sequence_length=10
    )
    assert len(arrays["dates"]) == 160 and arrays["dates"][-1] == dates[-1]
    assert arrays["holdout"].max() == 158  # the last session (no next close) is never a sample
    ends = arrays["holdout"]
    perfect = np.log(arrays["close"][ends + 1] / arrays["close"][ends])[..., None]  # a one-level "distribution"
    assert point_metrics(perfect, arrays, ends, (0.5,))["mae"] == pytest.approx(0.0, abs=1e-9)
    persistence = point_metrics(None, arrays, ends, (0.5,))
    assert persistence["directional_accuracy"] == 0.0  # flat forecast vs a rising series
    assert scaler["parts"]["holdout"]["last"] == dates[-2] and scaler["fitted_sessions"]["first"] == arrays["dates"][0]
