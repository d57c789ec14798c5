"""MLflow tracking and the model registry behind one resource.

One MLflow run per Dagster run: each step finds the run tagged with its Dagster run id (the
convention of dagster-mlflow's `mlflow_tracking`), resumes it, and ends it when the step ends, so
no MLflow run is ever left RUNNING and two Dagster runs never share one. Promotions are recorded
as version tags, so "the champion as of D" is answerable for any past D.

Models are loaded without MLflow's loader and never unpickled (docs/decisions.md, "Never unpickle").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dagster import ConfigurableResource, EnvVar

CHAMPION, CHALLENGER = "champion", "challenger"
PREPROCESSING_FILE = "preprocessing.json"
PIP_REQUIREMENTS = ["torch==2.13.0", "numpy"]
# What `mlflow.pytorch.log_model(serialization_format="pt2")` writes under the model's artifacts:
# the MLmodel file and data/model.pt2. Anything else in data/ was not written by this project.
MLMODEL_FILE = "MLmodel"
PROGRAM_FILE = "model.pt2"


EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


class ModelRegistryUnavailableError(RuntimeError):
    """The MLflow tracking server / registry cannot be reached; the message names it."""


class ModelArtifactError(RuntimeError):
    """A registered model's artifacts are missing, corrupt or not a pickle-free pt2 program; the
    message names the model name and version and what to run instead."""


def masked_uri(uri: str) -> str:
    """`uri` with its password (if any) replaced by ***, for messages and metadata."""
    try:
        parts = urlsplit(uri)
        if not parts.password:
            return uri
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return re.sub(r"//([^:/@]*):[^@/]*@", r"//\1:***@", uri)


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
    def resolved_tracking_uri(self) -> str:
        """The tracking URI, also when the resource is used outside a run (scripts, replays): Dagster
        resolves an `EnvVar` field only when it initialises the resource for a run."""
        uri = self.tracking_uri
        return uri.get_value() if isinstance(uri, EnvVar) else uri

    def activate(self):
        """Point this process's MLflow at our stores (imports mlflow lazily) and return the module."""
        # Our own loader never unpickles whatever this says (`load`); this covers MLflow's other paths.
        os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in run logs
        # MLflow's defaults (7 retries, backoff up to 120 s) make one call to a dead server take ~4
        # minutes; an explicit MLFLOW_HTTP_REQUEST_* in the environment still wins.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.http_timeout_seconds))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.http_max_retries))
        import mlflow

        uri = self.resolved_tracking_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        return mlflow

    def client(self):
        from mlflow import MlflowClient

        self.activate()
        uri = self.resolved_tracking_uri()
        return MlflowClient(uri, uri)

    def experiment_id(self) -> str:
        """The project's experiment, tagged so that the MLflow 3 UI opens it in the model-training
        view (runs, metrics, models), not the GenAI (traces) view."""
        client = self.client()
        found = client.get_experiment_by_name(self.experiment_name)
        if found is None:
            return client.create_experiment(
                self.experiment_name, artifact_location=self.artifact_location, tags=EXPERIMENT_TAGS
            )
        for key, value in EXPERIMENT_TAGS.items():
            if found.tags.get(key) != value:  # an experiment made by an earlier version
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id

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
                f"MLflow tracking server {masked_uri(self.resolved_tracking_uri())} unreachable or failing "
                f"({detail}). Start it or fix "
                f"MLFLOW_TRACKING_URI (settings mlflow_tracking_uri), then rerun {job_name} for {partition}; "
                "nothing was logged, registered or promoted by this step."
            ) from exc
        if mlflow.active_run() is not None:
            mlflow.end_run()
        # Nested runs (baselines, drills) then land in this experiment too, not in MLflow's default
        # experiment, whose embedded artifact root is ./mlruns of the working directory.
        mlflow.set_experiment(experiment_id=experiment_id)
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
        # Registration prints "Successfully registered ..." / "Created version ..." to stderr for
        # every model; the version lands in the asset's metadata instead (docs/decisions.md,
        # "Quiet by default"). Failures still raise.
        with contextlib.redirect_stderr(io.StringIO()):
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
        """Where to look at a run; shown in asset metadata, so never with a password."""
        uri = masked_uri(self.resolved_tracking_uri())
        if uri.startswith("http"):
            return f"{uri.rstrip('/')}/#/experiments/{self.experiment_id()}/runs/{run_id}"
        return f"mlflow run {run_id} in {uri} (open with `make mlflow-ui`)"

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
        """The exported (pt2) program and its plain-JSON preprocessing; never unpickles.

        MLflow's loader is not used: it unpickles a `model.pth` found beside the program, or skips
        its pickle check on the program, whenever MLFLOW_ALLOW_PICKLE_DESERIALIZATION is true. Here
        the artifacts must be exactly what `log_model` wrote, the archive is checked pickle-free
        (MLflow's own validator, always run) and only then read by `torch.export.load`, which would
        otherwise unpickle the weights and sample inputs it holds."""
        from mlflow.exceptions import MlflowException

        mlflow = self.activate()
        try:
            root = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri))
            preprocessing_path = self.client().download_artifacts(ref.run_id, PREPROCESSING_FILE)
        except (MlflowException, OSError) as exc:
            raise self._artifact_error(ref, f"its artifacts cannot be read ({_short(exc)})") from None
        program = self._program_path(ref, root)
        try:
            from mlflow.pytorch import _validate_pt2_archive_is_pickle_free
        except ImportError:  # fail closed if MLflow moves its validator
            raise self._artifact_error(ref, "this MLflow has no pt2 archive validator, so it is not loaded") from None
        try:
            _validate_pt2_archive_is_pickle_free(str(program))
        except MlflowException as exc:
            found = re.search(r"record '([^']+)'", str(exc))
            record = found.group(1) if found else PROGRAM_FILE
            what = "not a pt2 (zip) archive" if record == PROGRAM_FILE else f"its record {record} is not pickle-free"
            raise self._artifact_error(ref, f"data/{PROGRAM_FILE} is corrupt ({what})") from None
        import torch

        try:
            model = torch.export.load(str(program)).module()
            with open(preprocessing_path) as fh:
                preprocessing = json.load(fh)
        except Exception as exc:  # torch raises many kinds on a damaged archive
            raise self._artifact_error(ref, f"its artifacts are corrupt ({_short(exc)})") from None
        return model, preprocessing

    def _program_path(self, ref: ModelRef, root: Path) -> Path:
        """data/model.pt2 under the model's artifacts, after checking the layout `log_model` writes."""
        import yaml

        try:
            flavors = yaml.safe_load((root / MLMODEL_FILE).read_text())["flavors"]
            data = root / flavors["pytorch"]["model_data"]
        except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
            raise self._artifact_error(
                ref, f"its {MLMODEL_FILE} file is missing or unreadable ({_short(exc)})"
            ) from None
        program = data / PROGRAM_FILE
        if not program.is_file():
            raise self._artifact_error(ref, f"its program {data.name}/{PROGRAM_FILE} is missing")
        stray = sorted(str(p.relative_to(root)) for p in data.rglob("*") if p.is_file() and p != program)
        if stray:
            raise self._artifact_error(
                ref,
                f"its artifacts hold files this project never writes ({', '.join(stray)}); refused, the artifact "
                "store may have been tampered with",
            )
        return program

    def _artifact_error(self, ref: ModelRef, problem: str) -> ModelArtifactError:
        """Names the model name and version and the two ways out: re-promote or retrain."""
        trained_for, earlier = None, []
        with contextlib.suppress(Exception):  # best effort: the registry may be what is broken
            tags = self.client().get_model_version(ref.name, ref.version).tags or {}
            trained_for = tags.get("trained_for_partition") or trained_for
            promoted = [h for h in self.promotions() if h["version"] != ref.version]
            until = ref.partition or trained_for
            earlier = [h["version"] for h in promoted if until is None or h["partition"] <= until]
        partition = ref.partition or trained_for or "<partition>"
        shown = list(dict.fromkeys(reversed(earlier)))[:3]  # the latest first, each version once
        candidates = f" (earlier champions: {', '.join('v' + v for v in shown)})" if shown else ""
        return ModelArtifactError(
            f"model {ref.name} version {ref.version} (run {ref.run_id}"
            + (f", trained for {trained_for}" if trained_for else "")
            + f"): {problem}. It cannot be served or scored. Fix: re-promote an earlier version{candidates} for "
            f"{partition} (ModelRegistryResource.promote(<version>, '{partition}', <note>)), or retrain: launch "
            f"retraining_job for partition {trained_for or partition}."
        )


def _short(exc: BaseException, limit: int = 200) -> str:
    """The error for a message; library texts that advise enabling pickle are left out."""
    text = f"{type(exc).__name__}: {exc}"
    if re.search(r"pickle|weights_only", text, re.IGNORECASE):
        return type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
