"""Seeded, early-stopped training that returns the best epoch's weights, the final fit, and the
shrinkage that calibrates a model's forecasts towards persistence.

The best weights are cloned tensors, loaded back into the model before it is returned: holding a
reference to a live state_dict would silently ship the last epoch instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from stock_assets.lib.models import build_quantile_model
from stock_assets.lib.window_dataset import WindowDataset

DEFAULT_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)  # settings.forecast.quantiles reach fit_model through the arrays

EpochCallback = Callable[[int, float, float], None]

# Training losses on scaled targets. Huber's delta of 1 is one target standard deviation: squared
# for ordinary days, linear for the fat-tailed ones that would otherwise dominate the gradient.
_LOSS_FUNCTIONS: dict[str, Callable[[], nn.Module]] = {
    "mse": nn.MSELoss,
    "huber": lambda: nn.HuberLoss(delta=1.0),
    "mae": nn.L1Loss,
}
LOSSES = tuple(_LOSS_FUNCTIONS)


class PinballLoss(nn.Module):
    """Mean pinball (quantile) loss of (batch, tickers, levels) quantiles against (batch, tickers)
    targets: a proper scoring rule for each level, so the levels are learned as quantiles; at 0.5 it
    is half the absolute error, so the median's accuracy still counts."""

    def __init__(self, levels) -> None:
        super().__init__()
        self.register_buffer("levels", torch.tensor(list(levels), dtype=torch.float32))

    def forward(self, quantiles: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        diff = target.unsqueeze(-1) - quantiles
        return torch.maximum(self.levels * diff, (self.levels - 1.0) * diff).mean()


def set_seeds(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def choose_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrainResult:
    model: nn.Module  # on CPU, eval mode, best epoch's weights
    best_epoch: int  # 1-based
    best_val_loss: float  # validation pinball loss (quantile models) or MSE (scaled) of the restored best epoch
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, train_loss (chosen loss), val_loss (MSE)
    stopped_early: bool = False


def _loader(dataset: Dataset, batch_size: int, generator: torch.Generator | None) -> DataLoader:
    """Shuffled when a generator is given. WindowDataset batches are gathered in one slice each."""
    if isinstance(dataset, WindowDataset):
        sampler = RandomSampler(dataset, generator=generator) if generator is not None else SequentialSampler(dataset)
        batches = BatchSampler(sampler, batch_size, drop_last=False)
        return DataLoader(dataset, sampler=batches, batch_size=None, num_workers=0)
    return DataLoader(dataset, batch_size=batch_size, shuffle=generator is not None, generator=generator, num_workers=0)


def _state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A true copy: new CPU tensors that later optimiser steps cannot touch."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _evaluate(model: nn.Module, loader: DataLoader, device: torch.device, pinball: PinballLoss | None) -> float:
    """Validation loss on scaled targets: the mean pinball loss of a quantile model, else the mean
    squared error whatever the training loss, so runs compare."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            pred, y = model(x.to(device)), y.to(device)
            if pinball is not None:
                total += float(pinball(pred, y)) * y.numel()
            else:
                total += float(((pred - y) ** 2).sum())
            count += y.numel()
    return total / count


def train_model(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset,
    *,
    learning_rate: float,
    batch_size: int,
    max_epochs: int,
    patience: int,
    seed: int,
    on_epoch: EpochCallback | None = None,
    device: torch.device | None = None,
    grad_clip: float | None = 1.0,
    loss: str = "mse",
    levels: tuple[float, ...] | None = None,
) -> TrainResult:
    """Adam on `loss` (one of LOSSES) of scaled targets with early stopping on validation loss.

    With `levels` the model predicts quantiles and both the training and the validation loss are the
    mean pinball loss over those levels (`loss` is then not used). Otherwise the validation loss is
    MSE of scaled targets, whatever the training loss: early stopping, `best_val_loss` and the search
    objective then compare trials trained on different losses on one scale. `train_loss` in the
    history is the training loss.

    `on_epoch(epoch, train_loss, val_loss)` runs after every epoch; exceptions it raises (e.g. an
    Optuna prune) propagate. A non-finite loss stops training and keeps the best finite epoch;
    if no epoch was finite, FloatingPointError is raised.
    """
    if levels is None and loss not in _LOSS_FUNCTIONS:
        raise ValueError(f"unknown loss {loss!r}; allowed: {', '.join(LOSSES)}")
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"empty dataset: {len(train_set)} train, {len(val_set)} validation samples")
    if max_epochs < 1 or patience < 1 or batch_size < 1:
        raise ValueError(
            f"max_epochs, patience and batch_size must be >= 1, got {max_epochs}, {patience}, {batch_size}"
        )
    set_seeds(seed)
    device = device or choose_device()
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    train_loader = _loader(train_set, batch_size, generator)
    val_loader = _loader(val_set, max(batch_size, 256), None)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    pinball = PinballLoss(levels).to(device) if levels is not None else None
    loss_fn = pinball if pinball is not None else _LOSS_FUNCTIONS[loss]()

    best_state, best_epoch, best_val = None, 0, float("inf")
    history: list[dict] = []
    stopped_early, stale = False, 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        total, count = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            batch_loss = loss_fn(model(x), y)
            batch_loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            total += float(batch_loss.detach()) * len(y)
            count += len(y)
        train_loss, val_loss = total / count, _evaluate(model, val_loader, device, pinball)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
        if on_epoch is not None:
            on_epoch(epoch, train_loss, val_loss)
        if not (np.isfinite(train_loss) and np.isfinite(val_loss)):
            stopped_early = True
            break
        if val_loss < best_val:
            best_state, best_epoch, best_val, stale = _state_copy(model), epoch, val_loss, 0
        else:
            stale += 1
            if stale >= patience:
                stopped_early = epoch < max_epochs
                break
    if best_state is None:
        raise FloatingPointError(f"training diverged: no epoch had a finite loss (history: {history})")
    model.load_state_dict(best_state)
    model.to("cpu").eval()
    return TrainResult(model, best_epoch, best_val, history, stopped_early)


def predict(
    model: nn.Module, dataset_or_array: Dataset | np.ndarray | torch.Tensor, batch_size: int = 256
) -> np.ndarray:
    """Scaled predictions (n, n_tickers) for a dataset of (x, y) items or an (n, seq, T, F) array.

    Works for exported programs' modules too (they refuse .eval(); they have no dropout state).
    """
    try:
        model.eval()
    except NotImplementedError:
        pass
    params = list(model.parameters())
    device = params[0].device if params else torch.device("cpu")
    if isinstance(dataset_or_array, (np.ndarray, torch.Tensor)):
        data = torch.as_tensor(dataset_or_array, dtype=torch.float32)
        batches = (data[i : i + batch_size] for i in range(0, len(data), batch_size))
    else:
        batches = (x for x, _ in _loader(dataset_or_array, batch_size, None))
    outputs = []
    with torch.no_grad():
        for x in batches:
            outputs.append(model(x.to(device)).cpu().numpy())
    if not outputs:
        raise ValueError("nothing to predict: empty input")
    return np.concatenate(outputs).astype(np.float64)


def fit_model(
    arrays: dict[str, np.ndarray],
    params: dict,
    *,
    max_epochs: int,
    patience: int,
    seed: int,
    on_epoch: EpochCallback | None = None,
) -> TrainResult:
    """Build the quantile model `params` describe (at the levels the arrays carry) and train it on the
    train part with the pinball loss, early-stopped on the validation pinball loss."""
    set_seeds(seed)  # before building: weight initialisation is part of reproducibility
    seq = int(params["sequence_length"])
    n_tickers, n_features = arrays["scaled_features"].shape[1:]
    levels = tuple(float(v) for v in arrays["levels"]) if "levels" in arrays else DEFAULT_LEVELS
    model = build_quantile_model(
        params["architecture"],
        n_tickers,
        n_features,
        int(params["hidden_size"]),
        int(params["num_layers"]),
        float(params["dropout"]),
        levels,
    )
    train = WindowDataset(arrays["scaled_features"], arrays["scaled_targets"], arrays["train"], seq)
    validation = WindowDataset(arrays["scaled_features"], arrays["scaled_targets"], arrays["validation"], seq)
    return train_model(
        model,
        train,
        validation,
        learning_rate=float(params["learning_rate"]),
        batch_size=int(params["batch_size"]),
        max_epochs=max_epochs,
        patience=patience,
        seed=seed,
        on_epoch=on_epoch,
        levels=levels,
    )


def calibrate_shrinkage(predicted: np.ndarray, actual: np.ndarray) -> float:
    """The factor a in [0, 1] for which a * predicted has the least squared error against actual.

    Meant for log returns on the validation part: a = 0 is the persistence forecast (tomorrow's
    close = today's), a = 1 keeps the model as is, so a model without signal shrinks to the
    baseline instead of losing to it. Closed form <p, y> / <p, p>, clipped. Pairs with a NaN are
    dropped; with nothing left, an infinite value or <p, p> == 0 the answer is 0 (persistence).
    """
    p = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(actual, dtype=np.float64)
    if p.shape != y.shape:
        raise ValueError(f"predicted {p.shape} and actual {y.shape} must have the same shape")
    keep = ~(np.isnan(p) | np.isnan(y))
    p, y = p[keep], y[keep]
    if p.size == 0 or not (np.isfinite(p).all() and np.isfinite(y).all()):
        return 0.0
    power, covariance = float(p @ p), float(p @ y)
    if not (np.isfinite(power) and np.isfinite(covariance)) or power == 0.0:
        return 0.0
    return float(np.clip(covariance / power, 0.0, 1.0))
