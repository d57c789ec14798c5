"""`retraining_sensor`: every new performance_log materialization is judged; a champion whose
forecast distribution is significantly worse than the persistence-EWMA baseline's since its
promotion (CUSUM on the pinball differential), whose served 90% interval misses significantly more
than 10% of the time (coverage alarm), or that is older than the age limit requests retraining_job
for that session (once per session, never inside the cooldown).
See docs/decisions.md, "Degradation detector"."""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterRunStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from stock_assets.lib import trading_calendar
from stock_assets.lib.contracts import MonitorMetadata
from stock_assets.lib.scoring import AbsoluteGuards
from stock_assets.resources.policies import MonitoringPolicyResource

PERFORMANCE_LOG = AssetKey("performance_log")
RETRAINING_JOB = "retraining_job"
BATCH = 200


def _retrained_partitions(context: SensorEvaluationContext) -> set[str]:
    runs = context.instance.get_runs(
        filters=RunsFilter(
            job_name=RETRAINING_JOB, statuses=[s for s in DagsterRunStatus if s != DagsterRunStatus.CANCELED]
        ),
        limit=500,
    )
    return {r.tags["dagster/partition"] for r in runs if r.tags.get("dagster/partition")}


def judge(
    monitor: MonitorMetadata | None, day: str, policy: MonitoringPolicyResource, retrained: set[str]
) -> tuple[str | None, str]:
    """(reason to retrain or None, what was measured) for one performance_log partition; `monitor` is
    None for a session with nothing scored."""
    if monitor is None:
        return None, "nothing scored"
    age, max_age = int(monitor.champion_age_sessions), policy.max_champion_age_sessions
    measured = (
        f"CUSUM {monitor.detector_statistic:.2f} vs threshold {monitor.detector_threshold:g}, "
        f"champion v{monitor.champion_version} age {age} vs {max_age} sessions"
    )
    if monitor.coverage_p_value is not None and monitor.champion_coverage_90 is not None:
        measured += (
            f", 90% coverage {monitor.champion_coverage_90:.3f} over {monitor.champion_covered_rows} rows "
            f"(p {monitor.coverage_p_value:.2g})"
        )
    # The detector's reason starts "CUSUM ..." and names the pinball ratio; the coverage alarm's says so.
    alarms = [
        *([str(monitor.detector_reason)] if monitor.detector_fired else []),
        *([f"coverage alarm: {monitor.coverage_reason}"] if monitor.coverage_alarm else []),
    ]
    if alarms:
        return "; ".join(alarms), measured
    if age >= max_age:
        since = trading_calendar.offset_session(day, -max_age).isoformat()
        if not any(since <= p <= day for p in retrained):
            return f"champion v{monitor.champion_version} is {age} sessions old (>= {max_age})", measured
    guards = AbsoluteGuards(policy.mape_max, policy.direction_accuracy_min, policy.min_samples)
    mape = 0.0 if monitor.rolling_mape is None else monitor.rolling_mape
    accuracy = 1.0 if monitor.rolling_direction_accuracy is None else monitor.rolling_direction_accuracy
    return guards.breach(int(monitor.rolling_samples), mape, accuracy), measured


@sensor(job_name=RETRAINING_JOB, minimum_interval_seconds=60, description=__doc__)
def retraining_sensor(context: SensorEvaluationContext, monitoring_policy: MonitoringPolicyResource):
    cursor = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=PERFORMANCE_LOG, after_storage_id=cursor), limit=BATCH, ascending=True
    ).records
    if not records:
        return SkipReason("no new performance_log materializations")
    retrained = _retrained_partitions(context)
    cooldown = monitoring_policy.cooldown_sessions
    requests, skips = [], []
    for record in records:
        day = record.partition_key
        entries = record.asset_materialization.metadata
        monitor = MonitorMetadata.from_metadata(entries) if MonitorMetadata.present(entries) else None
        reason, measured = judge(monitor, day, monitoring_policy, retrained)
        if reason is None:
            skips.append(f"{day}: healthy ({measured})")
            continue
        since = trading_calendar.offset_session(day, -cooldown).isoformat()
        recent = sorted(p for p in retrained if since <= p <= day)
        if recent:
            skips.append(f"{day}: {reason}, but retraining for {recent[-1]} ran within {cooldown} sessions")
            continue
        retrained.add(day)
        requests.append(
            RunRequest(
                run_key=f"retrain-{day}",
                partition_key=day,
                tags={"stock_assets/trigger": "retraining_sensor", "stock_assets/reason": reason[:200]},
            )
        )
    context.log.debug("; ".join(skips) if skips else "all breaches requested")  # the skip reason says it too
    next_cursor = str(max(r.storage_id for r in records))
    if not requests:
        # Newest first, cut at the end: the latest judgement is what the UI must show in full.
        return SensorResult(skip_reason=SkipReason("; ".join(reversed(skips))[:1000]), cursor=next_cursor)
    return SensorResult(run_requests=requests, cursor=next_cursor)
