import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.export import Dim

from stock_assets.lib.fitting import (
    LOSSES,
    PinballLoss,
    TrainResult,
    calibrate_shrinkage,
    choose_device,
    fit_model,
    predict,
    set_seeds,
    train_model,
)
from stock_assets.lib.models import build_model
from stock_assets.lib.window_dataset import WindowDataset
from stock_assets_tests.helpers import random_training_arrays

SEQ, TICKERS, FEATURES = 4, 2, 3


def _datasets(n: int = 80, val_target: float | None = None, seed: int = 0) -> tuple[WindowDataset, WindowDataset]:
    """Targets depend on the last row's features; validation uses later sessions."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, TICKERS, FEATURES)).astype(np.float32)
    y = (x[:, :, 0] - 0.5 * x[:, :, 1]).astype(np.float32)
    if val_target is not None:  # validation wants a constant the training data pulls away from
        y[n // 2 :] = val_target
    y[-1] = np.nan
    train = WindowDataset(x, y, np.arange(SEQ - 1, n // 2 - 1), SEQ)
    val = WindowDataset(x, y, np.arange(n // 2 + SEQ, n - 1), SEQ)
    return train, val


def _model(seed: int = 0, architecture: str = "lstm"):
    set_seeds(seed)
    return build_model(architecture, TICKERS, FEATURES, hidden_size=8, num_layers=1, dropout=0.0)


def _fit(model, train, val, **kwargs) -> TrainResult:
    args = {"learning_rate": 0.01, "batch_size": 8, "max_epochs": 6, "patience": 3, "seed": 0}
    return train_model(model, train, val, **{**args, **kwargs})


def test_training_learns_and_reports_every_epoch():
    train, val = _datasets()
    seen = []
    result = _fit(_model(), train, val, max_epochs=8, patience=8, on_epoch=lambda *a: seen.append(a))
    assert [h["epoch"] for h in result.history] == list(range(1, 9)) and not result.stopped_early
    assert seen == [(h["epoch"], h["train_loss"], h["val_loss"]) for h in result.history]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_val_loss == min(h["val_loss"] for h in result.history)
    assert not result.model.training and next(result.model.parameters()).device.type == "cpu"


def test_best_weights_are_restored_not_the_last_epoch():
    """Training pulls outputs away from what validation wants, so validation loss worsens
    after epoch 1; the returned weights must be epoch 1's true copy."""
    train, val = _datasets(val_target=-3.0)
    model = _model()
    snapshots = {}
    result = _fit(
        model,
        train,
        val,
        learning_rate=0.05,
        max_epochs=10,
        patience=2,
        on_epoch=lambda epoch, *_: snapshots.__setitem__(epoch, copy.deepcopy(model.state_dict())),
    )
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1 < len(losses)
    assert result.stopped_early and len(losses) == result.best_epoch + 2  # patience 2
    assert result.best_val_loss == losses[result.best_epoch - 1] < losses[-1]
    final = result.model.state_dict()
    for name, tensor in final.items():
        torch.testing.assert_close(tensor, snapshots[result.best_epoch][name], rtol=0, atol=0)
    assert any(not torch.equal(final[k], snapshots[len(losses)][k]) for k in final)
    val_x = torch.stack([val[i][0] for i in range(len(val))])
    val_y = torch.stack([val[i][1] for i in range(len(val))])
    with torch.no_grad():
        assert float(((result.model(val_x) - val_y) ** 2).mean()) == pytest.approx(result.best_val_loss, rel=1e-5)


def test_same_seed_same_losses_and_different_seed_differs():
    train, val = _datasets()
    first = _fit(_model(3, "ticker_attention"), train, val, seed=3, max_epochs=3).history
    second = _fit(_model(3, "ticker_attention"), train, val, seed=3, max_epochs=3).history
    other = _fit(_model(4, "ticker_attention"), train, val, seed=4, max_epochs=3).history
    assert first == second
    assert first != other


def test_callback_exceptions_propagate():
    class Pruned(Exception):
        pass

    def prune_at_two(epoch, train_loss, val_loss):
        if epoch == 2:
            raise Pruned

    train, val = _datasets()
    with pytest.raises(Pruned):
        _fit(_model(), train, val, on_epoch=prune_at_two)


def test_divergence_without_any_finite_epoch_raises():
    train, val = _datasets()
    with pytest.raises(FloatingPointError, match="diverged"):
        _fit(_model(), train, val, learning_rate=1e30, grad_clip=None)


def test_predict_on_datasets_arrays_and_exported_programs():
    train, val = _datasets()
    model = _model(architecture="lstm_attention").eval()
    x = torch.stack([val[i][0] for i in range(len(val))])
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(predict(model, val, batch_size=5), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(predict(model, x.numpy(), batch_size=7), expected, rtol=1e-5, atol=1e-6)
    exported = torch.export.export(model, (x[:2],), dynamic_shapes=({0: Dim.AUTO},)).module()
    out = predict(exported, x[:1].numpy())  # serving: one window
    assert out.shape == (1, TICKERS)
    np.testing.assert_allclose(out, expected[:1], rtol=1e-5, atol=1e-6)


def test_device_and_argument_checks():
    assert choose_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    train, val = _datasets()
    with pytest.raises(ValueError, match="patience"):
        _fit(_model(), train, val, patience=0)


FIT_PARAMS = {
    "architecture": "lstm",
    "hidden_size": 8,
    "num_layers": 1,
    "dropout": 0.1,
    "learning_rate": 1e-3,
    "batch_size": 16,
    "sequence_length": 5,
}


_fit_arrays = random_training_arrays


def test_fit_is_reproducible_including_weight_initialisation():
    a = fit_model(_fit_arrays(), FIT_PARAMS, max_epochs=2, patience=2, seed=7)
    b = fit_model(_fit_arrays(), FIT_PARAMS, max_epochs=2, patience=2, seed=7)
    c = fit_model(_fit_arrays(), FIT_PARAMS, max_epochs=2, patience=2, seed=8)
    assert a.history == b.history and a.history != c.history


def _stacked(dataset: WindowDataset) -> tuple[torch.Tensor, torch.Tensor]:
    return dataset[np.arange(len(dataset))]


@pytest.mark.parametrize(
    "loss, fn", [("mse", F.mse_loss), ("huber", lambda p, y: F.huber_loss(p, y, delta=1.0)), ("mae", F.l1_loss)]
)
def test_training_loss_is_the_chosen_one_and_validation_stays_mse(loss, fn):
    """With a zero learning rate the weights stay put, so epoch 1's losses are exactly those of the
    initial model: the chosen loss on the training set, MSE on validation."""
    train, val = _datasets()
    model = _model(architecture="pooled_lstm")
    (train_x, train_y), (val_x, val_y) = _stacked(train), _stacked(val)
    with torch.no_grad():
        expected_train, expected_val = float(fn(model(train_x), train_y)), float(F.mse_loss(model(val_x), val_y))
    result = _fit(model, train, val, learning_rate=0.0, max_epochs=1, loss=loss)
    assert result.history[0]["train_loss"] == pytest.approx(expected_train, rel=1e-5)
    assert result.history[0]["val_loss"] == pytest.approx(expected_val, rel=1e-5)
    assert LOSSES == ("mse", "huber", "mae")


def test_unknown_loss_is_rejected_naming_the_allowed_ones():
    train, val = _datasets()
    with pytest.raises(ValueError, match="allowed: mse, huber, mae"):
        _fit(_model(), train, val, loss="quantile")


def test_fit_model_learns_non_crossing_quantiles_with_the_pinball_loss():
    """fit_model trains the distribution head: (n, tickers, levels) quantiles, monotone by
    construction, early-stopped on the validation pinball loss it reports."""
    arrays = {**_fit_arrays(), "levels": np.array([0.1, 0.5, 0.9])}
    result = fit_model(arrays, FIT_PARAMS, max_epochs=2, patience=2, seed=7)
    x = torch.as_tensor(arrays["scaled_features"][None, :5])
    out = predict(result.model, x.numpy())
    assert out.shape == (1, arrays["scaled_features"].shape[1], 3) and (np.diff(out, axis=-1) > 0).all()
    validation = WindowDataset(arrays["scaled_features"], arrays["scaled_targets"], arrays["validation"], 5)
    vx, vy = _stacked(validation)
    q = predict(result.model, vx.numpy())
    d = vy.numpy()[..., None] - q
    levels = np.array([0.1, 0.5, 0.9])
    pinball = float(np.mean(np.maximum(levels * d, (levels - 1) * d)))
    assert pinball == pytest.approx(result.best_val_loss, rel=1e-4)


def test_the_pinball_loss_is_half_the_absolute_error_at_the_median():
    y = torch.tensor([[1.0, -2.0]])
    q = torch.tensor([[[0.0], [0.0]]])
    assert float(PinballLoss([0.5])(q, y)) == pytest.approx(0.5 * 1.5)
    assert float(PinballLoss([0.9])(q, y)) == pytest.approx((0.9 * 1.0 + 0.1 * 2.0) / 2)


@pytest.mark.parametrize("loss", LOSSES)
def test_best_val_loss_is_the_restored_epochs_validation_mse(loss):
    """Weights are wrecked after epoch 3, so epoch 4 is non-finite and stops training; the result
    must carry an earlier epoch's weights and exactly that epoch's validation MSE."""
    train, val = _datasets(val_target=-3.0)
    set_seeds(0)
    model = build_model("pooled_lstm", TICKERS, FEATURES, hidden_size=8, num_layers=2, dropout=0.2)

    def wreck(epoch, *_):
        if epoch == 3:
            with torch.no_grad():
                model.head.weight.fill_(float("nan"))

    result = _fit(model, train, val, learning_rate=0.05, max_epochs=10, patience=5, on_epoch=wreck, loss=loss)
    assert len(result.history) == 4 and result.stopped_early and result.best_epoch <= 3
    assert result.best_val_loss == result.history[result.best_epoch - 1]["val_loss"]
    val_x, val_y = _stacked(val)
    mse = float(np.mean((predict(result.model, val_x.numpy()) - val_y.numpy()) ** 2))
    assert mse == pytest.approx(result.best_val_loss, rel=1e-5)


def test_shrinkage_of_noise_perfect_and_half_signal_predictors():
    rng = np.random.default_rng(0)
    signal = rng.normal(scale=0.01, size=(5000, 4))
    noise = rng.normal(scale=0.01, size=(5000, 4))
    assert calibrate_shrinkage(rng.normal(scale=0.01, size=signal.shape), signal) < 0.03
    assert calibrate_shrinkage(signal, signal) == pytest.approx(1.0)
    # Half of the predicted variance is signal: the best scale is about 1/2.
    assert calibrate_shrinkage(signal + noise, signal) == pytest.approx(0.5, abs=0.02)
    # A forecast twice too confident is halved.
    assert calibrate_shrinkage(2 * signal, signal + noise) == pytest.approx(0.5, abs=0.02)


def test_shrinkage_minimises_the_squared_error_and_clips_at_both_ends():
    rng = np.random.default_rng(1)
    actual = rng.normal(size=300)
    predicted = 0.3 * actual + rng.normal(size=300)
    a = calibrate_shrinkage(predicted, actual)
    grid = np.linspace(0, 1, 1001)
    errors = [np.mean((g * predicted - actual) ** 2) for g in grid]
    assert a == pytest.approx(grid[int(np.argmin(errors))], abs=1e-3)
    assert calibrate_shrinkage(-actual, actual) == 0.0  # anti-correlated: persistence
    assert calibrate_shrinkage(0.25 * actual, actual) == 1.0  # would want 4, capped at the model as is


def test_shrinkage_edge_cases_fall_back_to_persistence():
    actual = np.array([0.01, -0.02, 0.03, 0.005])
    predicted = np.array([0.02, -0.01, 0.01, 0.0])
    with_gaps_p = np.array([0.02, np.nan, -0.01, 0.01, 0.7, 0.0])
    with_gaps_y = np.array([0.01, 0.5, -0.02, 0.03, np.nan, 0.005])
    assert calibrate_shrinkage(with_gaps_p, with_gaps_y) == pytest.approx(calibrate_shrinkage(predicted, actual))
    assert 0.0 < calibrate_shrinkage(predicted, actual) <= 1.0
    assert calibrate_shrinkage(np.zeros(4), actual) == 0.0
    assert calibrate_shrinkage(np.array([]), np.array([])) == 0.0
    assert calibrate_shrinkage(np.full(4, np.nan), actual) == 0.0
    assert calibrate_shrinkage(np.array([np.inf, 0.0, 0.0, 0.0]), actual) == 0.0
    assert isinstance(calibrate_shrinkage(predicted, actual), float)
    with pytest.raises(ValueError, match="same shape"):
        calibrate_shrinkage(predicted, actual[:3])
