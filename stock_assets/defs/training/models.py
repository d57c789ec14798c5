"""`candidate_model` (trained, logged, registered as challenger) and `production_model` (promoted
only behind the gate)."""

import json
import tempfile
from pathlib import Path

from dagster import AssetCheckKey, AssetExecutionContext, Failure, MetadataValue, asset

from stock_assets.defs.plots import line_plot, markdown_image
from stock_assets.defs.training.config import FitConfig
from stock_assets.partitions import trading_day_partitions
from stock_assets.resources.model_registry import CHALLENGER, PREPROCESSING_FILE, ModelRegistryResource

PIP_REQUIREMENTS = ["torch==2.13.0", "numpy"]


@asset(partitions_def=trading_day_partitions, group_name="training", io_manager_key="object_io_manager", kinds={"pytorch", "mlflow"})
def candidate_model(
    context: AssetExecutionContext,
    config: FitConfig,
    scaled_sets: dict,
    scalers: dict,
    best_params: dict,
    model_registry: ModelRegistryResource,
) -> dict:
    """A multi-ticker LSTM fitted as of D with the best params (early-stopped on validation, best
    weights restored), scored on the holdout, logged to MLflow as an exported (pt2) program with
    its preprocessing beside it, registered and aliased `challenger`. Promotion is not its job."""
    from stock_assets.lib.evaluation import predict_log_returns, score_on_sessions, windows
    from stock_assets.lib.search import SearchBudget, fit_model
    from stock_assets.lib.training import choose_device

    partition = context.partition_key
    params = best_params["params"]
    budget = SearchBudget(1, 0, config.max_epochs, config.patience, config.seed)
    result = fit_model(scaled_sets, params, budget)
    seq = int(params["sequence_length"])
    preprocessing = {
        "tickers": [str(t) for t in scaled_sets["tickers"]],
        "feature_columns": [str(c) for c in scaled_sets["feature_columns"]],
        "sequence_length": seq,
        "scaler": scalers,
        "trained_through": partition,
        "target": "next-session log return of adj_close",
    }
    holdout = scaled_sets["holdout"]
    metrics = score_on_sessions(predict_log_returns(result.model, preprocessing, scaled_sets, holdout), scaled_sets, holdout)
    persistence = score_on_sessions(None, scaled_sets, holdout)
    curve = line_plot(
        {"train": [h["train_loss"] for h in result.history], "validation": [h["val_loss"] for h in result.history]},
        f"candidate {partition}", "epoch", "MSE (scaled)",
    )  # fmt: skip

    with model_registry.dagster_run(context.run_id, partition, context.job_name) as run_id:
        mlflow = model_registry.activate()
        import mlflow.pytorch

        mlflow.log_params({**params, "trained_through": partition, "device": str(choose_device()), "seed": config.seed})
        for h in result.history:
            mlflow.log_metrics({"train_loss": h["train_loss"], "val_loss": h["val_loss"]}, step=h["epoch"])
        mlflow.log_metrics({f"holdout_{k}": float(v) for k, v in metrics.items()})
        mlflow.log_metrics({f"persistence_{k}": float(v) for k, v in persistence.items()})
        mlflow.log_metric("best_epoch", result.best_epoch)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / PREPROCESSING_FILE).write_text(json.dumps(preprocessing, indent=1))
            (Path(tmp) / "loss_curve.png").write_bytes(curve)
            mlflow.log_artifact(str(Path(tmp) / PREPROCESSING_FILE))
            mlflow.log_artifact(str(Path(tmp) / "loss_curve.png"))
        info = mlflow.pytorch.log_model(
            result.model,
            name="model",
            input_example=windows(scaled_sets["scaled_features"], holdout[:2], seq),  # batch >= 2 keeps it dynamic
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=model_registry.model_name,
            serialization_format="pt2",
        )
        version = str(info.registered_model_version)
        client = model_registry.client()
        client.set_model_version_tag(model_registry.model_name, version, "trained_for_partition", partition)
        client.set_model_version_tag(model_registry.model_name, version, "dagster_run_id", context.run_id)
        client.set_registered_model_alias(model_registry.model_name, CHALLENGER, version)

    context.add_output_metadata(
        {
            "model": f"{model_registry.model_name} v{version}",
            "mlflow_run": model_registry.run_url(run_id),
            "holdout_mae": metrics["mae"],
            "holdout_mape": metrics["mape"],
            "holdout_directional_accuracy": metrics["directional_accuracy"],
            "persistence_mae": persistence["mae"],
            "best_epoch": result.best_epoch,
            "epochs_run": len(result.history),
            "loss_curve": markdown_image(curve, "loss curve"),
        }
    )
    return {
        "name": model_registry.model_name,
        "version": version,
        "run_id": run_id,
        "model_uri": f"models:/{model_registry.model_name}/{version}",
        "partition": partition,
        "params": params,
        "holdout": metrics,
        "persistence": persistence,
        "best_epoch": result.best_epoch,
    }


@asset(partitions_def=trading_day_partitions, group_name="training", io_manager_key="object_io_manager", kinds={"mlflow"})
def production_model(context: AssetExecutionContext, candidate_model: dict, model_registry: ModelRegistryResource) -> dict:
    """The promotion made as of D: alias `champion` moved to the candidate that passed the gate.
    Refuses on its own unless the latest gate evaluation passed for this very candidate."""
    partition = context.partition_key
    key = AssetCheckKey(context.asset_key_for_input("candidate_model"), "promotion_gate")
    record = context.instance.get_latest_asset_check_evaluation_record(key)
    evaluation = record.event.asset_check_evaluation if record and record.event else None
    meta = {k: v.value for k, v in (evaluation.metadata.items() if evaluation else [])}
    if not (evaluation and evaluation.passed and meta.get("partition") == partition and meta.get("candidate_version") == candidate_model["version"]):
        seen = "no evaluation" if not evaluation else f"passed={evaluation.passed} for partition {meta.get('partition')} version {meta.get('candidate_version')}"
        raise Failure(
            description=f"promotion refused: the latest promotion_gate evaluation ({seen}) did not pass for candidate "
            f"v{candidate_model['version']} of {partition}. Run retraining_job for {partition} so the gate evaluates it."
        )
    previous = model_registry.alias("champion")
    entry = model_registry.promote(candidate_model["version"], partition, context.run_id)
    context.add_output_metadata(
        {
            "champion": f"{candidate_model['name']} v{candidate_model['version']}",
            "replaced": f"v{previous.version}" if previous else "none (first champion)",
            "gate": meta.get("summary", ""),
            "promotion_history": MetadataValue.json(model_registry.promotions()),
        }
    )
    return {
        "name": candidate_model["name"],
        "version": candidate_model["version"],
        "run_id": candidate_model["run_id"],
        "replaced_version": previous.version if previous else None,
        "partition": partition,
        **entry,
    }
