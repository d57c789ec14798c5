"""Replay daily operations over past sessions the way the schedule and the daemon would.

For each session: run `daily_job` for it, evaluate `retraining_sensor` with its cursor, and run
the retraining it requests (the promotion gate decides whether the new model replaces the
champion). Everything lands in the given Dagster instance and the configured stores.

A drill installs a deliberately degraded champion (every forecast a fixed upward bias) at a chosen
session, so the detector and the gate can be watched doing their job on real data.

Runs carry the code location's origin (`stock_assets`, as workspace.yaml names it), exactly like
runs launched from the UI or by the daemon, so the Overview timeline, the job pages and the asset
pages list them; they execute in this process with the replay's own definitions (a launched run
would rebuild them from the environment's settings and pay the imports again in a subprocess).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from dagster import AssetKey, DagsterInstance, Definitions, JobDefinition, build_sensor_context

from stock_assets.lib.contracts import GateMetadata, ModelRef
from stock_assets.run_config import QUIET

DRILL_KIND = "drill-biased"
# The code location as workspace.yaml loads it (stock_assets_tests/test_replay.py checks the file).
LOCATION_NAME = "stock_assets"
CODE_MODULE = "stock_assets.definitions"
REPOSITORY_NAME = "__repository__"  # Dagster's name for the repository of a Definitions object
SENSOR_NAME_TAG = "dagster/sensor_name"  # what the daemon tags a sensor's runs with (the sensor page lists them)
HEARTBEAT_SECONDS = 10.0

ROLLING_KEYS = (
    "rolling_samples",
    "rolling_mae",
    "rolling_persistence_mae",
    "rolling_mae_ratio",
    "rolling_direction_accuracy",
    "rolling_up_share",
    "rolling_pinball_ratio",
    "rolling_coverage_90",
    "coverage_alarm",
    "detector_statistic",
    "champion_version",
    "champion_kind",
)


@dataclass
class ReplayReport:
    sessions: list[str] = field(default_factory=list)
    predictions_scored: int = 0
    retrainings: list[dict] = field(default_factory=list)
    last_rolling: dict = field(default_factory=dict)
    failed_daily_runs: list[str] = field(default_factory=list)
    drill: dict = field(default_factory=dict)  # installed / caught / replaced sessions of a drill
    reports: dict = field(default_factory=dict)  # what the reports' automation requested and its run
    seconds: float = 0.0

    @property
    def promotions(self) -> int:
        return sum(1 for r in self.retrainings if r["promoted"])

    @property
    def fallbacks(self) -> int:
        return sum(1 for r in self.retrainings if r["fallback"])

    @property
    def rejections(self) -> int:
        return sum(1 for r in self.retrainings if not r["promoted"])

    @property
    def drill_line(self) -> str | None:
        """`drill caught after N sessions`: N sessions were served by the drill champion."""
        if not self.drill:
            return None
        n = self.drill.get("caught_after_sessions", 0)
        if "caught" not in self.drill:
            return f"drill not caught within the replay ({n} sessions served by it)"
        return f"drill caught after {n} session{'s' if n != 1 else ''}"


def _merge(base: dict, extra: dict | None) -> dict:
    return {**base, **(extra or {})}


def location_origins(job_name: str, working_directory: str | None = None):
    """(remote job origin, python job origin) of `job_name` in the `stock_assets` code location, as
    `dagster dev -w workspace.yaml` loads it: a run created with them belongs to that location in
    the UI (its `.dagster/repository` tag is `__repository__@stock_assets`)."""
    from dagster._core.code_pointer import ModuleCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._core.remote_origin import (
        ManagedGrpcPythonEnvCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    cwd = working_directory or str(Path.cwd())
    target = LoadableTargetOrigin(executable_path=sys.executable, module_name=CODE_MODULE, working_directory=cwd)
    location = ManagedGrpcPythonEnvCodeLocationOrigin(loadable_target_origin=target, location_name=LOCATION_NAME)
    remote = RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY_NAME), job_name)
    python = JobPythonOrigin(
        job_name, RepositoryPythonOrigin(sys.executable, ModuleCodePointer(CODE_MODULE, "defs", cwd))
    )
    return remote, python


def execute_for_location(
    job: JobDefinition,
    instance: DagsterInstance,
    partition_key: str | None = None,
    run_config: dict | None = None,
    tags: dict | None = None,
    progress: Callable[[str], None] | None = None,
    label: str = "",
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
    detail=None,
):
    """Run `job` in this process the way `execute_in_process` does, but as a run of the code location
    (see `location_origins`); with `progress`, a line every HEARTBEAT_SECONDS says which step runs.

    Dagster 1.13 has no public call for this: `execute_in_process` creates its run without an
    origin, and `execute_job` rebuilds the job from its module (the environment's settings, not
    these definitions). The private imports stay here; stock_assets_tests/test_replay.py pins them."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.api import execute_run
    from dagster._core.execution.execute_in_process import merge_run_tags

    run_config = run_config or {}
    run_tags = merge_run_tags(
        job_def=job, partition_key=partition_key, tags=tags, asset_selection=None, instance=instance, run_config=None
    )
    remote, python = location_origins(job.name)
    label = label or f"{job.name} {partition_key or ''}".strip()
    # The heartbeat starts before the run exists: creating it (the execution plan) can take seconds.
    with Heartbeat(instance, None, label, progress, heartbeat_seconds, detail) as heartbeat:
        run = instance.create_run_for_job(
            job_def=job, run_config=run_config, tags=run_tags, remote_job_origin=remote, job_code_origin=python
        )
        heartbeat.run_id = run.run_id
        return execute_run(InMemoryJob(job), run, instance)


class Heartbeat:
    """While a run executes, says every `every` seconds how long it has run and which step runs (and,
    in `best_params`, how many search trials finished), so long work is never silent."""

    def __init__(self, instance, run_id: str | None, label: str, say, every: float = HEARTBEAT_SECONDS, detail=None):
        self.instance, self.run_id, self.label, self.say, self.every = instance, run_id, label, say, every
        self.detail = detail  # step key -> more to say about that step, or None
        self._stop = threading.Event()
        self._thread = None
        self._started = 0.0

    def __enter__(self):
        self._started = time.perf_counter()
        if self.say is not None:
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.label}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return False

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            try:
                step = self.current_step()
            except Exception:  # a busy SQLite store: say less this time, never disturb the run
                step = None
            elapsed = time.perf_counter() - self._started
            self.say(f"    ... {self.label}: {elapsed:.0f} s" + (f", {step}" if step else ""))

    def current_step(self) -> str | None:
        from dagster import DagsterEventType

        if self.run_id is None:
            return "creating the run"
        started = self.instance.get_records_for_run(
            self.run_id, of_type=DagsterEventType.STEP_START, ascending=False, limit=1
        ).records
        if not started:
            return None
        step = started[0].event_log_entry.step_key
        more = self.detail(step) if self.detail is not None else None
        return f"step {step} running" + (f" ({more})" if more else "")


def search_progress(defs: Definitions, partition: str):
    """A `Heartbeat` detail for retrainings: in `best_params`, the search's finished trials and the
    running trial's last reported epoch, read from the Optuna storage the search writes."""
    from dagster import EnvVar

    url = defs.resources["optuna_storage"].url
    url = url.get_value() if isinstance(url, EnvVar) else url
    prefix = f"{defs.resources['model_registry'].model_name}-{partition}"
    storage = []

    def detail(step: str) -> str | None:
        if step != "best_params":
            return None
        import optuna

        if not storage:
            storage.append(optuna.storages.RDBStorage(url))
        names = [s.study_name for s in storage[0].get_all_studies() if s.study_name.startswith(prefix)]
        if not names:
            return None
        study_id = max(storage[0].get_study_id_from_name(n) for n in names)  # the latest search of the partition
        trials = storage[0].get_all_trials(study_id, deepcopy=False)
        finished = sum(t.state.is_finished() for t in trials)
        running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
        epoch = f", trial {running[-1].number} at epoch {len(running[-1].intermediate_values)}" if running else ""
        return f"{finished} search trials finished{epoch}"

    return detail


def run_retraining(
    defs: Definitions,
    instance: DagsterInstance,
    partition: str,
    run_config: dict | None = None,
    tags=None,
    progress: Callable[[str], None] | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> dict:
    """One retraining_job run for `partition`; returns what the gate decided."""
    result = execute_for_location(
        defs.resolve_job_def("retraining_job"),
        instance,
        partition,
        _merge(QUIET, run_config),
        tags or {},
        progress,
        f"retraining {partition}",
        heartbeat_seconds,
        search_progress(defs, partition) if progress is not None else None,
    )
    check = next((e for e in result.get_asset_check_evaluations() if e.check_name == "promotion_gate"), None)
    gate = GateMetadata.from_metadata(check.metadata) if check is not None else None
    fallback = bool(gate is not None and gate.fallback_to_persistence)
    changed = any(e.asset_key == AssetKey("production_model") for e in result.get_asset_materialization_events())
    return {
        "partition": partition,
        "run_id": result.run_id,
        "success": result.success,
        "promoted": changed and not fallback,  # the candidate became champion
        "fallback": changed and fallback,  # persistence replaced a champion that lost to it
        "gate": check.description if check is not None else "gate not reached (see the run's logs)",
        "p_value": gate.p_value if gate is not None else None,
    }


def install_drill_champion(
    defs: Definitions, day: str, bias: float, levels=None, ewma_lambda: float = 0.94
) -> ModelRef:
    """Register a model whose every median is a `bias` log return (with a Gaussian EWMA spread) and
    promote it for `day`, like any champion but tagged a drill: the detector must catch it and the
    loop replace it."""
    from stock_assets.defs.champions import register_baseline
    from stock_assets.lib.distributions import DEFAULT_LEVELS
    from stock_assets.lib.forecasters import gaussian_baseline

    registry = defs.resources["model_registry"]
    tickers = list(defs.resources["basket"].tickers)
    run_id = f"drill-{day}"
    drill = gaussian_baseline(
        DRILL_KIND, np.full(len(tickers), bias), tickers, levels or DEFAULT_LEVELS, ewma_lambda, day
    )
    with registry.mlflow_run_for(run_id, day, "drill"):
        ref = register_baseline(registry, drill, day, run_id)
    registry.client().set_model_version_tag(registry.model_name, ref.version, "drill", f"+{bias:g} log return bias")
    registry.promote(ref.version, day, run_id)
    return ref


def replay(
    defs: Definitions,
    instance: DagsterInstance,
    sessions: list[str],
    retraining_config: dict | None = None,
    on_session=None,
    drill: tuple[str, float] | None = None,
    progress: Callable[[str], None] | None = None,
    heartbeat_seconds: float = HEARTBEAT_SECONDS,
) -> ReplayReport:
    """Run `sessions` in order; `drill=(day, bias)` installs a biased champion before `day`'s run.
    `progress` receives a line every HEARTBEAT_SECONDS while a run executes."""
    report = ReplayReport()
    started = time.perf_counter()
    sensor = defs.resolve_sensor_def("retraining_sensor")
    daily = defs.resolve_job_def("daily_job")
    cursor = None
    seen_run_keys: set[str] = set()
    registry = defs.resources["model_registry"]
    automation = _automation_cursor(defs, instance)
    for day in sessions:
        if drill and day == drill[0]:
            report.drill = {"installed": day, "model": install_drill_champion(defs, day, drill[1]).label}
        result = execute_for_location(
            daily, instance, day, QUIET, None, progress, f"daily_job {day}", heartbeat_seconds
        )
        report.sessions.append(day)
        if not result.success:
            report.failed_daily_runs.append(day)
        for event in result.get_asset_materialization_events():
            if event.asset_key == AssetKey("performance_log"):
                entries = {k: v.value for k, v in event.materialization.metadata.items()}
                report.predictions_scored += int(entries.get("rows", 0))
                report.last_rolling = {k: entries[k] for k in ROLLING_KEYS if k in entries}
        context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources)
        evaluation = sensor.evaluate_tick(context)
        cursor = evaluation.cursor or cursor
        for request in evaluation.run_requests or []:
            if request.run_key in seen_run_keys:  # the daemon drops a repeated run_key
                continue
            seen_run_keys.add(request.run_key)
            tags = {**request.tags, "dagster/run_key": request.run_key, SENSOR_NAME_TAG: sensor.name}
            report.retrainings.append(
                run_retraining(
                    defs, instance, request.partition_key, retraining_config, tags, progress, heartbeat_seconds
                )
            )
            if report.drill and "caught" not in report.drill:
                report.drill["caught"] = f"{day} ({request.tags.get('stock_assets/reason', '')})"
        if report.drill and "caught" in report.drill and "replaced" not in report.drill:
            champion = registry.champion_as_of(day)
            if champion is not None and champion.kind != DRILL_KIND:
                report.drill["replaced"] = f"{champion.partition} by {champion.label}"
        if on_session:
            on_session(day, report)
    report.reports = refresh_reports(defs, instance, automation, progress, heartbeat_seconds)
    if report.drill:
        served = drill_sessions_served(defs, report.drill["installed"], sessions[-1])
        report.drill["caught_after_sessions"] = served
    report.seconds = time.perf_counter() - started
    return report


REPORTS_JOB = "reports_job"


def _automation_cursor(defs: Definitions, instance: DagsterInstance):
    """The declarative-automation cursor before the replay: what the reports' condition compares with."""
    from dagster import evaluate_automation_conditions

    return evaluate_automation_conditions(defs=defs, instance=instance).cursor


def refresh_reports(
    defs: Definitions, instance: DagsterInstance, cursor, progress=None, heartbeat_seconds=None
) -> dict:
    """Evaluate the reports' automation condition since `cursor`, as the daemon's automation sensor
    would, and run `reports_job` when it requests them. Once per replay, not after every session (the
    daemon refreshes them every session; a replay pays for one refresh)."""
    from dagster import evaluate_automation_conditions

    result = evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    keys = [r.key for r in result.results if result.get_num_requested(r.key)]
    requested = sorted(k.to_user_string() for k in keys)
    if not requested:
        return {"requested": []}
    run = execute_for_location(
        defs.resolve_job_def(REPORTS_JOB), instance, None, QUIET, None, progress, "reports",
        heartbeat_seconds or HEARTBEAT_SECONDS,
    )  # fmt: skip
    return {"requested": requested, "run_id": run.run_id, "success": run.success}


def drill_sessions_served(defs: Definitions, installed: str, last: str) -> int:
    """Sessions from `installed` to `last` whose daily_predictions were served by the drill champion:
    rows of kind `drill-biased` not served by the guard's fallback (a column that older rows lack)."""
    frame = defs.resources["warehouse"].get().read_range("daily_predictions", "prediction_date", installed, last)
    if frame.empty:
        return 0
    from stock_assets.lib.reports import served_rows

    served = served_rows(frame)  # a row of a session may be the fallback's while the others are the drill's
    return int(served.loc[served["model_kind"].astype(str) == DRILL_KIND, "prediction_date"].nunique())
