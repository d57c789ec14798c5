"""An exported LSTM as a forecaster of the next session's log-return quantiles (imports torch)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stock_assets.lib.contracts import Preprocessing
from stock_assets.lib.datasets import apply_scaler, cut_windows


class PointModelError(ValueError):
    """A model from an earlier release predicts one value, not quantiles: it cannot serve a distribution."""


@dataclass(frozen=True)
class NetworkForecaster:
    """The program predicts scaled quantiles (n, tickers, levels); its own scaler maps them back to
    log returns (an increasing affine map per ticker, so quantiles keep their order) and the
    validation-calibrated shrinkage moves the whole distribution so its median shrinks toward
    persistence's (docs/decisions.md, "Shrinkage and a fair chance for the LSTMs")."""

    program: object
    preprocessing: Preprocessing

    @property
    def kind(self) -> str:
        return self.preprocessing.kind

    @property
    def levels(self) -> tuple[float, ...]:
        return self.preprocessing.levels

    def forecast(self, features: np.ndarray, close, ends) -> np.ndarray:
        from stock_assets.lib.fitting import predict

        preprocessing = self.preprocessing
        if not preprocessing.levels:
            raise PointModelError(
                f"{preprocessing.kind} model trained through {preprocessing.trained_through} predicts a point, "
                "not quantiles: it was made by an earlier release. Run `make clean` (or retrain: launch "
                "retraining_job) before serving."
            )
        scaled = apply_scaler(features, preprocessing.scaler)
        raw = predict(
            self.program, cut_windows(scaled, ends, int(preprocessing.sequence_length))
        )  # (n, tickers, levels)
        mean = np.asarray(preprocessing.scaler["target_mean"], dtype=np.float64)[None, :, None]
        std = np.asarray(preprocessing.scaler["target_std"], dtype=np.float64)[None, :, None]
        quantiles = raw * std + mean
        median = quantiles[..., list(preprocessing.levels).index(0.5)]
        return quantiles - ((1.0 - float(preprocessing.shrinkage)) * median)[..., None]
