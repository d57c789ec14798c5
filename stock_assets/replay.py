"""Replay daily operations over past sessions the way the schedule and the daemon would.

For each session: run `daily_job` for it, evaluate `retraining_sensor` with its cursor, and run
the retraining it requests (the promotion gate decides whether the new model replaces the
champion). Everything lands in the given Dagster instance and the configured stores.

A drill installs a deliberately degraded champion (every forecast a fixed upward bias) at a chosen
session, so the detector and the gate can be watched doing their job on real data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from dagster import AssetKey, DagsterInstance, Definitions, build_sensor_context

from stock_assets.lib.contracts import GateMetadata, ModelRef
from stock_assets.run_config import QUIET

DRILL_KIND = "drill-biased"

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


def _merge(base: dict, extra: dict | None) -> dict:
    return {**base, **(extra or {})}


def run_retraining(
    defs: Definitions, instance: DagsterInstance, partition: str, run_config: dict | None = None, tags=None
) -> dict:
    """One retraining_job run for `partition`; returns what the gate decided."""
    result = defs.resolve_job_def("retraining_job").execute_in_process(
        instance=instance,
        partition_key=partition,
        run_config=_merge(QUIET, run_config),
        tags=tags or {},
        raise_on_error=False,
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
) -> ReplayReport:
    """Run `sessions` in order; `drill=(day, bias)` installs a biased champion before `day`'s run."""
    report = ReplayReport()
    started = time.perf_counter()
    sensor = defs.resolve_sensor_def("retraining_sensor")
    daily = defs.resolve_job_def("daily_job")
    cursor = None
    seen_run_keys: set[str] = set()
    registry = defs.resources["model_registry"]
    for day in sessions:
        if drill and day == drill[0]:
            report.drill = {"installed": day, "model": install_drill_champion(defs, day, drill[1]).label}
        result = daily.execute_in_process(instance=instance, partition_key=day, run_config=QUIET, raise_on_error=False)
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
            tags = {**request.tags, "dagster/run_key": request.run_key}
            report.retrainings.append(run_retraining(defs, instance, request.partition_key, retraining_config, tags))
            if report.drill and "caught" not in report.drill:
                report.drill["caught"] = f"{day} ({request.tags.get('stock_assets/reason', '')})"
        if report.drill and "caught" in report.drill and "replaced" not in report.drill:
            champion = registry.champion_as_of(day)
            if champion is not None and champion.kind != DRILL_KIND:
                report.drill["replaced"] = f"{champion.partition} by {champion.label}"
        if on_session:
            on_session(day, report)
    report.seconds = time.perf_counter() - started
    return report
