"""Registering baselines as champions: the bootstrap before any retraining and the fallback when
the champion is worse than persistence (docs/decisions.md, "Baselines are champions")."""

from __future__ import annotations

import numpy as np
from dagster import Failure

from stock_assets.lib import trading_calendar
from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.resources.model_registry import ModelRef, ModelRegistryResource


def register_constant_model(
    model_registry: ModelRegistryResource,
    kind: str,
    log_returns: np.ndarray,
    tickers: list[str],
    day: str,
    dagster_run_id: str,
    metrics: dict | None = None,
) -> ModelRef:
    """Log and register a constant log-return forecaster (a baseline, or a drill's biased model) in
    its own MLflow run nested under the Dagster run's; loads and serves exactly like an LSTM."""
    from stock_assets.lib.baselines import ConstantForecast, baseline_preprocessing

    model = ConstantForecast(np.asarray(log_returns, dtype=np.float64))
    pre = baseline_preprocessing(kind, tickers, FEATURE_COLUMNS, day)
    example = np.zeros((2, 1, len(tickers), len(FEATURE_COLUMNS)), dtype=np.float32)
    mlflow = model_registry.activate()
    with mlflow.start_run(nested=True, run_name=f"{kind}-{day}"):
        if metrics:
            mlflow.log_metrics(metrics)
        return model_registry.log_model(model, pre, example, day, dagster_run_id)


def promote_better_baseline(context, day: str, basket, warehouse, model_registry, training_window: int) -> ModelRef:
    """Register persistence and drift fitted on the training window ending at `day` and promote the
    one with the lower MAE on the window's last 15% (drift fitted on the rest), so predictions never
    wait for a first retraining."""
    from stock_assets.lib.baselines import BASELINES, baseline_log_returns
    from stock_assets.lib.datasets import HOLDOUT_FRACTION

    first = basket.clip(trading_calendar.offset_session(day, -(training_window - 1)).isoformat())
    prices = warehouse.get().read_range("raw_prices", "date", first, day)
    tickers = list(basket.tickers)
    close = prices.pivot(index="date", columns="ticker", values="adj_close").reindex(columns=tickers).dropna()
    if len(close) < 20:
        raise Failure(description=f"only {len(close)} sessions of prices up to {day}: backfill raw_prices first")
    values = close.to_numpy(dtype=np.float64)
    split = len(values) - max(2, int(len(values) * HOLDOUT_FRACTION))
    realised = np.diff(np.log(values[split - 1 :]), axis=0)
    maes = {
        kind: float(np.mean(np.abs(np.expm1(realised) - np.expm1(baseline_log_returns(kind, values[:split])))))
        for kind in BASELINES
    }
    with model_registry.dagster_run(context.run_id, day, context.job_name):
        refs = {
            kind: register_constant_model(
                model_registry,
                kind,
                baseline_log_returns(kind, values),
                tickers,
                day,
                context.run_id,
                {"selection_relative_mae": maes[kind]},
            )
            for kind in BASELINES
        }
    best = min(BASELINES, key=lambda kind: (maes[kind], kind != "persistence"))
    model_registry.promote(refs[best].version, day, context.run_id)
    context.log.info(
        f"no champion as of {day}: promoted the {best} baseline {refs[best].label} "
        f"(relative MAE on the last {len(realised)} sessions: "
        + ", ".join(f"{k} {v:.5f}" for k, v in maes.items())
        + ")"
    )
    return model_registry.champion_as_of(day)


def fall_back_to_persistence(context, day: str, tickers: list[str], model_registry) -> ModelRef:
    """Register persistence for `day` and promote it: the champion lost to the naive forecast and
    no candidate beat it, so the naive forecast serves until one does."""
    from stock_assets.lib.baselines import PERSISTENCE

    with model_registry.dagster_run(context.run_id, day, context.job_name):
        ref = register_constant_model(model_registry, PERSISTENCE, np.zeros(len(tickers)), tickers, day, context.run_id)
    model_registry.promote(ref.version, day, context.run_id)
    return ref
