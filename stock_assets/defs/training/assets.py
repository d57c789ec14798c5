"""The training group as of partition D: `scalers` and `scaled_sets` (computed once), `best_params`
(Optuna), `candidate_model` (trained, logged, registered as challenger) and `production_model`
(promoted only behind the gate)."""

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetObservation,
    AssetOut,
    AssetsDefinition,
    Failure,
    MetadataValue,
    Output,
    PartitionsDefinition,
    asset,
    multi_asset,
)

from stock_assets.defs.champions import DECISION_TAG, fall_back_to_baseline, run_started_at
from stock_assets.defs.lookback import SessionLookback
from stock_assets.defs.plots import calibration_chart_png, fan_chart_png, line_plot, markdown_image
from stock_assets.defs.training.config import build_training_configs
from stock_assets.lib.contracts import (
    CandidateModel,
    GateMetadata,
    PartBounds,
    Preprocessing,
    ProductionModel,
    TrainingSetIndex,
)
from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.model_registry import CHALLENGER, ModelRegistryResource
from stock_assets.resources.optuna_storage import OptunaStorageResource
from stock_assets.resources.warehouse import WarehouseResource
from stock_assets.settings import Settings

UPSTREAM = (AssetKey("processed_features"), AssetKey("raw_prices"))


def build_training_assets(settings: Settings, partitions: PartitionsDefinition) -> list[AssetsDefinition]:
    configs = build_training_configs(settings.training)
    DatasetConfig, SearchConfig, FitConfig = configs.dataset, configs.search, configs.fit
    max_seq = max(settings.training.sequence_lengths)
    window = settings.training.training_window
    forecast = settings.forecast

    @multi_asset(
        partitions_def=partitions,
        group_name="training",
        ins={name: AssetIn(partition_mapping=SessionLookback(window)) for name in ("processed_features", "raw_prices")},
        outs={
            "scalers": AssetOut(
                io_manager_key="object_io_manager",
                kinds={"json"},
                description="Per-ticker, per-feature mean/std (and target mean/std) fitted on the train part of "
                "the training window ending at D, stored as plain JSON numbers.",
            ),
            "scaled_sets": AssetOut(
                io_manager_key="object_io_manager",
                kinds={"numpy"},
                description="Train / validation / holdout in compact form: one scaled panel, its closes and "
                "targets, and the window-end indices of each part (embargoed by the longest searched sequence "
                "length). Windows are cut on demand, never stored stacked.",
            ),
        },
        internal_asset_deps={"scalers": set(UPSTREAM), "scaled_sets": {*UPSTREAM, AssetKey("scalers")}},
    )
    def training_datasets(
        context: AssetExecutionContext,
        config: DatasetConfig,
        processed_features: pd.DataFrame,
        raw_prices: pd.DataFrame,
        basket: BasketResource,
    ):
        from stock_assets.lib.datasets import build_training_sets

        scaler, arrays = build_training_sets(
            processed_features, raw_prices, list(basket.tickers), FEATURE_COLUMNS, config.training_window, max_seq
        )
        arrays["levels"] = np.asarray(forecast.quantiles, dtype=np.float64)  # what the networks learn to predict
        index = TrainingSetIndex(
            first_session=str(arrays["dates"][0]),
            last_session=str(arrays["dates"][-1]),
            sessions=len(arrays["dates"]),
            tickers=tuple(scaler["tickers"]),
            feature_columns=tuple(scaler["feature_columns"]),
            embargo_sessions=max_seq,
            **{part: PartBounds.from_dict(bounds) for part, bounds in scaler["parts"].items()},
        )
        parts = MetadataValue.json({part: bounds.to_dict() for part, bounds in index.parts.items()})
        context.add_output_metadata(
            {
                "fitted_on": f"{scaler['fitted_sessions']['first']}..{scaler['fitted_sessions']['last']}",
                "tickers": ", ".join(index.tickers),
                "features": len(index.feature_columns),
                "parts": parts,
            },
            output_name="scalers",
        )
        context.add_output_metadata(
            {
                "sessions": index.sessions,
                "first_session": index.first_session,
                "last_session": index.last_session,
                "embargo_sessions": index.embargo_sessions,
                **{f"{part}_samples": bounds.samples for part, bounds in index.parts.items()},
                "parts": parts,
                "stored_mb": round(sum(a.nbytes for a in arrays.values()) / 1e6, 2),
            },
            output_name="scaled_sets",
        )
        return scaler, arrays

    @asset(partitions_def=partitions, group_name="training", io_manager_key="object_io_manager", kinds={"optuna"})
    def best_params(
        context: AssetExecutionContext,
        config: SearchConfig,
        scaled_sets: dict,
        model_registry: ModelRegistryResource,
        optuna_storage: OptunaStorageResource,
    ) -> dict:
        """The best hyperparameters of a seeded, pruned Optuna study on the validation split of D's
        training sets (the holdout is never seen). Re-running resumes the same study."""
        return search_best_params(context, config, scaled_sets, model_registry, optuna_storage)

    @asset(
        partitions_def=partitions,
        group_name="training",
        io_manager_key="object_io_manager",
        kinds={"pytorch", "mlflow"},
    )
    def candidate_model(
        context: AssetExecutionContext,
        config: FitConfig,
        scaled_sets: dict,
        scalers: dict,
        best_params: dict,
        model_registry: ModelRegistryResource,
    ) -> CandidateModel:
        """A multi-ticker LSTM fitted as of D with the best params (early-stopped on validation, best
        weights restored), scored on the holdout, logged to MLflow as an exported (pt2) program with
        its preprocessing beside it, registered and aliased `challenger`. Promotion is not its job."""
        return fit_candidate(context, config, scaled_sets, scalers, best_params, model_registry, forecast.ewma_lambda)

    @asset(
        partitions_def=partitions,
        group_name="training",
        io_manager_key="object_io_manager",
        kinds={"mlflow"},
        output_required=False,
    )
    def production_model(
        context: AssetExecutionContext,
        candidate_model: CandidateModel,
        model_registry: ModelRegistryResource,
        basket: BasketResource,
        warehouse: WarehouseResource,
    ):
        """The promotion made as of D: alias `champion` moved to the candidate that passed the gate, or
        to the best baseline when the gate found the champion worse than it. Not materialized when the
        gate rejected the candidate and the champion holds; refuses without an evaluation of it."""
        yield from promote_candidate(context, candidate_model, model_registry, basket, warehouse, settings)

    return [training_datasets, best_params, candidate_model, production_model]


def search_best_params(context, config, scaled_sets: dict, model_registry, optuna_storage) -> dict:
    from stock_assets.lib.search import run_study, study_summary

    partition = context.partition_key
    study_name = f"{model_registry.model_name}-{partition}"  # or with a fingerprint: lib/search.open_study
    with model_registry.mlflow_run_for(context.run_id, partition, context.job_name, context.instance) as parent_run_id:
        mlflow = model_registry.configured_mlflow()
        client, experiment_id = model_registry.client(), model_registry.experiment_id()

        def log_trial(used_study: str, trial) -> None:
            """Each trial as a nested MLflow run (client API: no global active-run state). With several
            search workers `run_study` calls this after they finished, in trial-number order: the
            workers never log to MLflow themselves."""
            tags = {"mlflow.parentRunId": parent_run_id, "optuna_study": used_study, "optuna_state": trial.state.name}
            run = client.create_run(experiment_id, run_name=f"trial-{trial.number}", tags=tags)
            for name, value in trial.params.items():
                client.log_param(run.info.run_id, name, value)
            for step, value in sorted(trial.intermediate_values.items()):
                client.log_metric(run.info.run_id, "val_loss", value, step=step)
            if trial.value is not None:
                client.log_metric(run.info.run_id, "best_val_loss", trial.value)
            client.set_terminated(run.info.run_id, "FINISHED")

        study = run_study(
            scaled_sets,
            config.space(),
            config.budget(),
            optuna_storage.url,
            study_name,
            on_trial=log_trial,
            workers=config.search_workers,
        )
        summary = study_summary(study)
        mlflow.log_params({f"search_{k}": v for k, v in summary.items() if k != "study_name"})
        mlflow.log_param("search_workers", config.search_workers)
    values = [t.value for t in study.trials if t.value is not None]
    best_so_far = [min(values[: i + 1]) for i in range(len(values))]
    plot = line_plot(
        {"trial val loss": values, "best so far": best_so_far}, study.study_name, "completed trial", "validation MSE"
    )
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params"))
    context.add_output_metadata(
        {
            **summary,
            "pruned_share": round(summary["n_pruned"] / max(summary["n_trials"], 1), 3),
            "search_workers": config.search_workers,
            "best_params": MetadataValue.json(study.best_params),
            "trials": MetadataValue.md(trials.to_markdown(index=False)),
            "search_plot": markdown_image(plot, "Optuna trials"),
            "mlflow_run": MetadataValue.url(model_registry.run_url(parent_run_id)),
        }
    )
    return {"params": study.best_params, "summary": summary, "partition": partition}


def fit_candidate(
    context, config, scaled_sets: dict, scalers: dict, best_params: dict, model_registry, ewma_lambda: float
) -> CandidateModel:
    from stock_assets.lib.datasets import cut_windows, next_session_log_returns
    from stock_assets.lib.evaluation import point_metrics, score_quantiles
    from stock_assets.lib.fitting import calibrate_shrinkage, choose_device, fit_model
    from stock_assets.lib.forecasters import PERSISTENCE, fit_baseline
    from stock_assets.lib.network_forecaster import NetworkForecaster

    partition = context.partition_key
    params = best_params["params"]
    levels = tuple(float(v) for v in scaled_sets["levels"])
    result = fit_model(scaled_sets, params, max_epochs=config.max_epochs, patience=config.patience, seed=config.seed)
    seq = int(params["sequence_length"])
    preprocessing = Preprocessing(
        kind=params["architecture"],
        tickers=tuple(str(t) for t in scaled_sets["tickers"]),
        feature_columns=tuple(str(c) for c in scaled_sets["feature_columns"]),
        sequence_length=seq,
        scaler=scalers,
        trained_through=partition,
        levels=levels,
    )
    # Shrink the median towards persistence on validation: a network without signal in the level
    # collapses to the baseline's median (docs/decisions.md, "Shrinkage and a fair chance for the LSTMs").
    validation = scaled_sets["validation"]
    realised = next_session_log_returns(scaled_sets["close"])[validation]
    unshrunk = NetworkForecaster(result.model, preprocessing).forecast(scaled_sets["features"], None, validation)
    shrinkage = calibrate_shrinkage(unshrunk[..., levels.index(0.5)], realised)
    preprocessing = preprocessing.with_shrinkage(shrinkage)
    holdout = scaled_sets["holdout"]
    quantiles = NetworkForecaster(result.model, preprocessing).forecast(scaled_sets["features"], None, holdout)
    train_end = int(scaled_sets["train"].max()) + 1
    baseline = fit_baseline(
        PERSISTENCE, scaled_sets["close"][: train_end + 1], preprocessing.tickers, levels, ewma_lambda, partition
    )
    baseline_quantiles = baseline.forecast(None, scaled_sets["close"], holdout)
    scores, baseline_scores = (
        score_quantiles(q, scaled_sets, holdout, levels) for q in (quantiles, baseline_quantiles)
    )
    metrics = {**point_metrics(quantiles, scaled_sets, holdout, levels), "pinball": float(np.nanmean(scores.pinball))}
    persistence = {
        **point_metrics(None, scaled_sets, holdout, levels),
        "pinball": float(np.nanmean(baseline_scores.pinball)),  # persistence's median with the EWMA spread
    }
    losses = {"train": [h["train_loss"] for h in result.history], "validation": [h["val_loss"] for h in result.history]}
    curve = line_plot(losses, f"candidate {partition}", "epoch", "validation pinball loss (scaled)")

    with model_registry.mlflow_run_for(context.run_id, partition, context.job_name, context.instance) as run_id:
        mlflow = model_registry.configured_mlflow()
        mlflow.log_params({**params, "trained_through": partition, "device": str(choose_device()), "seed": config.seed})
        for h in result.history:
            mlflow.log_metrics({"train_loss": h["train_loss"], "epoch_val_loss": h["val_loss"]}, step=h["epoch"])
        mlflow.log_metrics({"val_loss": result.best_val_loss, "best_epoch": result.best_epoch, "shrinkage": shrinkage})
        holdout_metrics = {f"holdout_{k}": float(v) for k, v in metrics.items()}
        persistence_metrics = {
            f"persistence_{k}": float(v) for k, v in persistence.items() if k != "directional_accuracy"
        }
        mlflow.log_metrics({**holdout_metrics, **persistence_metrics})  # the run's table, as before
        rows = holdout_rows(scaled_sets, holdout, levels, quantiles, baseline_quantiles)
        charts = {
            "loss_curve.png": curve,
            "fan_chart.png": fan_chart_png(rows, f"candidate {partition}: holdout forecasts"),
            "calibration.png": calibration_chart_png(rows, f"candidate {partition}: holdout calibration"),
        }
        with tempfile.TemporaryDirectory() as tmp:
            for name, png in charts.items():
                (Path(tmp) / name).write_bytes(png)
                mlflow.log_artifact(str(Path(tmp) / name))
        example = cut_windows(scaled_sets["scaled_features"], holdout[:2], seq)
        # The holdout scores also go against the logged model itself (its model_id).
        ref = model_registry.log_model(
            result.model,
            preprocessing,
            example,
            partition,
            context.run_id,
            metrics={**holdout_metrics, **persistence_metrics},
        )
        model_registry.set_alias(CHALLENGER, ref.version)

    context.add_output_metadata(
        {
            "model": ref.label,
            "mlflow_run": MetadataValue.url(model_registry.run_url(run_id)),
            "mlflow_model_version": MetadataValue.url(model_registry.version_url(ref.version)),
            "holdout_pinball": metrics["pinball"],
            "baseline_pinball": persistence["pinball"],
            "holdout_mae": metrics["mae"],
            "persistence_mae": persistence["mae"],
            "holdout_directional_accuracy": metrics["directional_accuracy"],
            "shrinkage": shrinkage,
            "best_epoch": result.best_epoch,
            "best_val_loss": result.best_val_loss,
            "epochs_run": len(result.history),
            "loss_curve": markdown_image(curve, "loss curve"),
        }
    )
    return CandidateModel(
        ref=ref,
        tickers=preprocessing.tickers,
        params=params,
        shrinkage=shrinkage,
        holdout=metrics,
        persistence=persistence,
        best_epoch=result.best_epoch,
    )


def holdout_rows(scaled_sets: dict, ends, levels, quantiles, baseline_quantiles) -> pd.DataFrame:
    """The holdout forecasts as performance-log-like rows (price quantiles, actual close) for the charts."""
    from stock_assets.lib.distributions import price_quantiles, quantile_column

    close, dates, tickers = scaled_sets["close"], scaled_sets["dates"], [str(t) for t in scaled_sets["tickers"]]
    columns = {}
    for prefix, q in (("", quantiles), ("baseline_", baseline_quantiles)):
        prices = price_quantiles(close[ends], q)  # (sessions, tickers, levels)
        for i, level in enumerate(levels):
            columns[prefix + quantile_column(level)] = prices[..., i].ravel()
    return pd.DataFrame(
        {
            "target_date": np.repeat([str(dates[e + 1]) for e in ends], len(tickers)),
            "ticker": np.tile(tickers, len(ends)),
            "actual_close": close[ends + 1].ravel(),
            **columns,
        }
    )


def promote_candidate(context, candidate_model: CandidateModel, model_registry, basket, warehouse, settings):
    """Move `champion` to the candidate if, and only if, the latest gate evaluation passed for it.

    A rejection by the gate is a normal outcome: nothing is materialized and the run succeeds, unless
    the gate found the champion worse than the best baseline: then that baseline is promoted. With
    no evaluation of this candidate at all (e.g. only this asset selected), promotion is refused.
    """
    partition = context.partition_key
    key = AssetCheckKey(context.asset_key_for_input("candidate_model"), "promotion_gate")
    record = context.instance.get_latest_asset_check_evaluation_record(key)
    evaluation = record.event.asset_check_evaluation if record and record.event else None
    entries = evaluation.metadata if evaluation else {}
    gate = GateMetadata.from_metadata(entries) if GateMetadata.present(entries) else None
    if not (gate and gate.partition == partition and gate.candidate_version == candidate_model.version):
        raise Failure(
            description=f"promotion refused: no promotion_gate evaluation of candidate v{candidate_model.version} "
            f"for {partition}. Run retraining_job for {partition} so the gate evaluates it."
        )
    previous = model_registry.champion_as_of(partition)
    if evaluation.passed:
        promotion = model_registry.promote(
            candidate_model.version, partition, context.run_id, run_started_at=run_started_at(context)
        )
        decision = "promoted" if promotion.version == candidate_model.version else "concurrent-promotion"
    elif gate.fallback_to_persistence:
        promotion = fall_back_to_baseline(
            context, gate.fallback_kind, partition, basket, warehouse, model_registry, settings
        )
        decision = f"{gate.fallback_kind}-took-over"
    else:
        promotion, decision = None, "rejected"
    summary = decision_summary(decision, candidate_model.version, partition, gate.verdict, previous, promotion)
    # The decision where people look: the Runs list (a run tag) and the run log's last word.
    context.instance.add_run_tags(context.run_id, {DECISION_TAG: decision})
    context.log.info(summary)
    if promotion is None:
        # An explained skip: production_model's event history says why nothing was promoted.
        context.log_event(
            AssetObservation(
                asset_key=context.asset_key,
                partition=partition,
                metadata={"decision": decision, "summary": summary, "champion": previous.label if previous else "none"},
            )
        )
        return
    champion = promotion.ref(model_registry.model_name)
    context.add_output_metadata(
        {
            "decision": decision,
            "champion": champion.label,
            "replaced": previous.label if previous else "none (first champion)",
            "gate": gate.verdict,
            "fallback_to_persistence": not evaluation.passed,
            "promotion_history": MetadataValue.json([p.to_dict() for p in model_registry.promotions()]),
        }
    )
    yield Output(ProductionModel(champion, promotion, previous.version if previous else None))


def decision_summary(decision: str, version: str, partition: str, verdict: str, previous, promotion) -> str:
    """One line a user reads at the end of the retraining run."""
    held = f"{previous.label} (promoted for {previous.partition})" if previous else "none"
    if decision == "promoted":
        return f"decision for {partition}: candidate v{version} promoted, replacing {held}. Gate: {verdict}"
    if decision == "rejected":
        return f"decision for {partition}: candidate v{version} rejected, champion {held} stays. Gate: {verdict}"
    if decision == "concurrent-promotion":
        return (
            f"decision for {partition}: candidate v{version} passed, but another run promoted v{promotion.version} "
            f"for {partition} while this one ran; not promoting twice. Gate: {verdict}"
        )
    return (
        f"decision for {partition}: candidate v{version} rejected and the champion {held} lost to the baseline: "
        f"{promotion.kind} baseline v{promotion.version} took over. Gate: {verdict}"
    )
