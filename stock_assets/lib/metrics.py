"""Price-forecast scoring shared by the promotion gate and the performance log (docs/decisions.md,
"The promotion gate" and "Degradation detector").

Direction rule: a forecast "hits" when sign(predicted - last_close) == sign(actual - last_close),
both moves measured from the same last close. So a flat actual session counts as a miss unless
the forecast was flat too, and a flat forecast misses every real move.
"""

from __future__ import annotations

import numpy as np


def log_returns(close: np.ndarray) -> np.ndarray:
    """r[t] = log(close[t+1] / close[t]) along the first axis (sessions): the one definition of a
    session's log return, used by the datasets' target, the baselines, the gate and serving."""
    close = np.asarray(close, dtype=np.float64)
    return np.log(close[1:] / close[:-1])


def direction_hits(predicted: np.ndarray, actual: np.ndarray, last: np.ndarray) -> np.ndarray:
    """1.0 where sign(predicted - last) == sign(actual - last), else 0.0 (the module's direction rule)."""
    with np.errstate(invalid="ignore"):
        return (np.sign(predicted - last) == np.sign(actual - last)).astype(np.float64)


def _flat(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    flat = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    sizes = {a.size for a in flat}
    if len(sizes) != 1:
        raise ValueError(f"arrays must have the same number of elements, got sizes {[a.size for a in flat]}")
    keep = np.logical_and.reduce([np.isfinite(a) for a in flat])
    return tuple(a[keep] for a in flat)


def pointwise_errors(
    actual_close: np.ndarray, predicted_close: np.ndarray, last_close: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-forecast errors (same shape as the inputs; NaN where any input is NaN)."""
    actual, predicted, last = (np.asarray(a, dtype=np.float64) for a in (actual_close, predicted_close, last_close))
    error = predicted - actual
    hit = direction_hits(predicted, actual, last)
    with np.errstate(invalid="ignore", divide="ignore"):
        ape = np.abs(error) / np.abs(actual)
    hit[~(np.isfinite(actual) & np.isfinite(predicted) & np.isfinite(last))] = np.nan
    return {"abs_error": np.abs(error), "abs_pct_error": ape, "squared_error": error**2, "direction_hit": hit}


def price_forecast_metrics(
    actual_close: np.ndarray, predicted_close: np.ndarray, last_close: np.ndarray
) -> dict[str, float]:
    """MAE, RMSE, MAPE (a fraction), directional accuracy and n over all finite triples.

    Inputs of any (equal) size are flattened; a triple with any NaN is dropped. n == 0 gives NaN
    metrics rather than an error, so "nothing to score" stays a normal outcome.
    """
    actual, predicted, last = _flat(actual_close, predicted_close, last_close)
    n = int(actual.size)
    if n == 0:
        nan = float("nan")
        return {"mae": nan, "rmse": nan, "mape": nan, "directional_accuracy": nan, "n": 0}
    error = predicted - actual
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mape": float(np.mean(np.abs(error) / np.abs(actual))),
        "directional_accuracy": float(np.mean(direction_hits(predicted, actual, last))),
        "n": n,
    }


def persistence_errors(actual_close: np.ndarray, last_close: np.ndarray) -> dict[str, np.ndarray]:
    """`pointwise_errors` of the naive forecast on the same rows: the one baseline error."""
    return pointwise_errors(actual_close, persistence_forecast(last_close), last_close)


def persistence_forecast(last_close: np.ndarray) -> np.ndarray:
    """The naive baseline: tomorrow's close equals today's."""
    return np.array(last_close, dtype=np.float64, copy=True)


def skill_vs_persistence(model_mae: float, persistence_mae: float) -> float:
    """1 - model_mae / persistence_mae: > 0 beats persistence, 0 ties, < 0 is worse.

    NaN when persistence_mae is not a positive finite number (no meaningful ratio), so any
    comparison against a skill bound is False.
    """
    if not (np.isfinite(persistence_mae) and persistence_mae > 0 and np.isfinite(model_mae)):
        return float("nan")
    return float(1.0 - model_mae / persistence_mae)
