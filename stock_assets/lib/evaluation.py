"""Training sets as of a date, and scoring any model on the same holdout sessions.

The gate re-scores candidate, champion and persistence with `score_on_sessions`, each model
through its own preprocessing (scaler numbers, sequence length), on identical target sessions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from stock_assets.lib.datasets import (
    apply_scaler,
    build_panel,
    chronological_split,
    fit_scaler,
    next_session_log_returns,
    predicted_close,
    scale_targets,
    unscale_predictions,
)
from stock_assets.lib.metrics import persistence_forecast, price_forecast_metrics, skill_vs_persistence

VALIDATION_FRACTION = 0.15
HOLDOUT_FRACTION = 0.15


def build_training_sets(
    features: pd.DataFrame,
    prices: pd.DataFrame,
    tickers: list[str],
    feature_columns: list[str],
    training_window: int,
    max_sequence_length: int,
    scaler: dict | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """(scaler, arrays) for the last `training_window` complete sessions.

    The split's embargo uses the longest sequence length the search may pick, so a window of any
    searched length stays inside its part. Pass the stored `scaler` to reuse it (it must have been
    fitted on the same training rows); otherwise it is fitted on the train part. Arrays are
    compact: windows are cut on demand.
    """
    panel = build_panel(features, prices, tickers, feature_columns, min_sessions=2)
    if panel.n_sessions > training_window:
        keep = slice(panel.n_sessions - training_window, None)
        panel = type(panel)(panel.dates[keep], panel.tickers, panel.feature_columns, panel.features[keep], panel.close[keep])
    split = chronological_split(panel.n_sessions, max_sequence_length, VALIDATION_FRACTION, HOLDOUT_FRACTION)
    fitted = fit_scaler(panel, split, max_sequence_length)
    if scaler is not None and (scaler["fitted_sessions"] != fitted["fitted_sessions"] or scaler["tickers"] != fitted["tickers"]):
        raise ValueError(
            f"stored scalers were fitted on {scaler['fitted_sessions']} for {scaler['tickers']}, but this dataset's "
            f"train part is {fitted['fitted_sessions']} for {fitted['tickers']}: re-materialize scalers for this partition"
        )
    scaler = scaler or fitted
    targets = next_session_log_returns(panel.close)
    arrays = {
        "dates": np.asarray(panel.dates),
        "tickers": np.asarray(panel.tickers),
        "feature_columns": np.asarray(panel.feature_columns),
        "features": panel.features,
        "scaled_features": apply_scaler(panel.features, scaler),
        "close": panel.close,
        "scaled_targets": scale_targets(targets, scaler),
        "train": split.train,
        "validation": split.validation,
        "holdout": split.holdout,
        "max_sequence_length": np.asarray(max_sequence_length),
    }
    return scaler, arrays


def part_dates(arrays: dict[str, np.ndarray], part: str) -> dict[str, str]:
    """First/last window-end session of a part and its sample count (for metadata)."""
    ends = arrays[part]
    return {"first": str(arrays["dates"][ends[0]]), "last": str(arrays["dates"][ends[-1]]), "samples": int(len(ends))}


def windows(scaled: np.ndarray, ends: np.ndarray, sequence_length: int) -> np.ndarray:
    """Stacked windows (len(ends), seq, T, F) for scoring; training uses WindowDataset instead."""
    offsets = np.arange(-sequence_length + 1, 1)
    return np.ascontiguousarray(scaled[np.asarray(ends)[:, None] + offsets], dtype=np.float32)


def predict_log_returns(model, preprocessing: dict, arrays: dict[str, np.ndarray], ends: np.ndarray) -> np.ndarray:
    """Log-return forecasts for the sessions after `ends`, through the model's own preprocessing."""
    from stock_assets.lib.training import predict

    tickers = [str(t) for t in arrays["tickers"]]
    if list(preprocessing["tickers"]) != tickers or list(preprocessing["feature_columns"]) != [
        str(c) for c in arrays["feature_columns"]
    ]:
        raise ValueError(
            f"model expects tickers {preprocessing['tickers']} and {len(preprocessing['feature_columns'])} features; "
            f"the dataset has {tickers} and {len(arrays['feature_columns'])}"
        )
    scaled = apply_scaler(arrays["features"], preprocessing["scaler"])
    x = windows(scaled, ends, int(preprocessing["sequence_length"]))
    return unscale_predictions(predict(model, x), preprocessing["scaler"])


def score_on_sessions(log_returns: np.ndarray | None, arrays: dict[str, np.ndarray], ends: np.ndarray) -> dict:
    """Price metrics of a forecast (None = persistence) for targets at ends+1."""
    close = arrays["close"]
    last, actual = close[ends], close[ends + 1]
    forecast = persistence_forecast(last) if log_returns is None else predicted_close(last, log_returns)
    return price_forecast_metrics(actual, forecast, last)


def gate_decision(
    candidate: dict, champion: dict | None, persistence: dict, max_ratio: float, min_improvement: float = 0.0
) -> tuple[bool, str]:
    """SPEC §9: better than the champion (by `min_improvement`, relative) and within `max_ratio` x
    persistence MAE."""
    reasons = []
    if not np.isfinite(candidate["mae"]):
        reasons.append("candidate MAE is not finite")
    if champion is not None and not candidate["mae"] < (1 - min_improvement) * champion["mae"]:
        reasons.append(
            f"candidate MAE {candidate['mae']:.4f} is not below champion MAE {champion['mae']:.4f}"
            + (f" by {min_improvement:.2%}" if min_improvement else "")
        )
    bound = max_ratio * persistence["mae"]
    if not candidate["mae"] <= bound:
        reasons.append(
            f"candidate MAE {candidate['mae']:.4f} exceeds {max_ratio:g} x persistence MAE {persistence['mae']:.4f} = {bound:.4f}"
        )
    skill = skill_vs_persistence(candidate["mae"], persistence["mae"])
    summary = f"candidate MAE {candidate['mae']:.4f}, " + (
        f"champion MAE {champion['mae']:.4f}, " if champion is not None else "no champion yet, "
    ) + f"persistence MAE {persistence['mae']:.4f} (skill {skill:+.3f})"
    return (not reasons), summary + ("" if not reasons else ": " + "; ".join(reasons))
