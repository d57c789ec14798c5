"""`best_params`: an Optuna study as of D, resumable in relational storage, trials in MLflow."""

from dagster import AssetExecutionContext, MetadataValue, asset

from stock_assets.defs.plots import line_plot, markdown_image
from stock_assets.defs.training.config import SearchConfig
from stock_assets.partitions import trading_day_partitions
from stock_assets.resources.model_registry import ModelRegistryResource
from stock_assets.resources.optuna_storage import OptunaStorageResource


@asset(partitions_def=trading_day_partitions, group_name="training", io_manager_key="object_io_manager", kinds={"optuna"})
def best_params(
    context: AssetExecutionContext,
    config: SearchConfig,
    scaled_sets: dict,
    model_registry: ModelRegistryResource,
    optuna_storage: OptunaStorageResource,
) -> dict:
    """The best hyperparameters of a seeded, pruned Optuna study on the validation split of D's
    training sets (the holdout is never seen). Re-running resumes the same study."""
    from stock_assets.lib.search import run_study, study_summary

    partition = context.partition_key
    study_name = f"{model_registry.model_name}-{partition}"
    with model_registry.dagster_run(context.run_id, partition, context.job_name) as parent_run_id:
        mlflow = model_registry.activate()
        client, experiment_id = model_registry.client(), model_registry.experiment_id()

        def log_trial(trial) -> None:
            """Each trial as a nested MLflow run (client API: no global active-run state)."""
            tags = {"mlflow.parentRunId": parent_run_id, "optuna_study": study_name, "optuna_state": trial.state.name}
            run = client.create_run(experiment_id, run_name=f"trial-{trial.number}", tags=tags)
            for name, value in trial.params.items():
                client.log_param(run.info.run_id, name, value)
            for step, value in sorted(trial.intermediate_values.items()):
                client.log_metric(run.info.run_id, "val_loss", value, step=step)
            if trial.value is not None:
                client.log_metric(run.info.run_id, "best_val_loss", trial.value)
            client.set_terminated(run.info.run_id, "FINISHED")

        study = run_study(scaled_sets, config.space(), config.budget(), optuna_storage.url, study_name, on_trial=log_trial)
        summary = study_summary(study)
        mlflow.log_params({f"search_{k}": v for k, v in summary.items() if k != "study_name"})
    values = [t.value for t in study.trials if t.value is not None]
    best_so_far = [min(values[: i + 1]) for i in range(len(values))]
    plot = line_plot({"trial val loss": values, "best so far": best_so_far}, study_name, "completed trial", "validation MSE")
    context.add_output_metadata(
        {
            **{k: v for k, v in summary.items()},
            "pruned_share": round(summary["n_pruned"] / max(summary["n_trials"], 1), 3),
            "best_params": MetadataValue.json(study.best_params),
            "trials": MetadataValue.md(study.trials_dataframe(attrs=("number", "value", "state", "params")).to_markdown(index=False)),
            "search_plot": markdown_image(plot, "Optuna trials"),
            "mlflow_run": model_registry.run_url(parent_run_id),
        }
    )
    return {"params": study.best_params, "summary": summary, "partition": partition}
