"""Scoring predictions against what happened, rolling aggregates, and the retraining rule (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stock_assets.lib.metrics import pointwise_errors, price_forecast_metrics

TEXT_COLUMNS = ["target_date", "ticker", "prediction_date", "model_version", "model_run_id"]
NUMBER_COLUMNS = ["last_close", "predicted_close", "actual_close", "abs_error", "abs_pct_error", "squared_error", "direction_hit"]
LOG_COLUMNS = [*TEXT_COLUMNS[:3], *NUMBER_COLUMNS, *TEXT_COLUMNS[3:]]


def empty_log() -> pd.DataFrame:
    """A typed empty log, so a first empty partition still creates numeric columns."""
    columns = {c: pd.Series(dtype=object) for c in TEXT_COLUMNS} | {c: pd.Series(dtype=float) for c in NUMBER_COLUMNS}
    return pd.DataFrame(columns)[LOG_COLUMNS]


def score_predictions(predictions: pd.DataFrame, actual: pd.DataFrame, target_date: str) -> pd.DataFrame:
    """One row per prediction whose target session is `target_date`, with its errors.

    `actual` holds raw_prices rows (date, ticker, adj_close); the direction is judged from the
    same last close the prediction started from.
    """
    if len(predictions) == 0:
        return empty_log()
    due = predictions[predictions["target_date"] == target_date]
    if len(due) == 0:
        return empty_log()
    merged = due.merge(
        actual.loc[actual["date"] == target_date, ["ticker", "adj_close"]].rename(columns={"adj_close": "actual_close"}),
        on="ticker",
        how="inner",
    )
    errors = pointwise_errors(merged["actual_close"], merged["predicted_close"], merged["last_close"])
    for name, values in errors.items():
        merged[name] = values
    return merged[LOG_COLUMNS].sort_values("ticker").reset_index(drop=True)


def rolling_metrics(log: pd.DataFrame) -> dict[str, float]:
    """MAE, RMSE, MAPE, directional accuracy and sample count over all rows given."""
    if len(log) == 0:
        return price_forecast_metrics(np.array([]), np.array([]), np.array([]))
    return price_forecast_metrics(log["actual_close"], log["predicted_close"], log["last_close"])


@dataclass(frozen=True)
class RetrainRule:
    mape_max: float
    direction_accuracy_min: float
    min_samples: int

    def breach(self, metrics: dict) -> str | None:
        """Why performance counts as degraded, or None (too few samples is never a breach)."""
        if metrics.get("n", 0) < self.min_samples:
            return None
        reasons = []
        if metrics["mape"] > self.mape_max:
            reasons.append(f"rolling MAPE {metrics['mape']:.4f} > {self.mape_max}")
        if metrics["directional_accuracy"] < self.direction_accuracy_min:
            reasons.append(f"rolling directional accuracy {metrics['directional_accuracy']:.3f} < {self.direction_accuracy_min}")
        return "; ".join(reasons) or None
