"""The naive forecasts as models: persistence (zero log return) and drift (the training window's
mean log return), exportable and registrable exactly like the LSTMs (docs/decisions.md, "Baselines
are champions")."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from stock_assets.lib.metrics import log_returns

PERSISTENCE, DRIFT = "persistence", "drift"
BASELINES = (PERSISTENCE, DRIFT)


class ConstantForecast(nn.Module):
    """Forecasts the same log return per ticker whatever the window holds; the value is a buffer,
    so it is part of the exported program and of nothing else."""

    def __init__(self, log_returns: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("log_returns", torch.as_tensor(np.asarray(log_returns, dtype=np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x[:, -1, :, 0]) + self.log_returns  # (batch, tickers); keeps batch dynamic


def baseline_log_returns(kind: str, close: np.ndarray) -> np.ndarray:
    """Per-ticker forecast of `kind` fitted on the (sessions, tickers) closes given."""
    if kind == PERSISTENCE:
        return np.zeros(close.shape[1])
    if kind == DRIFT:
        return np.nanmean(log_returns(close), axis=0)
    raise ValueError(f"unknown baseline {kind!r}; allowed: {', '.join(BASELINES)}")
