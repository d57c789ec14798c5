"""Scoring predictions against what happened, rolling aggregates, and the retraining rule (pure)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stock_assets.lib.metrics import persistence_errors, pointwise_errors, price_forecast_metrics

TEXT_COLUMNS = [
    "target_date", "ticker", "prediction_date", "model_version", "model_run_id", "model_trained_for", "model_kind",
]  # fmt: skip
NUMBER_COLUMNS = [
    "last_close",
    "predicted_close",
    "actual_close",
    "abs_error",
    "abs_pct_error",
    "squared_error",
    "direction_hit",
    "persistence_abs_error",
]
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
        actual.loc[actual["date"] == target_date, ["ticker", "adj_close"]].rename(
            columns={"adj_close": "actual_close"}
        ),
        on="ticker",
        how="inner",
    )
    errors = pointwise_errors(merged["actual_close"], merged["predicted_close"], merged["last_close"])
    for name, values in errors.items():
        merged[name] = values
    merged["persistence_abs_error"] = persistence_errors(merged["actual_close"], merged["last_close"])["abs_error"]
    return merged[LOG_COLUMNS].sort_values("ticker").reset_index(drop=True)


def rolling_summary(log: pd.DataFrame) -> dict[str, float]:
    """What performance_log shows per partition: the model next to persistence on the same rows."""
    metrics = rolling_metrics(log)
    persistence_mae = float(log["persistence_abs_error"].mean()) if len(log) else float("nan")
    up = (log["actual_close"] > log["last_close"]).mean() if len(log) else float("nan")
    return {
        "rolling_samples": int(metrics["n"]),
        "rolling_mae": float(metrics["mae"]),
        "rolling_persistence_mae": persistence_mae,
        "rolling_mae_ratio": float(metrics["mae"] / persistence_mae) if persistence_mae else float("nan"),
        "rolling_mape": float(metrics["mape"]),
        "rolling_direction_accuracy": float(metrics["directional_accuracy"]),
        "rolling_up_share": float(up),
    }


def champion_session_losses(log: pd.DataFrame, version: str, trained_for: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-session mean absolute error of one champion and of persistence on its rows, oldest first:
    the stream the degradation detector judges (since that champion's promotion)."""
    mine = log[(log["model_version"].astype(str) == str(version)) & (log["model_trained_for"] == trained_for)]
    by_session = mine.groupby("target_date")[["abs_error", "persistence_abs_error"]].mean().sort_index()
    return by_session["abs_error"].to_numpy(), by_session["persistence_abs_error"].to_numpy()


def rolling_metrics(log: pd.DataFrame) -> dict[str, float]:
    """MAE, RMSE, MAPE, directional accuracy and sample count over all rows given."""
    if len(log) == 0:
        return price_forecast_metrics(np.array([]), np.array([]), np.array([]))
    return price_forecast_metrics(log["actual_close"], log["predicted_close"], log["last_close"])


@dataclass(frozen=True)
class AbsoluteGuards:
    """Optional absolute thresholds (off when None). On real daily data a coin flip breaches a
    direction bound most days, so they are guards, never the default rule."""

    mape_max: float | None
    direction_accuracy_min: float | None
    min_samples: int

    def breach(self, samples: int, mape: float, direction_accuracy: float) -> str | None:
        """Why performance counts as degraded, or None (too few samples is never a breach)."""
        if samples < self.min_samples:
            return None
        reasons = []
        if self.mape_max is not None and mape > self.mape_max:
            reasons.append(f"rolling MAPE {mape:.4f} > {self.mape_max}")
        if self.direction_accuracy_min is not None and direction_accuracy < self.direction_accuracy_min:
            reasons.append(f"rolling directional accuracy {direction_accuracy:.3f} < {self.direction_accuracy_min}")
        return "; ".join(reasons) or None


FAMILIES = ("baseline", "LSTM", "drill")


def served_by(kind: str) -> str:
    """The family of a model kind: a baseline, a drill's deliberately degraded model, or an LSTM."""
    if kind in ("persistence", "drift"):
        return "baseline"
    return "drill" if str(kind).startswith("drill") else "LSTM"


def walk_forward_summary(log: pd.DataFrame) -> dict[str, float | str]:
    """The honest scorecard of served forecasts over a replay: skill against persistence on the same
    rows with a Diebold-Mariano p-value (per-session differentials), directional accuracy against the
    share of up moves (what "always up" scores) with a one-sided binomial p-value, and the share of
    sessions each family of model served."""
    from scipy.stats import binomtest

    from stock_assets.lib.significance import diebold_mariano

    if len(log) == 0:
        return {"scored predictions": 0}
    by_session = log.groupby("target_date")[["abs_error", "persistence_abs_error"]].mean()
    dm = diebold_mariano((by_session["abs_error"] - by_session["persistence_abs_error"]).to_numpy())
    # A flat forecast (persistence) calls no direction: judge only rows where both moved.
    moved = log[(log["actual_close"] != log["last_close"]) & (log["predicted_close"] != log["last_close"])]
    hits = int(moved["direction_hit"].sum())
    up_share = float((log["actual_close"] > log["last_close"]).mean())
    p_value = binomtest(hits, len(moved), max(up_share, 1e-9), alternative="greater").pvalue if len(moved) else 1.0
    served = log.groupby("target_date")["model_kind"].first().map(served_by).value_counts(normalize=True)
    return {
        "scored sessions": len(by_session),
        "scored predictions": len(log),
        "model MAE / persistence MAE": round(float(log["abs_error"].mean() / log["persistence_abs_error"].mean()), 4),
        "p-value (model MAE < persistence)": round(float(dm.p_value), 4),
        "directional accuracy": f"{hits / len(moved):.4f} over {len(moved)} directional forecasts"
        if len(moved)
        else "n/a (flat forecasts call no direction)",
        "up-share (always-up accuracy)": round(up_share, 4),
        "p-value (accuracy > up-share)": round(float(p_value), 4),
        **{f"sessions served by {family}": f"{served.get(family, 0.0):.0%}" for family in FAMILIES},
    }
