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


def report_log(instance, day, statistic=1.0, fired=False, age=5):
    meta = monitor(statistic, fired, age).to_metadata()
    instance.report_runless_asset_event(AssetMaterialization("performance_log", partition=day, metadata=meta))


def tick(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def("retraining_sensor")
    context = build_sensor_context(instance=instance, cursor=cursor, definitions=defs, resources=defs.resources)
    return sensor.evaluate_tick(context)


def test_sensor_sees_every_partition_that_landed_at_once(defs, instance):
    report_log(instance, "2006-03-01")  # healthy
    report_log(instance, "2006-03-02", statistic=9.5, fired=True)  # degraded
    report_log(instance, "2006-03-03", statistic=10.0, fired=True)  # degraded, but in the cooldown of 03-02
    report_log(instance, "2006-03-13", statistic=11.0, fired=True)  # degraded after the cooldown
    report_log(instance, "2006-03-14", statistic=3.0)  # healthy again
    result = tick(defs, instance)
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [
        ("2006-03-02", "retrain-2006-03-02"),
        ("2006-03-13", "retrain-2006-03-13"),
    ]
    assert result.run_requests[0].tags["stock_assets/reason"].startswith("CUSUM 9.50 > 9")
    again = tick(defs, instance, result.cursor)
    assert not again.run_requests and "no new performance_log" in again.skip_message


def test_skip_reasons_name_the_statistic_and_the_threshold_newest_first(defs, instance):
    report_log(instance, "2006-03-01", statistic=2.5)
    report_log(instance, "2006-03-02", statistic=4.25)
    result = tick(defs, instance)
    assert not result.run_requests
    assert result.skip_message.startswith(
        f"2006-03-02: healthy (CUSUM 4.25 vs threshold 9, champion v1 age 5 vs {MAX_AGE} sessions)"
    )


def test_a_stale_champion_is_retrained_once_not_every_cooldown(defs, instance):
    report_log(instance, "2006-05-01", age=MAX_AGE)
    result = tick(defs, instance)
    assert [r.partition_key for r in result.run_requests] == ["2006-05-01"]
    assert "is 40 sessions old (>= 40)" in result.run_requests[0].tags["stock_assets/reason"]
    job = defs.resolve_job_def("retraining_job")
    instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2006-05-01"})
    # The retraining was rejected, the champion ages on: no new request until MAX_AGE sessions later.
    report_log(instance, "2006-05-10", age=MAX_AGE + 7)
    assert not tick(defs, instance, result.cursor).run_requests


def test_cooldown_counts_retraining_runs_already_in_the_instance(defs, instance):
    job = defs.resolve_job_def("retraining_job")
    instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2006-03-06"})
    report_log(instance, "2006-03-08", statistic=12.0, fired=True)
    result = tick(defs, instance)
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
