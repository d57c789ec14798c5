"""MLflow tracking and the model registry behind one resource.

One MLflow run per Dagster run: each step finds the run tagged with its Dagster run id (the
convention of dagster-mlflow's `mlflow_tracking`), resumes it, and ends it when the step ends, so
no MLflow run is ever left RUNNING and two Dagster runs never share one. A logged model is
self-contained: its preprocessing is one of the model's own files, so `models:/<name>/<version>`
alone serves. The registry is the one source of truth for promotions: each promotion is its own
version tag (append-only, no read-modify-write), and "the champion as of D" is derived from them for
any past D (docs/architecture.md, "Contracts between assets").

Models are loaded without MLflow's loader and never unpickled (docs/decisions.md, "Never unpickle").
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import PrivateAttr

import stock_assets.resources.baseline_flavor as baseline_flavor
from stock_assets.lib.contracts import ModelRef, Preprocessing, Promotion
from stock_assets.lib.forecasters import BASELINES, DRILL, BaselineForecaster
from stock_assets.resources.model_loading import PREPROCESSING_FILE, load_forecaster, short
from stock_assets.resources.model_loading import ModelArtifactError as ModelArtifactError  # re-exported

CHAMPION, CHALLENGER = "champion", "challenger"
# Promotion tags: "promotion/<partition>/<dagster run id>" = JSON {promoted_at}. Versions logged by
# earlier releases kept one JSON list under LEGACY_HISTORY_TAG; it is still read, never written.
PROMOTION_TAG_PREFIX = "promotion/"
LEGACY_HISTORY_TAG = "promotion_history"
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


# Kinds registered by the project without a gate (lib/forecasters.py, replay's drill): never challengers.
BASELINE_KINDS = frozenset({*BASELINES, DRILL})


def promotion_tag(partition: str, dagster_run_id: str) -> str:
    return f"{PROMOTION_TAG_PREFIX}{partition}/{dagster_run_id}"


class ModelRegistryUnavailableError(RuntimeError):
    """The MLflow tracking server / registry cannot be reached; the message names it."""


def masked_uri(uri: str) -> str:
    """`uri` with its password (if any) replaced by ***, for messages and metadata (lib/redaction.py)."""
    from stock_assets.lib.redaction import masked_url

    return masked_url(uri)


@contextlib.contextmanager
def _store_creation_lock(uri: str) -> Iterator[None]:
    """An exclusive file lock beside an embedded (SQLite) MLflow store while it is first opened:
    MLflow creates and migrates its tables on first use, and two processes doing it at once fail
    with "duplicate column name". A server or Postgres store needs no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    database = Path(uri.removeprefix("sqlite:///"))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def dagster_run_active(instance, run_id: str) -> bool:
    """True while the Dagster run may still end its MLflow runs itself (not finished, known)."""
    run = instance.get_run_by_id(run_id)
    return run is not None and not run.is_finished


def serving_requirements() -> list[str]:
    """The packages a served model needs, pinned to what this process runs: MLflow's own inference
    costs a subprocess (~5 s) per logged model and only ever finds these two."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in ("torch", "numpy")]


class ModelRegistryResource(ConfigurableResource):
    """Where runs, models and aliases live (MLflow tracking + registry URIs from settings/env)."""

    tracking_uri: str
    model_name: str = "stock_lstm"
    experiment_name: str = "stock_assets"
    artifact_location: str | None = None
    http_timeout_seconds: int = 60
    http_max_retries: int = 2

    _client = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self.configured_mlflow()

    # --- tracking -------------------------------------------------------------------------
    def resolved_tracking_uri(self) -> str:
        """The tracking URI, also when the resource is used outside a run (scripts, replays): Dagster
        resolves an `EnvVar` field only when it initialises the resource for a run."""
        uri = self.tracking_uri
        return uri.get_value() if isinstance(uri, EnvVar) else uri

    def configured_mlflow(self):
        """The `mlflow` module pointed at our stores. Configured once per resource (at run setup, or
        on first use outside a run); later calls only re-point a process another store re-pointed."""
        import mlflow

        uri = self.resolved_tracking_uri()
        if self._client is None:
            # Our own loader never unpickles whatever this says (`load`); this covers MLflow's other paths.
            os.environ.setdefault("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
            os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no progress bars in run logs
            # MLflow prints "View run ... at: <tracking URI>" to stdout, credentials included: never.
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
            # MLflow's defaults (7 retries, backoff up to 120 s) make one call to a dead server take ~4
            # minutes; an explicit MLFLOW_HTTP_REQUEST_* in the environment still wins.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(self.http_timeout_seconds))
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(self.http_max_retries))
            from mlflow import MlflowClient

            with _store_creation_lock(uri):  # two first runs at once must not both create the tables
                self._client = MlflowClient(uri, uri)
                if uri.startswith("sqlite:///"):  # the registry store's tables too; a server needs no call here
                    self._client.search_registered_models(max_results=1)
        if mlflow.get_tracking_uri() != uri:  # tests and replays use several stores in one process
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
        return mlflow

    def client(self):
        self.configured_mlflow()
        return self._client

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

    def close_abandoned_runs(self, is_active: Callable[[str], bool]) -> list[str]:
        """Close, as KILLED, the MLflow runs a killed process left RUNNING: those whose Dagster run
        (`is_active(dagster run id)` False: ended, or unknown to the instance) can no longer end them,
        and the runs nested under those; and tag model versions a killed run registered but never
        described (no `model_kind`) as orphans. Returns the closed run ids."""
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            running = client.search_runs([self.experiment_id()], filter_string="attributes.status = 'RUNNING'")
        except MlflowException:
            return []
        by_id = {run.info.run_id: run for run in running}

        def owner(run) -> str | None:  # the Dagster run behind a run, through its parents
            tags = run.data.tags
            if "dagster_run_id" in tags:
                return tags["dagster_run_id"]
            parent = tags.get("mlflow.parentRunId")
            if parent in by_id:
                return owner(by_id[parent])
            with contextlib.suppress(MlflowException):
                return client.get_run(parent).data.tags.get("dagster_run_id") if parent else None
            return None

        closed = []
        for run in running:
            dagster_run_id = owner(run)
            if dagster_run_id is None or is_active(dagster_run_id):
                continue
            client.set_tag(
                run.info.run_id, "stock_assets_closed", f"Dagster run {dagster_run_id} ended without ending it"
            )
            client.set_terminated(run.info.run_id, "KILLED")
            closed.append(run.info.run_id)
        with contextlib.suppress(MlflowException):
            for mv in client.search_model_versions(f"name = '{self.model_name}'"):
                tags = mv.tags or {}
                if "model_kind" not in tags and "orphan" not in tags and mv.run_id in closed:
                    client.set_model_version_tag(self.model_name, mv.version, "orphan", "its run was killed")
                    client.update_model_version(
                        self.model_name, mv.version, description="orphan: the run that registered it was killed"
                    )
        return closed

    @contextlib.contextmanager
    def mlflow_run_for(self, dagster_run_id: str, partition: str, job_name: str, instance=None) -> Iterator[str]:
        """Resume (or start) the MLflow run of this Dagster run and yield its id; end it when the block
        ends. Given the Dagster `instance`, first close the runs killed processes left open."""
        from mlflow.exceptions import MlflowException

        from stock_assets.lib.redaction import mask_secrets

        mlflow = self.configured_mlflow()
        client = self.client()
        try:
            experiment_id = self.experiment_id()
            if instance is not None:
                self.close_abandoned_runs(lambda run_id: dagster_run_active(instance, run_id))
            runs = client.search_runs(
                [experiment_id],
                filter_string=f"tags.dagster_run_id = '{dagster_run_id}' and tags.stock_assets_role = 'dagster_run'",
                max_results=1,
            )
        except MlflowException as exc:
            detail = mask_secrets(str(exc) if len(str(exc)) <= 300 else "..." + str(exc)[-240:])  # the tail: the cause
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
        except MlflowException as exc:
            with contextlib.suppress(Exception):
                mlflow.end_run(status="FAILED")
            raise self._mid_run_error(exc, job_name, partition) from None
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        else:
            mlflow.end_run(status="FINISHED")

    def _mid_run_error(self, exc: Exception, job_name: str, partition: str) -> ModelRegistryUnavailableError:
        """An MLflow failure inside a step, said as what happened and what to run (never a password)."""
        from stock_assets.lib.redaction import mask_secrets

        text = mask_secrets(short(exc, 300))
        store = masked_uri(self.resolved_tracking_uri())
        if "database is locked" in text:
            cause = (
                f"the embedded MLflow store {store} is locked by another process (another run writing, or a "
                "long query from `make mlflow-ui`). Rerun when it is free; for runs at once use an MLflow server "
                "(STOCK_ASSETS_MLFLOW_TRACKING_URI)"
            )
        else:
            cause = (
                f"the MLflow tracking server {store} failed during the step ({text}). Check that it runs and that "
                "MLFLOW_TRACKING_URI (settings mlflow_tracking_uri) points at it"
            )
        return ModelRegistryUnavailableError(
            f"{cause}; then rerun {job_name} for {partition}. A promotion is recorded only at the step's end, so "
            "nothing half-done serves; runs left open are closed by the next run."
        )

    def log_model(
        self,
        model,
        preprocessing: Preprocessing,
        input_example,
        partition: str,
        dagster_run_id: str,
        metrics: dict[str, float] | None = None,
    ) -> ModelRef:
        """Log `model` (pt2) with its preprocessing as one of the model's own files into the active
        MLflow run, register it, and log `metrics` against the logged model (its `model_id`).

        LSTMs and baselines go through here alike, so every served model loads the same way."""
        self.configured_mlflow()
        from mlflow import pytorch as mlflow_pytorch

        with tempfile.TemporaryDirectory() as tmp:
            extra = Path(tmp) / PREPROCESSING_FILE
            extra.write_text(json.dumps(preprocessing.to_dict()))
            # Registration prints "Successfully registered ..." / "Created version ..." to stderr for
            # every model; the version lands in the asset's metadata instead (docs/decisions.md,
            # "Quiet by default"). Failures still raise.
            with contextlib.redirect_stderr(io.StringIO()):
                info = mlflow_pytorch.log_model(
                    model,
                    name="model",
                    input_example=input_example,  # batch >= 2 keeps the exported batch dimension dynamic
                    pip_requirements=serving_requirements(),
                    extra_files=[str(extra)],
                    registered_model_name=self.model_name,
                    serialization_format="pt2",
                )
        return self._registered(info, preprocessing.kind, partition, dagster_run_id, metrics)

    def log_baseline(
        self, forecaster: BaselineForecaster, partition: str, dagster_run_id: str, metrics: dict | None = None
    ) -> ModelRef:
        """Log a baseline forecaster (plain numbers, the `stock_assets_baseline` flavor) into the
        active MLflow run and register it: served exactly like an LSTM, but with numpy alone."""
        self.configured_mlflow()
        from mlflow.models import Model

        with contextlib.redirect_stderr(io.StringIO()):  # "Successfully registered ..." (see log_model)
            info = Model.log(
                artifact_path=None,
                name="model",
                flavor=baseline_flavor,
                registered_model_name=self.model_name,
                forecaster=forecaster.to_dict(),
            )
        return self._registered(info, forecaster.kind, partition, dagster_run_id, metrics)

    def _registered(self, info, kind: str, partition: str, dagster_run_id: str, metrics: dict | None) -> ModelRef:
        """Tag the version just registered and log `metrics` against its model id."""
        mlflow = self.configured_mlflow()
        if metrics:
            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, model_id=info.model_id)
        version = str(info.registered_model_version)
        client = self.client()
        tags = {"trained_for_partition": partition, "dagster_run_id": dagster_run_id, "model_kind": kind}
        for key, value in tags.items():
            client.set_model_version_tag(self.model_name, version, key, value)
        client.update_model_version(self.model_name, version, description=f"{kind} as of {partition}")
        run_id = mlflow.active_run().info.run_id
        return ModelRef(self.model_name, version, run_id, partition, kind)

    def run_url(self, run_id: str) -> str:
        """The run's page in the MLflow UI (lib/links.py; never with a password), for `MetadataValue.url`."""
        from stock_assets.lib.links import mlflow_ui_url

        return mlflow_ui_url(
            "run", run_id, experiment_id=self.experiment_id(), tracking_uri=self.resolved_tracking_uri()
        )

    def version_url(self, version: str) -> str:
        """The model version's page in the MLflow UI."""
        from stock_assets.lib.links import mlflow_ui_url

        return mlflow_ui_url(
            "model_version", str(version), model_name=self.model_name, tracking_uri=self.resolved_tracking_uri()
        )

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

    def set_alias(self, alias: str, version: str) -> None:
        self.client().set_registered_model_alias(self.model_name, alias, str(version))

    def promotions(self) -> list[Promotion]:
        """Every promotion recorded on version tags, oldest first: the one promotion history."""
        from mlflow.exceptions import MlflowException

        try:
            versions = self.client().search_model_versions(f"name = '{self.model_name}'")
        except MlflowException:
            return []
        history = []
        for mv in versions:
            tags = mv.tags or {}
            entries = json.loads(tags.get(LEGACY_HISTORY_TAG, "[]"))
            for key, value in tags.items():
                if key.startswith(PROMOTION_TAG_PREFIX):
                    _, partition, dagster_run_id = key.split("/", 2)
                    entries.append({"partition": partition, "dagster_run_id": dagster_run_id, **json.loads(value)})
            for entry in entries:
                history.append(
                    Promotion(
                        version=str(mv.version),
                        run_id=mv.run_id,
                        kind=tags.get("model_kind"),
                        partition=entry["partition"],
                        promoted_at=entry["promoted_at"],
                        dagster_run_id=entry["dagster_run_id"],
                    )
                )
        return sorted(history, key=lambda h: (h.partition, h.promoted_at))

    def champion_as_of(self, partition: str) -> ModelRef | None:
        """The model promoted for the latest partition <= `partition` (never one trained later)."""
        eligible = [h for h in self.promotions() if h.partition <= partition]
        return eligible[-1].ref(self.model_name) if eligible else None

    def promote(
        self, version: str, partition: str, dagster_run_id: str, run_started_at: str | None = None
    ) -> Promotion:
        """Record the promotion of `version` for `partition` (its own tag: concurrent promotions never
        overwrite each other) and bring alias `champion` in line with the history; returns the
        promotion that stands for `partition`.

        Idempotent: a re-run of the same Dagster run records nothing twice and repairs an alias a
        killed run left behind. The alias only ever names the promotion for the latest partition, so
        a backfill of an old partition is recorded (the as-of history stays answerable) but never
        moves it. Given the promoting run's start (`run_started_at`, ISO UTC), a promotion for the
        same partition recorded by another run after that start is a concurrent run: the earliest
        one stands and the others withdraw theirs (docs/decisions.md, "The registry tells the truth")."""
        client = self.client()
        version = str(version)
        mine = [p for p in self.promotions() if p.partition == partition and p.dagster_run_id == dagster_run_id]
        if mine:
            promotion = mine[-1]
        else:
            mv = client.get_model_version(self.model_name, version)
            promoted_at = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
            key = promotion_tag(partition, dagster_run_id)
            client.set_model_version_tag(self.model_name, version, key, json.dumps({"promoted_at": promoted_at}))
            promotion = Promotion(
                version, mv.run_id, (mv.tags or {}).get("model_kind"), partition, promoted_at, dagster_run_id
            )
        if run_started_at is not None:
            rivals = [
                p
                for p in self.promotions()
                if p.partition == partition and p.dagster_run_id != dagster_run_id and p.promoted_at > run_started_at
            ]
            first = min([promotion, *rivals], key=lambda p: (p.promoted_at, p.dagster_run_id))
            if first is not promotion:  # another run for this session promoted while this one ran
                client.delete_model_version_tag(
                    self.model_name, promotion.version, promotion_tag(partition, dagster_run_id)
                )
                promotion = first
        self.sync_champion_alias()
        return promotion

    def sync_champion_alias(self) -> ModelRef | None:
        """Point alias `champion` at the promotion for the latest partition (the history is the
        truth, the alias its mirror); repairs an alias a killed run did not move. Returns it."""
        history = self.promotions()
        if not history:
            return None
        latest = history[-1]
        current = self.alias(CHAMPION)
        if current is None or current.version != latest.version:
            self.set_alias(CHAMPION, latest.version)
        return latest.ref(self.model_name)

    def record_verdict(self, version: str, verdict: str, p_value: float, reason: str, partition: str) -> None:
        """The gate's verdict on a candidate, on its model version and its MLflow run (tags
        `gate_verdict` promoted|rejected, `gate_p_value`, `gate_reason`, `gate_partition`); `challenger`
        then names the latest candidate still undecided or that passed (none: no alias)."""
        client = self.client()
        tags = {
            "gate_verdict": verdict,
            "gate_p_value": f"{p_value:.4g}",
            "gate_reason": reason[:4900],
            "gate_partition": partition,
        }
        mv = client.get_model_version(self.model_name, str(version))
        for key, value in tags.items():
            client.set_model_version_tag(self.model_name, str(version), key, value)
            if mv.run_id:
                client.set_tag(mv.run_id, key, value)
        self.sync_challenger_alias()

    def sync_challenger_alias(self) -> None:
        from mlflow.exceptions import MlflowException

        client = self.client()
        try:
            versions = client.search_model_versions(f"name = '{self.model_name}'")
        except MlflowException:
            return
        open_or_passed = [
            mv
            for mv in versions
            if (mv.tags or {}).get("model_kind") not in BASELINE_KINDS
            and (mv.tags or {}).get("model_kind") is not None
            and (mv.tags or {}).get("gate_verdict") != "rejected"
        ]
        if open_or_passed:
            latest = max(open_or_passed, key=lambda mv: int(mv.version))
            if (current := self.alias(CHALLENGER)) is None or current.version != str(latest.version):
                self.set_alias(CHALLENGER, str(latest.version))
        elif self.alias(CHALLENGER) is not None:
            client.delete_registered_model_alias(self.model_name, CHALLENGER)

    def load(self, ref: ModelRef):
        """The forecaster `models:/<name>/<version>` alone holds, never unpickled (resources/model_loading.py)."""
        return load_forecaster(self, ref)
