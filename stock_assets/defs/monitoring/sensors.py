"""`retraining_sensor`: every new performance_log materialization is judged; a champion whose
forecast distribution is significantly worse than the persistence-EWMA baseline's since its
promotion (CUSUM on the pinball differential), whose served 90% interval misses significantly more
than 10% of the time (coverage alarm), or that is older than the age limit requests retraining_job
for that session (once per session, never inside the cooldown). A daily_predictions partition the
plausibility guard served from persistence requests retraining at once (the cooldown counts only
since the champion's promotion). The first tick judges only the latest materializations.
See docs/decisions.md, "Degradation detector"."""

import json

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
from stock_assets.lib.contracts import GUARD_REASON, GUARD_ROWS, SERVED_CHAMPION_PROMOTED_FOR, MonitorMetadata
from stock_assets.lib.scoring import AbsoluteGuards
from stock_assets.resources.policies import MonitoringPolicyResource

PERFORMANCE_LOG = AssetKey("performance_log")
DAILY_PREDICTIONS = AssetKey("daily_predictions")
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


def _cursor(raw: str | None) -> dict[str, int]:
    """{asset: last storage id judged}; an earlier release kept the performance log's id alone."""
    if not raw:
        return {}
    if raw.isdigit():
        return {PERFORMANCE_LOG.path[-1]: int(raw)}
    return {k: int(v) for k, v in json.loads(raw).items()}


def _new_records(context: SensorEvaluationContext, key: AssetKey, after: int | None) -> list:
    """Materializations of `key` after `after`; on a first tick (no cursor) only the latest one, so
    turning the sensor on never re-judges history."""
    if after is None:
        latest = context.instance.fetch_materializations(AssetRecordsFilter(asset_key=key), limit=1, ascending=False)
        return list(latest.records)
    return list(
        context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=BATCH, ascending=True
        ).records
    )


def guard_reason(entries) -> str | None:
    """Why the plausibility guard served persistence for a daily_predictions partition, or None."""
    rows = entries.get(GUARD_ROWS)
    if rows is None or not int(rows.value):
        return None
    reason = entries.get(GUARD_REASON)
    return f"guard: {reason.value if reason is not None else 'implausible forecasts'}"


def skip_message(skips: list[str]) -> str:
    """The latest judgement in full, the rest counted: what the UI's tick history shows."""
    if not skips:
        return "nothing new to judge"
    latest, earlier = skips[-1], skips[:-1]
    healthy = sum(1 for s in earlier if ": healthy" in s)
    rest = [s for s in earlier if ": healthy" not in s]
    parts = [latest]
    if healthy:
        parts.append(f"and {healthy} earlier healthy session{'s' if healthy > 1 else ''}")
    if rest:
        parts.append(f"and {len(rest)} earlier breach{'es' if len(rest) > 1 else ''} inside the cooldown")
    return "; ".join(parts)


@sensor(job_name=RETRAINING_JOB, minimum_interval_seconds=60, description=__doc__)
def retraining_sensor(context: SensorEvaluationContext, monitoring_policy: MonitoringPolicyResource):
    cursor = _cursor(context.cursor)
    logs = _new_records(context, PERFORMANCE_LOG, cursor.get(PERFORMANCE_LOG.path[-1]))
    served = _new_records(context, DAILY_PREDICTIONS, cursor.get(DAILY_PREDICTIONS.path[-1]))
    for key, records in ((PERFORMANCE_LOG, logs), (DAILY_PREDICTIONS, served)):
        if records:
            cursor[key.path[-1]] = max(r.storage_id for r in records)
        cursor.setdefault(key.path[-1], 0)  # armed: from now on every new materialization is judged
    next_cursor = json.dumps(cursor, sort_keys=True)
    if not logs and not served:
        return SensorResult(
            skip_reason=SkipReason("no new performance_log or daily_predictions materializations"), cursor=next_cursor
        )
    retrained = _retrained_partitions(context)
    cooldown = monitoring_policy.cooldown_sessions
    judged: list[tuple[str, str | None, str, str | None]] = []  # (day, reason, measured, champion's partition)
    for record in logs:
        entries = record.asset_materialization.metadata
        monitor = MonitorMetadata.from_metadata(entries) if MonitorMetadata.present(entries) else None
        judged.append((record.partition_key, *judge(monitor, record.partition_key, monitoring_policy, retrained), None))
    for record in served:  # the guard retrains at once: the cooldown counts only since the champion's promotion
        entries = record.asset_materialization.metadata
        reason = guard_reason(entries)
        if reason is not None:
            promoted = entries.get(SERVED_CHAMPION_PROMOTED_FOR)
            judged.append((record.partition_key, reason, "guard fired", promoted.value if promoted else None))
    requests, skips = [], []
    for day, reason, measured, promoted_for in sorted(judged, key=lambda j: j[0]):
        if reason is None:
            skips.append(f"{day}: healthy ({measured})")
            continue
        since = trading_calendar.offset_session(day, -cooldown).isoformat()
        if promoted_for:
            since = max(since, promoted_for)
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
    if not requests:
        return SensorResult(skip_reason=SkipReason(skip_message(skips)), cursor=next_cursor)
    return SensorResult(run_requests=requests, cursor=next_cursor)
