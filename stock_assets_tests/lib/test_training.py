import copy

import numpy as np
import pytest
import torch
from torch.export import Dim

from stock_assets.lib.datasets import WindowDataset
from stock_assets.lib.models import build_model
from stock_assets.lib.training import TrainResult, choose_device, predict, set_seeds, train_model

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
    result = _fit(model, train, val, learning_rate=0.05, max_epochs=10, patience=2,
                  on_epoch=lambda epoch, *_: snapshots.__setitem__(epoch, copy.deepcopy(model.state_dict())))  # fmt: skip
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1 < len(losses)
    assert result.stopped_early and len(losses) == result.best_epoch + 2  # patience 2
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
