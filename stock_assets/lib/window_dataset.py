"""Training windows cut on demand from one scaled panel, as a torch `Dataset`."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from stock_assets.lib.datasets import cut_windows


class WindowDataset(Dataset):
    """Windows cut on demand from one scaled (n_sessions, n_tickers, n_features) array.

    Item i is (features[e-seq+1 : e+1], targets[e]) for e = end_indices[i]. Indexing with a list
    of positions returns a whole stacked batch in one gather (what `training` uses).
    """

    def __init__(
        self, scaled_features: np.ndarray, scaled_targets: np.ndarray, end_indices: np.ndarray, sequence_length: int
    ) -> None:
        ends = np.asarray(end_indices, dtype=np.int64)
        if ends.ndim != 1 or len(ends) == 0:
            raise ValueError("end_indices must be a non-empty 1-d array")
        if ends.min() < sequence_length - 1 or ends.max() >= len(scaled_features):
            raise ValueError(f"end indices must lie in [{sequence_length - 1}, {len(scaled_features) - 1}]")
        if not np.isfinite(scaled_targets[ends]).all():
            raise ValueError("some end indices have no finite target (e.g. the last session)")
        self.features = np.ascontiguousarray(scaled_features, dtype=np.float32)  # no copy if already so
        self.targets = np.ascontiguousarray(scaled_targets, dtype=np.float32)
        self.end_indices = ends
        self.sequence_length = int(sequence_length)

    def __len__(self) -> int:
        return len(self.end_indices)

    def __getitem__(self, index: int | list[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        ends = self.end_indices[np.atleast_1d(np.asarray(index, dtype=np.int64))]
        x = torch.from_numpy(cut_windows(self.features, ends, self.sequence_length))
        y = torch.from_numpy(self.targets[ends])
        return (x[0], y[0]) if np.ndim(index) == 0 else (x, y)
