"""Seeded, early-stopped training that returns the best epoch's weights (SPEC §8, §17 flaw 2).

The old design "kept" the best epoch by holding a reference to a state_dict whose tensors kept
changing, so the last epoch shipped. Here the best weights are cloned tensors, loaded back into
the model before it is returned.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from stock_assets.lib.datasets import WindowDataset

EpochCallback = Callable[[int, float, float], None]


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
    best_val_loss: float
    history: list[dict] = field(default_factory=list)  # per epoch: epoch, train_loss, val_loss
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


def _evaluate(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            pred = model(x.to(device))
            total += float(((pred - y.to(device)) ** 2).sum())
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
    weight_decay: float = 0.0,
    grad_clip: float | None = 1.0,
) -> TrainResult:
    """Adam on MSE of scaled targets with early stopping on validation loss.

    `on_epoch(epoch, train_loss, val_loss)` runs after every epoch; exceptions it raises (e.g. an
    Optuna prune) propagate. A non-finite loss stops training and keeps the best finite epoch;
    if no epoch was finite, FloatingPointError is raised.
    """
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"empty dataset: {len(train_set)} train, {len(val_set)} validation samples")
    if max_epochs < 1 or patience < 1 or batch_size < 1:
        raise ValueError(f"max_epochs, patience and batch_size must be >= 1, got {max_epochs}, {patience}, {batch_size}")
    set_seeds(seed)
    device = device or choose_device()
    model.to(device)
    generator = torch.Generator().manual_seed(seed)
    train_loader = _loader(train_set, batch_size, generator)
    val_loader = _loader(val_set, max(batch_size, 256), None)
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    loss_fn = nn.MSELoss()

    best_state, best_epoch, best_val = None, 0, float("inf")
    history: list[dict] = []
    stopped_early, stale = False, 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        total, count = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            if grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        train_loss, val_loss = total / count, _evaluate(model, val_loader, device)
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


def predict(model: nn.Module, dataset_or_array: Dataset | np.ndarray | torch.Tensor, batch_size: int = 256) -> np.ndarray:
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
