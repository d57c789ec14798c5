"""Registering baselines as champions: the first champion before any retraining and the fallback
when the champion loses to the best baseline (docs/decisions.md, "Baselines are champions").

Baselines are distributions (lib/forecasters.py): persistence's median with an EWMA volatility and
a shape fitted on the training window, or a GARCH(1,1)-t; registered and served like an LSTM."""

from __future__ import annotations

import numpy as np
from dagster import Failure

from stock_assets.lib import trading_calendar
from stock_assets.lib.contracts import ModelRef, Promotion
from stock_assets.lib.forecasters import FIRST_CHAMPION, BaselineForecaster, fit_baseline
from stock_assets.resources.model_registry import ModelRegistryResource


def register_baseline(
    model_registry: ModelRegistryResource,
    forecaster: BaselineForecaster,
    day: str,
    dagster_run_id: str,
    metrics: dict | None = None,
) -> ModelRef:
    """Log and register a baseline forecaster (or a drill's deliberately biased one) in its own MLflow
    run nested under the Dagster run's; it loads and serves exactly like an LSTM."""
    mlflow = model_registry.configured_mlflow()
    with mlflow.start_run(nested=True, run_name=f"{forecaster.kind}-{day}"):
        mlflow.log_params({"kind": forecaster.kind, "ewma_lambda": forecaster.ewma_lambda, "trained_through": day})
        if metrics:
            mlflow.log_metrics(metrics)
        return model_registry.log_baseline(forecaster, day, dagster_run_id, metrics=metrics)


def training_closes(day: str, basket, warehouse, training_window: int) -> np.ndarray:
    """(sessions, tickers) adjusted closes of the training window ending at `day`, complete rows only."""
    first = basket.clip(trading_calendar.offset_session(day, -(training_window - 1)).isoformat())
    prices = warehouse.get().read_range("raw_prices", "date", first, day)
    close = prices.pivot(index="date", columns="ticker", values="adj_close").reindex(columns=list(basket.tickers))
    close = close.dropna()
    if len(close) < 40:
        raise Failure(description=f"only {len(close)} sessions of prices up to {day}: backfill raw_prices first")
    return close.to_numpy(dtype=np.float64)


DECISION_TAG = "stock_assets/decision"  # promoted | rejected | <baseline>-took-over, on each retraining run


def kept_since(instance, promoted_for: str, day: str) -> str:
    """The latest partition in (promoted_for, day] whose retraining the gate rejected, keeping the
    champion promoted for `promoted_for`; else `promoted_for`. The guard's loss rule, the detector
    and the coverage alarm judge only the champion's sessions after it: a retraining answers the
    alarm that asked for it (docs/decisions.md, "Degradation detector")."""
    from dagster import RunsFilter

    runs = instance.get_runs(RunsFilter(job_name="retraining_job", tags={DECISION_TAG: "rejected"}), limit=200)
    kept = [p for r in runs if promoted_for < (p := r.tags.get("dagster/partition", "")) <= day]
    return max(kept, default=promoted_for)


def run_started_at(context) -> str | None:
    """The Dagster run's start (ISO UTC): promotions recorded by other runs after it are concurrent."""
    import datetime as dt

    record = context.instance.get_run_record_by_id(context.run_id)
    started = record.start_time if record is not None else None
    if started is None:
        return None
    return dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="microseconds")


def promote_first_champion(context, day: str, basket, warehouse, model_registry, settings) -> ModelRef:
    """Register the persistence-EWMA baseline fitted on the training window ending at `day` and
    promote it, so predictions never wait for a first retraining. Any other model (drift, GARCH, an
    LSTM) takes over only through the promotion gate's significance test.

    Two first runs at once register one baseline between them: the run whose promotion was not the
    first withdraws it and deletes the version it registered (docs/decisions.md, "The registry tells
    the truth")."""
    close = training_closes(day, basket, warehouse, settings.training.training_window)
    forecast = settings.forecast
    baseline = fit_baseline(FIRST_CHAMPION, close, basket.tickers, forecast.quantiles, forecast.ewma_lambda, day)
    started = run_started_at(context)
    with model_registry.mlflow_run_for(context.run_id, day, context.job_name, context.instance):
        ref = register_baseline(model_registry, baseline, day, context.run_id)
    standing = model_registry.promote(ref.version, day, context.run_id, run_started_at=started)
    if standing.version != ref.version:
        model_registry.client().delete_model_version(model_registry.model_name, ref.version)
        context.log.info(
            f"another run promoted the first champion v{standing.version} for {day}; v{ref.version} removed"
        )
    else:
        context.log.info(f"no champion as of {day}: promoted the persistence-EWMA baseline {ref.label}")
    return model_registry.champion_as_of(day)


def fall_back_to_baseline(context, kind: str, day: str, basket, warehouse, model_registry, settings) -> Promotion:
    """Register the `kind` baseline fitted on the training window ending at `day` and promote it: the
    champion lost to it and no candidate beat it, so the baseline serves until one does."""
    close = training_closes(day, basket, warehouse, settings.training.training_window)
    forecast = settings.forecast
    baseline = fit_baseline(kind, close, basket.tickers, forecast.quantiles, forecast.ewma_lambda, day)
    with model_registry.mlflow_run_for(context.run_id, day, context.job_name, context.instance):
        ref = register_baseline(model_registry, baseline, day, context.run_id)
    return model_registry.promote(ref.version, day, context.run_id, run_started_at=run_started_at(context))
