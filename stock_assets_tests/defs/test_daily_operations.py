"""Predictions, the performance log, the schedule, the retraining sensor and a short replay."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dagster import AssetMaterialization, build_schedule_context, build_sensor_context

from stock_assets.definitions import build_definitions
from stock_assets.lib import calendar
from stock_assets.replay import replay, run_retraining
from stock_assets.resources.warehouse import get_warehouse
from stock_assets.settings import get_settings

D1 = "2006-02-22"  # first champion trained here
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


@pytest.fixture
def defs(history):
    return build_definitions(history)


def run_daily(defs, instance, day):
    return defs.resolve_job_def("daily_job").execute_in_process(
        instance=instance, partition_key=day, run_config=QUIET, raise_on_error=False
    )


def table(settings, name, column, first="0000", last="9999"):
    return get_warehouse(settings.warehouse_url).read_range(name, column, first, last)


def test_no_champion_names_the_retraining_to_run(defs, instance):
    result = run_daily(defs, instance, "2006-03-01")
    assert not result.success
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "no champion model as of 2006-03-01" in message and "Run retraining_job for partition 2006-03-01" in message


@pytest.mark.slow
def test_predictions_use_the_champion_as_of_their_date_and_fridays_are_scored_on_monday(defs, instance, history):
    assert run_retraining(defs, instance, D1)["promoted"]
    registry = defs.resources["model_registry"]
    later = run_retraining(defs, instance, "2006-03-03")  # a second version; promote it for 03-03 if the gate kept v1
    if not later["promoted"]:
        registry.promote("2", "2006-03-03", "test")

    for day in ["2006-03-02", "2006-03-03", "2006-03-06"]:  # Thursday, Friday, Monday
        assert run_daily(defs, instance, day).success
    predictions = table(history, "daily_predictions", "prediction_date")
    by_day = predictions.groupby("prediction_date")["model_version"].unique().to_dict()
    assert list(by_day["2006-03-02"]) == ["1"]  # before the second promotion: never a later model
    assert list(by_day["2006-03-03"]) == ["2"] and list(by_day["2006-03-06"]) == ["2"]
    friday = predictions[predictions["prediction_date"] == "2006-03-03"]
    assert set(friday["target_date"]) == {"2006-03-06"} and sorted(friday["ticker"]) == ["AAPL", "GOOG", "IBM", "MSFT"]

    log = table(history, "performance_log", "target_date")
    monday = log[log["target_date"] == "2006-03-06"]
    assert len(monday) == 4 and set(monday["prediction_date"]) == {"2006-03-03"}
    prices = table(history, "raw_prices", "date", "2006-03-06", "2006-03-06").set_index("ticker")
    row = monday.set_index("ticker").loc["AAPL"]
    assert row["actual_close"] == pytest.approx(prices.loc["AAPL", "adj_close"])
    assert row["abs_error"] == pytest.approx(abs(row["predicted_close"] - row["actual_close"]))
    assert row["direction_hit"] == float((row["predicted_close"] > row["last_close"]) == (row["actual_close"] > row["last_close"]))
    # Thursday's session had no predictions targeting it: an empty partition with a note, not a failure.
    assert len(log[log["target_date"] == "2006-03-02"]) == 0
    note = instance.get_latest_materialization_event(defs.resolve_assets_def("performance_log").key)
    assert note.asset_materialization.partition == "2006-03-06"
    assert note.asset_materialization.metadata["rolling_samples"].value == 8


@pytest.mark.slow
def test_predictions_before_a_holiday_are_scored_after_it(defs, instance, history):
    assert run_retraining(defs, instance, D1)["promoted"]
    assert calendar.next_session("2006-04-13") == dt.date(2006, 4, 17)  # Good Friday
    for day in ["2006-04-13", "2006-04-17"]:
        assert run_daily(defs, instance, day).success
    log = table(history, "performance_log", "target_date")
    assert set(log["prediction_date"]) == {"2006-04-13"} and set(log["target_date"]) == {"2006-04-17"}


def report_log(instance, day, samples, mape, direction):
    instance.report_runless_asset_event(
        AssetMaterialization(
            "performance_log",
            partition=day,
            metadata={"rolling_samples": samples, "rolling_mape": mape, "rolling_direction_accuracy": direction},
        )
    )


def tick(defs, instance, cursor=None):
    sensor = defs.resolve_sensor_def("retraining_sensor")
    return sensor.evaluate_tick(build_sensor_context(instance=instance, cursor=cursor, definitions=defs))


def test_sensor_sees_every_partition_that_landed_at_once(defs, instance):
    cfg = get_settings().monitoring
    bad_direction = cfg.direction_accuracy_min - 0.1
    report_log(instance, "2006-03-01", 40, 0.01, 0.9)  # fine
    report_log(instance, "2006-03-02", 40, cfg.mape_max + 0.01, 0.9)  # MAPE breach
    report_log(instance, "2006-03-03", 40, 0.01, bad_direction)  # direction breach, but in cooldown of 03-02
    report_log(instance, "2006-03-13", 40, 0.01, bad_direction)  # breach after the cooldown
    report_log(instance, "2006-03-14", cfg.min_samples - 1, 0.5, 0.0)  # too few samples: never a breach
    result = tick(defs, instance)
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [
        ("2006-03-02", "retrain-2006-03-02"),
        ("2006-03-13", "retrain-2006-03-13"),
    ]
    assert "rolling MAPE" in result.run_requests[0].tags["stock_assets/reason"]
    cursor = result.cursor
    again = tick(defs, instance, cursor)
    assert not again.run_requests and "no new performance_log" in again.skip_message


def test_sensor_skip_reasons_and_cooldown_from_runs(defs, instance):
    cfg = get_settings().monitoring
    report_log(instance, "2006-03-01", cfg.min_samples - 1, 0.5, 0.0)
    result = tick(defs, instance)
    assert not result.run_requests and f"only {cfg.min_samples - 1} scored predictions" in result.skip_message
    # A retraining run for 03-06 exists: a breach on 03-08 is inside the cooldown, so no storm.
    job = defs.resolve_job_def("retraining_job")
    instance.create_run_for_job(job_def=job, tags={"dagster/partition": "2006-03-06"})
    report_log(instance, "2006-03-08", 40, 0.5, 0.0)
    result = tick(defs, instance, result.cursor)
    assert not result.run_requests
    assert "retraining for 2006-03-06 ran within 3 sessions" in result.skip_message
    # The same session never gets two retrainings, even after its cooldown window.
    report_log(instance, "2006-03-06", 40, 0.5, 0.0)
    assert not tick(defs, instance, result.cursor).run_requests


@pytest.mark.parametrize(
    "when, expected",
    [
        (dt.datetime(2006, 3, 3, 18, 30), ["2006-03-03"]),  # Friday after the close
        (dt.datetime(2006, 3, 4, 18, 30), []),  # Saturday: no session
        (dt.datetime(2006, 4, 14, 18, 30), []),  # Good Friday: exchange closed
    ],
)
def test_schedule_requests_the_session_that_just_closed(defs, instance, when, expected):
    schedule = defs.resolve_schedule_def("daily_schedule")
    ny = when.replace(tzinfo=ZoneInfo("America/New_York"))
    context = build_schedule_context(instance=instance, scheduled_execution_time=ny)
    result = schedule.evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests or []] == expected
    assert schedule.execution_timezone == "America/New_York"


@pytest.mark.slow
def test_replay_launches_a_retraining_through_the_sensor_and_the_gate_decides(defs, instance, history, monkeypatch):
    assert run_retraining(defs, instance, D1)["promoted"]
    # Demand more than any model achieves, so the rolling window must breach.
    import stock_assets.defs.monitoring.sensors as sensors

    strict = get_settings().model_copy(
        update={"monitoring": get_settings().monitoring.model_copy(update={"direction_accuracy_min": 0.99})}
    )
    monkeypatch.setattr(sensors, "get_settings", lambda: strict)
    sessions = [d.isoformat() for d in calendar.sessions_between("2006-02-23", "2006-03-03")]
    report = replay(defs, instance, sessions)
    assert report.sessions == sessions and not report.failed_daily_runs
    assert report.predictions_scored == 4 * (len(sessions) - 1)
    assert report.retrainings, "the sensor should have requested a retraining"
    first = report.retrainings[0]
    # 8 samples (two scored sessions) exist from 02-27, but the first training (02-22) is within the
    # 3-session cooldown until 02-28.
    assert first["partition"] == "2006-02-28"
    run = instance.get_run_by_id(first["run_id"])
    assert run.tags["dagster/run_key"] == f"retrain-{first['partition']}"
    assert run.tags["stock_assets/trigger"] == "retraining_sensor"
    assert ("candidate MAE" in first["gate"]) and (first["promoted"] == ("not below" not in first["gate"]))
    champion = defs.resources["model_registry"].alias("champion").version
    assert champion == ("2" if first["promoted"] else "1")
