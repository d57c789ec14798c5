"""The evening reports: `model_leaderboard` and `monitoring_report`, refreshed by declarative
automation after every new performance_log partition and every promotion
(docs/decisions.md, "Reports by declarative automation").

Both are unpartitioned and store nothing but their metadata (tables and charts a user opens on the
asset's page); the numbers come from the registry (through `ModelRegistryResource`), the warehouse
and the Dagster instance. Tables and charts are built by `lib/reports.py`.
"""

import tempfile
from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckKey,
    AssetExecutionContext,
    AssetKey,
    AssetRecordsFilter,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    RunsFilter,
    TableColumn,
    TableRecord,
    TableSchema,
    asset,
    define_asset_job,
)

from stock_assets.defs.plots import fan_chart_png, markdown_image
from stock_assets.lib import reports
from stock_assets.lib.links import mlflow_ui_url
from stock_assets.resources.model_registry import ModelRegistryResource
from stock_assets.resources.warehouse import WarehouseResource

GROUP = "operations"
PERFORMANCE_LOG = AssetKey("performance_log")
PRODUCTION_MODEL = AssetKey("production_model")
GATE_CHECK = AssetCheckKey(AssetKey("candidate_model"), "promotion_gate")
REPORT_SESSIONS = 60  # sessions of prices and forecasts in the report's chart
MONITOR_SESSIONS = 500  # performance_log partitions in the detector's chart
REPORTS_EXPERIMENT_SUFFIX = "-reports"

# Refresh after any new performance_log partition or promotion, once the runs writing them finished.
REPORT_CONDITION = (
    AutomationCondition.any_deps_updated() & ~AutomationCondition.any_deps_in_progress()
) & ~AutomationCondition.in_progress()


def build_reports(first_session: str) -> list:
    """The two report assets and `reports_job` (both, launchable by hand). Their automation condition
    is evaluated by Dagster's `default_automation_condition_sensor` (docs/decisions.md, "Reports by
    declarative automation")."""

    @asset(
        group_name=GROUP,
        deps=[PERFORMANCE_LOG, PRODUCTION_MODEL],
        automation_condition=REPORT_CONDITION,
        kinds={"mlflow", "pandas"},
    )
    def model_leaderboard(
        context: AssetExecutionContext, model_registry: ModelRegistryResource, warehouse: WarehouseResource
    ) -> MaterializeResult:
        """One row per registered model version, newest first: kind, the session it was trained for,
        its holdout median MAE and pinball loss against persistence and the persistence-EWMA
        baseline, the gate's Diebold-Mariano p-value and verdict, the sessions it was promoted for,
        how many sessions it served and how its served forecasts scored against persistence, with
        links to its MLflow run and version. Refreshed after every performance_log partition and
        promotion."""
        predictions, log = _served(warehouse, first_session)
        versions = version_records(model_registry, gate_evaluations(context.instance))
        board = reports.leaderboard(versions, predictions, log)
        champion = model_registry.alias("champion")
        metadata = {
            "leaderboard": _table(board, reports.LEADERBOARD_DESCRIPTIONS),
            "versions": len(board),
            "champion": f"v{champion.version} ({champion.kind})" if champion else "none",
        }
        if champion is not None:
            metadata["champion_mlflow_version"] = MetadataValue.url(
                mlflow_ui_url("model_version", champion.version, model_name=model_registry.model_name,
                              tracking_uri=model_registry.resolved_tracking_uri())
            )  # fmt: skip
        metadata["links"] = MetadataValue.md(reports.link_table(board))
        return MaterializeResult(metadata=metadata)

    @asset(
        group_name=GROUP,
        deps=[PERFORMANCE_LOG, PRODUCTION_MODEL],
        automation_condition=REPORT_CONDITION,
        kinds={"pandas"},
    )
    def monitoring_report(
        context: AssetExecutionContext, model_registry: ModelRegistryResource, warehouse: WarehouseResource
    ) -> MaterializeResult:
        """Which model served when, and how the monitor saw it: the champion timeline (one row per run
        of sessions served by one version), per ticker the last 60 sessions of actual close with the
        served median and its 50% and 90% intervals, and the retraining detector by session (the
        CUSUM statistic against its threshold, the coverage alarm's p-value) with retrainings,
        promotions and drills marked. Refreshed after every performance_log partition and promotion."""
        predictions, log = _served(warehouse, first_session)
        timeline = reports.champion_timeline(predictions, log)
        series = reports.monitor_series(monitor_entries(context.instance))
        promotions = [(p.partition, p.version, p.kind) for p in model_registry.promotions()]
        markers = reports.markers_from(promotions, retrainings(context.instance))
        detector = reports.detector_chart_png(series, markers)
        metadata = {
            "champion_timeline": _table(timeline, {}),
            "sessions_served": int(predictions["prediction_date"].nunique()) if len(predictions) else 0,
            "last_scored_session": str(log["target_date"].max()) if len(log) else "-",
        }
        charts = {"detector_chart.png": detector}
        if len(log):
            dates = sorted(log["target_date"].astype(str).unique())[-REPORT_SESSIONS:]
            recent = log[log["target_date"].astype(str).isin(set(dates))]
            charts["forecasts_chart.png"] = fan_chart_png(
                recent, "actual close, served median, 50% and 90% intervals", columns=1, width_inches=6.1
            )
        metadata.update(_charts(context, model_registry, charts))
        return MaterializeResult(metadata=metadata)

    job = define_asset_job(
        "reports_job",
        selection=[model_leaderboard, monitoring_report],
        description="The evening reports (model_leaderboard, monitoring_report); automation runs them too.",
        tags={"stock_assets/run_kind": "reports"},
    )
    return [model_leaderboard, monitoring_report, job]


def _served(warehouse: WarehouseResource, first_session: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every stored daily_predictions and performance_log row (empty frames before the first run)."""
    store = warehouse.get()
    out = []
    for table, column in (("daily_predictions", "prediction_date"), ("performance_log", "target_date")):
        try:
            out.append(store.read_range(table, column, first_session, "9999-12-31"))
        except Exception:  # never materialized: the table does not exist yet
            out.append(pd.DataFrame(columns=["prediction_date", "target_date", "model_version", "model_kind"]))
    return out[0], out[1]


def _table(frame: pd.DataFrame, descriptions: dict[str, str]) -> MetadataValue:
    records = reports.display_records(frame)
    columns = [
        TableColumn(
            name=c,
            type="float" if pd.api.types.is_float_dtype(frame[c]) else "int" if c.endswith("sessions") else "string",
            description=descriptions.get(c),
        )
        for c in frame.columns
    ]
    return MetadataValue.table(records=[TableRecord(r) for r in records], schema=TableSchema(columns=columns))


def version_records(registry: ModelRegistryResource, gates: dict[str, dict]) -> list[reports.VersionRecord]:
    """Every registered version with its tags, the logged model's metrics, its promotions and links.

    `ModelRegistryResource` has no public listing of versions, so this reads them through its MLflow
    client (`registry.client()`)."""
    from mlflow.exceptions import MlflowException

    client = registry.client()
    try:
        versions = client.search_model_versions(f"name = '{registry.model_name}'")
    except MlflowException:
        return []
    promoted: dict[str, list[str]] = {}
    for p in registry.promotions():
        promoted.setdefault(str(p.version), []).append(p.partition)
    uri = registry.resolved_tracking_uri()
    experiment_id = registry.experiment_id()
    out = []
    for mv in versions:
        metrics = _version_metrics(client, mv)
        tags = dict(mv.tags or {})
        out.append(
            reports.VersionRecord(
                version=str(mv.version),
                kind=tags.get("model_kind"),
                trained_for=tags.get("trained_for_partition"),
                run_id=mv.run_id,
                metrics=metrics,
                tags=tags,
                promoted_for=tuple(promoted.get(str(mv.version), ())),
                gate=gates.get(str(mv.version)),
                run_url=mlflow_ui_url("run", mv.run_id, experiment_id=experiment_id, tracking_uri=uri)
                if mv.run_id
                else None,
                version_url=mlflow_ui_url(
                    "model_version", mv.version, model_name=registry.model_name, tracking_uri=uri
                ),
            )
        )
    return out


def _version_metrics(client, mv) -> dict[str, float]:
    """The holdout scores of a version: those logged against its logged model (MLflow 3's
    `model_id`, also read from a `models:/m-...` source), else its run's (each version has its own
    run: baselines and drills log into nested runs)."""
    from mlflow.exceptions import MlflowException

    model_id = getattr(mv, "model_id", None)
    source = str(getattr(mv, "source", "") or "")
    if not model_id and source.startswith("models:/m-"):
        model_id = source.removeprefix("models:/").split("/")[0]
    metrics: dict[str, float] = {}
    try:
        if mv.run_id:
            metrics.update(client.get_run(mv.run_id).data.metrics)
        if model_id:
            metrics.update({m.key: m.value for m in client.get_logged_model(model_id).metrics or []})
    except MlflowException:
        pass
    return metrics


def gate_evaluations(instance) -> dict[str, dict]:
    """{candidate version: the promotion gate's verdict and p-value} from the instance's check
    evaluations: the leaderboard's source where a version lacks the gate_* tags."""
    from stock_assets.lib.contracts import GateMetadata

    out: dict[str, dict] = {}
    for record in instance.event_log_storage.get_asset_check_execution_history(GATE_CHECK, limit=1000):
        event = record.event
        evaluation = event.dagster_event.event_specific_data if event and event.dagster_event else None
        metadata = getattr(evaluation, "metadata", None)
        if not metadata or not GateMetadata.present(metadata):
            continue
        gate = GateMetadata.from_metadata(metadata)
        out.setdefault(str(gate.candidate_version), {"verdict": gate.verdict, "p_value": gate.p_value})
    return out  # newest first: setdefault keeps the latest evaluation of a version


def monitor_entries(instance) -> list[tuple[str, dict]]:
    """(partition, metadata values) of the latest MONITOR_SESSIONS performance_log materializations."""
    result = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=PERFORMANCE_LOG), limit=MONITOR_SESSIONS, ascending=False
    )
    entries = []
    for record in result.records:
        metadata = record.asset_materialization.metadata
        entries.append((record.partition_key, {k: getattr(v, "value", v) for k, v in metadata.items()}))
    return list(reversed(entries))


def retrainings(instance) -> list[tuple[str, str]]:
    """(partition, why) of every retraining_job run that was not canceled."""
    runs = instance.get_runs(filters=RunsFilter(job_name="retraining_job"), limit=500)
    return [
        (r.tags["dagster/partition"], r.tags.get("stock_assets/reason", "by hand"))
        for r in runs
        if r.tags.get("dagster/partition") and r.status.value != "CANCELED"
    ]


def _charts(context, registry: ModelRegistryResource, charts: dict[str, bytes]) -> dict:
    """Each chart twice: inline on the asset's page (a short markdown image served by the MLflow UI,
    where the charts are logged in the `<experiment>-reports` experiment) and embedded in the
    metadata itself (one click, needs no server)."""
    run_id = _log_charts(context, registry, charts)
    uri = registry.resolved_tracking_uri()
    out = {}
    for name, png in charts.items():
        key = name.removesuffix(".png")
        if run_id is not None:
            url = mlflow_ui_url("artifact", run_id, path=f"charts/{name}", tracking_uri=uri)
            out[key] = MetadataValue.md(f"![{key}]({url})")
        out[f"{key}_embedded"] = markdown_image(png, key.replace("_", " "))
    return out


def _log_charts(context, registry: ModelRegistryResource, charts: dict[str, bytes]) -> str | None:
    """Log the charts as artifacts of one MLflow run per report run; None if MLflow refuses."""
    from mlflow.exceptions import MlflowException

    client = registry.client()
    name = registry.experiment_name + REPORTS_EXPERIMENT_SUFFIX
    try:
        found = client.get_experiment_by_name(name)
        if found is None:
            location = f"{registry.artifact_location.rstrip('/')}/reports" if registry.artifact_location else None
            experiment_id = client.create_experiment(
                name, artifact_location=location, tags={"mlflow.experimentKind": "custom_model_development"}
            )
        else:
            experiment_id = found.experiment_id
        run = client.create_run(
            experiment_id,
            run_name=f"{context.asset_key.to_user_string()}-{context.run_id[:8]}",
            tags={"dagster_run_id": context.run_id, "stock_assets_role": "report"},
        )
        with tempfile.TemporaryDirectory() as tmp:
            for file, png in charts.items():
                (Path(tmp) / file).write_bytes(png)
                client.log_artifact(run.info.run_id, str(Path(tmp) / file), artifact_path="charts")
        client.set_terminated(run.info.run_id)
        return run.info.run_id
    except (MlflowException, OSError) as exc:
        context.log.warning(f"charts not logged to MLflow ({exc}); they are embedded in the metadata")
        return None
