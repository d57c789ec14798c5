"""MLflow tracking and the model registry behind one resource.

One MLflow run per Dagster run: each step finds the run tagged with its Dagster run id (the
convention of dagster-mlflow's `mlflow_tracking`), resumes it, and ends it when the step ends, so
no MLflow run is ever left RUNNING and two Dagster runs never share one. Promotions are recorded
as version tags, so "the champion as of D" is answerable for any past D.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass

from dagster import ConfigurableResource

CHAMPION, CHALLENGER = "champion", "challenger"
PREPROCESSING_FILE = "preprocessing.json"
PIP_REQUIREMENTS = ["torch==2.13.0", "numpy"]


class ModelRegistryUnavailableError(RuntimeError):
    """The MLflow tracking server / registry cannot be reached; the message names it."""


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    run_id: str
    partition: str | None = None
    kind: str | None = None  # "persistence", "drift" or an LSTM architecture

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.kind or 'model'})"

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


class ModelRegistryResource(ConfigurableResource):
    """Where runs, models and aliases live (MLflow tracking + registry URIs from settings/env)."""

    tracking_uri: str
    model_name: str = "stock_lstm"
    experiment_name: str = "stock_assets"
    artifact_location: str | None = None
    http_timeout_seconds: int = 60
    http_max_retries: int = 2

    # --- tracking -------------------------------------------------------------------------
    def activate(self):
        """Point this process's MLflow at our stores (imports mlflow lazily) and return the module."""
        os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in run logs
        # MLflow's defaults (7 retries, backoff up to 120 s) make one call to a dead server take ~4
        # minutes; an explicit MLFLOW_HTTP_REQUEST_* in the environment still wins.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.http_timeout_seconds))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.http_max_retries))
        import mlflow

        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        return mlflow

    def client(self):
        from mlflow import MlflowClient

        self.activate()
        return MlflowClient(self.tracking_uri, self.tracking_uri)

    def experiment_id(self) -> str:
        client = self.client()
        found = client.get_experiment_by_name(self.experiment_name)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(self.experiment_name, artifact_location=self.artifact_location)

    @contextlib.contextmanager
    def dagster_run(self, dagster_run_id: str, partition: str, job_name: str) -> Iterator[str]:
        """Resume (or start) the MLflow run of this Dagster run; end it when the block ends."""
        from mlflow.exceptions import MlflowException

        mlflow = self.activate()
        client = self.client()
        try:
            experiment_id = self.experiment_id()
            runs = client.search_runs(
                [experiment_id],
                filter_string=f"tags.dagster_run_id = '{dagster_run_id}' and tags.stock_assets_role = 'dagster_run'",
                max_results=1,
            )
        except MlflowException as exc:
            detail = str(exc) if len(str(exc)) <= 300 else "..." + str(exc)[-240:]  # the tail names the cause
            raise ModelRegistryUnavailableError(
                f"MLflow tracking server {self.tracking_uri} unreachable or failing ({detail}). Start it or fix "
                f"MLFLOW_TRACKING_URI (settings mlflow_tracking_uri), then rerun {job_name} for {partition}; "
                "nothing was logged, registered or promoted by this step."
            ) from exc
        if mlflow.active_run() is not None:
            mlflow.end_run()
        if runs:
            run = mlflow.start_run(run_id=runs[0].info.run_id)
        else:
            run = mlflow.start_run(
                experiment_id=experiment_id,
                run_name=f"{job_name}-{partition}",
                tags={
                    "dagster_run_id": dagster_run_id,
                    "dagster_partition": partition,
                    "dagster_job": job_name,
                    "stock_assets_role": "dagster_run",
                },
            )
        try:
            yield run.info.run_id
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run(status="FINISHED")

    def log_model(self, model, preprocessing: dict, input_example, partition: str, dagster_run_id: str) -> ModelRef:
        """Log `model` (pt2) with its preprocessing JSON into the active MLflow run and register it.

        LSTMs and baselines go through here alike, so every served model loads the same way."""
        self.activate()
        import mlflow
        import mlflow.pytorch

        mlflow.log_dict(preprocessing, PREPROCESSING_FILE)
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            input_example=input_example,  # batch >= 2 keeps the exported batch dimension dynamic
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=self.model_name,
            serialization_format="pt2",
        )
        version = str(info.registered_model_version)
        client = self.client()
        tags = {
            "trained_for_partition": partition,
            "dagster_run_id": dagster_run_id,
            "model_kind": preprocessing["kind"],
        }
        for key, value in tags.items():
            client.set_model_version_tag(self.model_name, version, key, value)
        run_id = mlflow.active_run().info.run_id
        return ModelRef(self.model_name, version, run_id, partition, preprocessing["kind"])

    def run_url(self, run_id: str) -> str:
        if self.tracking_uri.startswith("http"):
            return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id()}/runs/{run_id}"
        return f"mlflow run {run_id} in {self.tracking_uri} (open with `make mlflow-ui`)"

    # --- registry -------------------------------------------------------------------------
    def alias(self, alias: str) -> ModelRef | None:
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client().get_model_version_by_alias(self.model_name, alias)
        except MlflowException:
            return None
        tags = mv.tags or {}
        return ModelRef(
            self.model_name, str(mv.version), mv.run_id, tags.get("trained_for_partition"), tags.get("model_kind")
        )

    def promotions(self) -> list[dict]:
        """Every promotion recorded on version tags, oldest first."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            versions = client.search_model_versions(f"name = '{self.model_name}'")
        except MlflowException:
            return []
        history = []
        for mv in versions:
            tags = mv.tags or {}
            for entry in json.loads(tags.get("promotion_history", "[]")):
                history.append(
                    {"version": str(mv.version), "run_id": mv.run_id, "kind": tags.get("model_kind"), **entry}
                )
        return sorted(history, key=lambda h: (h["partition"], h["promoted_at"]))

    def champion_as_of(self, partition: str) -> ModelRef | None:
        """The model promoted for the latest partition <= `partition` (never one trained later)."""
        eligible = [h for h in self.promotions() if h["partition"] <= partition]
        if not eligible:
            return None
        last = eligible[-1]
        return ModelRef(self.model_name, str(last["version"]), last["run_id"], last["partition"], last.get("kind"))

    def promote(self, version: str, partition: str, dagster_run_id: str) -> dict:
        """Move alias `champion` to `version` and append the promotion to its tag history."""
        client = self.client()
        mv = client.get_model_version(self.model_name, str(version))
        entry = {
            "partition": partition,
            "promoted_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds"),
            "dagster_run_id": dagster_run_id,
        }
        history = json.loads((mv.tags or {}).get("promotion_history", "[]")) + [entry]
        client.set_model_version_tag(self.model_name, str(version), "promotion_history", json.dumps(history))
        client.set_registered_model_alias(self.model_name, CHAMPION, str(version))
        return entry

    def load(self, ref: ModelRef):
        """The exported (pt2) model and its plain-JSON preprocessing; never unpickles."""
        import mlflow.pytorch

        self.activate()
        model = mlflow.pytorch.load_model(ref.uri)
        local = self.client().download_artifacts(ref.run_id, PREPROCESSING_FILE)
        with open(local) as fh:
            return model, json.load(fh)
