"""`retraining_sensor` evaluated against a real instance: every landed partition, the detector, the
champion's age, cooldowns and run keys."""

from dagster import AssetMaterialization, build_sensor_context

from stock_assets.defs.monitoring.sensors import judge
from stock_assets.lib.contracts import MonitorMetadata
from stock_assets.resources.policies import MonitoringPolicyResource
from stock_assets_tests.conftest import TEST_SETTINGS

COOLDOWN = TEST_SETTINGS.monitoring.cooldown_sessions  # 3
MAX_AGE = TEST_SETTINGS.monitoring.max_champion_age_sessions  # 40


def monitor(statistic=1.0, fired=False, age=5, **rolling) -> MonitorMetadata:
    """What performance_log writes for a session, through the contract the sensor reads."""
    return MonitorMetadata(
        champion_version="1",
        champion_kind="lstm",
        champion_promoted_for="2006-01-03",
        champion_age_sessions=age,
        champion_mae_ratio=1.12,
        detector_statistic=statistic,
        detector_threshold=9.0,
        detector_fired=fired,
        detector_reason=f"CUSUM {statistic:.2f} > 9 after 30 sessions: champion MAE 1.12 x persistence",
        **{"rolling_samples": 20, "rolling_mape": 0.02, "rolling_direction_accuracy": 0.5, **rolling},
    )


def report_log(instance, day, statistic=1.0, fired=False, age=5, **extra):
    meta = monitor(statistic, fired, age, **extra).to_metadata()
    instance.report_runless_asset_event(AssetMaterialization("performance_log", partition=day, metadata=meta))


def tick(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def("retraining_sensor")
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources)
    return sensor.evaluate_tick(context)


def arm(defs, instance) -> str:
    """The sensor's first tick, before anything landed: it judges nothing and keeps a cursor."""
    first = tick(defs, instance)
    assert not first.run_requests and first.cursor is not None
    return first.cursor


def test_sensor_sees_every_partition_that_landed_at_once(defs, instance):
    armed = arm(defs, instance)
    report_log(instance, "2006-03-01")  # healthy
    report_log(instance, "2006-03-02", statistic=9.5, fired=True)  # degraded
    report_log(instance, "2006-03-03", statistic=10.0, fired=True)  # degraded, but in the cooldown of 03-02
    report_log(instance, "2006-03-13", statistic=11.0, fired=True)  # degraded after the cooldown
    report_log(instance, "2006-03-14", statistic=3.0)  # healthy again
    result = tick(defs, instance, armed)
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [
        ("2006-03-02", "retrain-2006-03-02"),
        ("2006-03-13", "retrain-2006-03-13"),
    ]
    assert result.run_requests[0].tags["stock_assets/reason"].startswith("CUSUM 9.50 > 9")
    again = tick(defs, instance, result.cursor)
    assert not again.run_requests and "no new performance_log" in again.skip_message


def test_the_first_tick_judges_only_the_latest_partition(defs, instance):
    """Turned on over a long history, the sensor does not re-judge it (nor launch a retraining for
    a past session): only the latest materialization, then everything new."""
    for day in ("2006-03-01", "2006-03-02", "2006-03-03"):
        report_log(instance, day, statistic=12.0, fired=True)  # old breaches
    report_log(instance, "2006-03-06", statistic=2.0)
    first = tick(defs, instance)
    assert not first.run_requests
    assert first.skip_message.startswith("2006-03-06: healthy (CUSUM 2.00")
    report_log(instance, "2006-03-07", statistic=12.0, fired=True)
    assert [r.partition_key for r in tick(defs, instance, first.cursor).run_requests] == ["2006-03-07"]


def test_skip_reason_keeps_the_latest_judgement_in_full_and_counts_the_rest(defs, instance):
    armed = arm(defs, instance)
    for i, day in enumerate(["2006-03-01", "2006-03-02", "2006-03-03", "2006-03-06"]):
        report_log(instance, day, statistic=2.5 + i)
    result = tick(defs, instance, armed)
    assert not result.run_requests
    assert result.skip_message == (
        f"2006-03-06: healthy (CUSUM 5.50 vs threshold 9, champion v1 age 5 vs {MAX_AGE} sessions); "
        "and 3 earlier healthy sessions"
    )


def report_predictions(instance, day, fallback_rows=0, reason="", promoted_for="2006-01-03"):
    from stock_assets.lib.contracts import GUARD_REASON, GUARD_ROWS

    meta = {GUARD_ROWS: fallback_rows, "champion_promoted_for": promoted_for}
    if fallback_rows:
        meta[GUARD_REASON] = reason
    instance.report_runless_asset_event(AssetMaterialization("daily_predictions", partition=day, metadata=meta))


def test_the_guard_requests_retraining_at_once_even_inside_the_cooldown(defs, instance):
    armed = arm(defs, instance)
    job = defs.resolve_job_def("retraining_job")
    instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2006-03-06"})  # before the promotion
    report_predictions(instance, "2006-03-07")  # the guard did not fire
    report_predictions(instance, "2006-03-08", 4, "AAPL: median move +5.13% is 3.4 predicted sd", "2006-03-07")
    result = tick(defs, instance, armed)
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [("2006-03-08", "retrain-2006-03-08")]
    assert result.run_requests[0].tags["stock_assets/reason"] == "guard: AAPL: median move +5.13% is 3.4 predicted sd"
    # The daemon launched it; the guard fires again the next session: no second request.
    instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2006-03-08"})
    report_predictions(instance, "2006-03-09", 4, "AAPL: still implausible", "2006-03-07")
    again = tick(defs, instance, result.cursor)
    assert not again.run_requests and "retraining for 2006-03-08 ran within" in again.skip_message


def test_a_stale_champion_is_retrained_once_not_every_cooldown(defs, instance):
    armed = arm(defs, instance)
    report_log(instance, "2006-05-01", age=MAX_AGE)
    result = tick(defs, instance, armed)
    assert [r.partition_key for r in result.run_requests] == ["2006-05-01"]
    assert "is 40 sessions old (>= 40)" in result.run_requests[0].tags["stock_assets/reason"]
    job = defs.resolve_job_def("retraining_job")
    instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2006-05-01"})
    # The retraining was rejected, the champion ages on: no new request until MAX_AGE sessions later.
    report_log(instance, "2006-05-10", age=MAX_AGE + 7)
    assert not tick(defs, instance, result.cursor).run_requests


def test_cooldown_counts_retraining_runs_already_in_the_instance(defs, instance):
    armed = arm(defs, instance)
    job = defs.resolve_job_def("retraining_job")
    instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2006-03-06"})
    report_log(instance, "2006-03-08", statistic=12.0, fired=True)
    result = tick(defs, instance, armed)
    assert not result.run_requests
    assert f"retraining for 2006-03-06 ran within {COOLDOWN} sessions" in result.skip_message
    report_log(instance, "2006-03-06", statistic=12.0, fired=True)  # the same session never twice
    assert not tick(defs, instance, result.cursor).run_requests


def test_absolute_guards_are_off_by_default_and_work_when_set():
    meta = monitor(0.0, age=3, rolling_samples=40, rolling_mape=0.5, rolling_direction_accuracy=0.1)
    assert judge(meta, "2006-03-01", MonitoringPolicyResource(), set())[0] is None
    guarded = MonitoringPolicyResource(direction_accuracy_min=0.53, min_samples=20)
    assert judge(meta, "2006-03-01", guarded, set())[0] == "rolling directional accuracy 0.100 < 0.53"
    assert judge(None, "2006-03-01", guarded, set()) == (None, "nothing scored")


COVERAGE_BREACH = {
    "champion_coverage_90": 0.7,
    "champion_covered_rows": 120,
    "coverage_p_value": 1e-6,
    "coverage_alarm": True,
    "coverage_reason": "90% interval coverage 0.700 over 120 rows since promotion (36 misses, 10% expected): "
    "one-sided binomial p 1e-06 < 0.01",
}


def test_sensor_requests_retraining_on_the_coverage_alarm(defs, instance):
    armed = arm(defs, instance)
    report_log(instance, "2006-03-01", statistic=2.0, **COVERAGE_BREACH)
    result = tick(defs, instance, armed)
    assert [r.partition_key for r in result.run_requests] == ["2006-03-01"]
    assert result.run_requests[0].tags["stock_assets/reason"].startswith("coverage alarm: 90% interval coverage 0.700")


def test_judge_names_each_trigger_and_older_metadata_still_reads():
    policy = MonitoringPolicyResource()
    both, measured = judge(monitor(9.5, fired=True, **COVERAGE_BREACH), "2006-03-01", policy, set())
    assert both.startswith("CUSUM 9.50 > 9") and "; coverage alarm: 90% interval coverage" in both
    assert measured.endswith("90% coverage 0.700 over 120 rows (p 1e-06)")
    healthy = {**COVERAGE_BREACH, "coverage_alarm": False, "coverage_p_value": 0.4, "champion_coverage_90": 0.89}
    assert judge(monitor(2.0, **healthy), "2006-03-01", policy, set())[0] is None
    old = {k: v for k, v in monitor(2.0).to_metadata().items() if k not in COVERAGE_BREACH}
    read = MonitorMetadata.from_metadata(old)
    assert not read.coverage_alarm and read.coverage_reason == "" and read.champion_pinball_ratio is None
    assert judge(read, "2006-03-01", policy, set())[0] is None
