"""Registering baselines as champions: the bootstrap before any retraining and the fallback when
the champion is worse than persistence (docs/decisions.md, "Baselines are champions")."""

from __future__ import annotations

import numpy as np
from dagster import Failure

from stock_assets.lib import trading_calendar
from stock_assets.lib.contracts import ModelRef, Preprocessing, Promotion
from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.resources.model_registry import ModelRegistryResource


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
    from stock_assets.lib.baselines import ConstantForecast

    model = ConstantForecast(np.asarray(log_returns, dtype=np.float64))
    preprocessing = Preprocessing.identity(kind, tickers, FEATURE_COLUMNS, day)
    example = np.zeros((2, 1, len(tickers), len(FEATURE_COLUMNS)), dtype=np.float32)
    mlflow = model_registry.configured_mlflow()
    with mlflow.start_run(nested=True, run_name=f"{kind}-{day}"):
        if metrics:
            mlflow.log_metrics(metrics)
        return model_registry.log_model(model, preprocessing, example, day, dagster_run_id, metrics=metrics)


def promote_better_baseline(context, day: str, basket, warehouse, model_registry, training_window: int) -> ModelRef:
    """Register persistence and drift fitted on the training window ending at `day` and promote the
    one with the lower MAE on the window's last 15% (drift fitted on the rest), so predictions never
    wait for a first retraining."""
    from stock_assets.lib.baselines import BASELINES, baseline_log_returns
    from stock_assets.lib.datasets import HOLDOUT_FRACTION, predicted_close
    from stock_assets.lib.metrics import pointwise_errors

    first = basket.clip(trading_calendar.offset_session(day, -(training_window - 1)).isoformat())
    prices = warehouse.get().read_range("raw_prices", "date", first, day)
    tickers = list(basket.tickers)
    close = prices.pivot(index="date", columns="ticker", values="adj_close").reindex(columns=tickers).dropna()
    if len(close) < 20:
        raise Failure(description=f"only {len(close)} sessions of prices up to {day}: backfill raw_prices first")
    values = close.to_numpy(dtype=np.float64)
    split = len(values) - max(2, int(len(values) * HOLDOUT_FRACTION))
    last, actual = values[split - 1 : -1], values[split:]

    def relative_mae(kind: str) -> float:
        """MAE relative to the last close (scale-free across tickers) of `kind` fitted before `split`."""
        forecast = predicted_close(last, baseline_log_returns(kind, values[:split]))
        return float(np.mean(pointwise_errors(actual, forecast, last)["abs_error"] / last))

    maes = {kind: relative_mae(kind) for kind in BASELINES}
    with model_registry.mlflow_run_for(context.run_id, day, context.job_name):
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
        f"(relative MAE on the last {len(actual)} sessions: " + ", ".join(f"{k} {v:.5f}" for k, v in maes.items()) + ")"
    )
    return model_registry.champion_as_of(day)


def fall_back_to_persistence(context, day: str, tickers: list[str], model_registry) -> Promotion:
    """Register persistence for `day` and promote it: the champion lost to the naive forecast and
    no candidate beat it, so the naive forecast serves until one does."""
    from stock_assets.lib.baselines import PERSISTENCE

    with model_registry.mlflow_run_for(context.run_id, day, context.job_name):
        ref = register_constant_model(model_registry, PERSISTENCE, np.zeros(len(tickers)), tickers, day, context.run_id)
    return model_registry.promote(ref.version, day, context.run_id)
