"""`retraining_sensor`: every new performance_log materialization is judged; degraded rolling
performance requests retraining_job for that session (once per session, never inside the cooldown)."""

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

from stock_assets.defs.training.jobs import retraining_job
from stock_assets.lib import calendar
from stock_assets.settings import get_settings

PERFORMANCE_LOG = AssetKey("performance_log")
BATCH = 200


def _recent_retrainings(context: SensorEvaluationContext) -> set[str]:
    runs = context.instance.get_runs(
        filters=RunsFilter(
            job_name=retraining_job.name,
            statuses=[s for s in DagsterRunStatus if s not in (DagsterRunStatus.CANCELED,)],
        ),
        limit=200,
    )
    return {r.tags.get("dagster/partition") for r in runs if r.tags.get("dagster/partition")}


@sensor(job=retraining_job, minimum_interval_seconds=60, description=__doc__)
def retraining_sensor(context: SensorEvaluationContext):
    from stock_assets.lib.monitoring import RetrainRule

    cfg = get_settings().monitoring
    rule = RetrainRule(cfg.mape_max, cfg.direction_accuracy_min, cfg.min_samples)
    cursor = int(context.cursor) if context.cursor else None
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=PERFORMANCE_LOG, after_storage_id=cursor), limit=BATCH, ascending=True
    ).records
    if not records:
        return SkipReason("no new performance_log materializations")
    retrained = _recent_retrainings(context)
    requests, skips = [], []
    for record in records:
        day = record.partition_key
        meta = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        metrics = {"n": meta.get("rolling_samples", 0), "mape": meta.get("rolling_mape"), "directional_accuracy": meta.get("rolling_direction_accuracy")}
        reason = rule.breach(metrics)
        if reason is None:
            why = f"only {metrics['n']} scored predictions (< {cfg.min_samples})" if metrics["n"] < cfg.min_samples else "within thresholds"
            skips.append(f"{day}: {why}")
            continue
        since = calendar.offset_session(day, -cfg.cooldown_sessions).isoformat()
        recent = sorted(p for p in retrained if since <= p <= day)
        if recent:
            skips.append(f"{day}: {reason}, but retraining for {recent[-1]} ran within {cfg.cooldown_sessions} sessions")
            continue
        retrained.add(day)
        requests.append(
            RunRequest(
                run_key=f"retrain-{day}",
                partition_key=day,
                tags={"stock_assets/trigger": "retraining_sensor", "stock_assets/reason": reason[:200]},
            )
        )
    context.log.info("; ".join(skips) if skips else "all breaches requested")
    next_cursor = str(max(r.storage_id for r in records))
    if not requests:
        return SensorResult(skip_reason=SkipReason("; ".join(skips)[-1000:]), cursor=next_cursor)
    return SensorResult(run_requests=requests, cursor=next_cursor)
