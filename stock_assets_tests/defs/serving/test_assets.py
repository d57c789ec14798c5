"""`daily_predictions` and the scoring in `performance_log`: the champion as of D, Friday to Monday,
holidays, and a clear failure when no champion exists."""

import datetime as dt

import numpy as np
import pytest

from stock_assets.defs import build_definitions
from stock_assets.lib import trading_calendar
from stock_assets.replay import run_retraining
from stock_assets.resources.warehouse import get_warehouse
from stock_assets.run_config import QUIET

D1 = "2006-02-22"  # first champion trained here


@pytest.fixture
def defs(history):
    return build_definitions(history)


def failures(result) -> str:
    """What failed in a daily_job result, for the assertion message."""
    errors = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    return "; ".join((err.cause or err).to_string()[-1500:] for err in errors)


def run_daily(defs, instance, day):
    return defs.resolve_job_def("daily_job").execute_in_process(
        instance=instance, partition_key=day, run_config=QUIET, raise_on_error=False
    )


def daily_ok(defs, instance, day) -> None:
    result = run_daily(defs, instance, day)
    assert result.success, failures(result)


def table(settings, name, column, first="0000", last="9999"):
    return get_warehouse(settings.warehouse_url).read_range(name, column, first, last)


def test_predictions_right_after_a_backfill_are_distributions_of_the_persistence_ewma_baseline(defs, instance, history):
    assert run_daily(defs, instance, "2006-03-01").success  # no retraining has ever run
    registry = defs.resources["model_registry"]
    champion = registry.champion_as_of("2006-03-01")
    assert champion.kind == "persistence" and champion.partition == "2006-03-01"
    versions = {v.version: v.tags["model_kind"] for v in registry.client().search_model_versions("name = 'stock_lstm'")}
    assert list(versions.values()) == ["persistence"]  # the first champion; drift never serves unjudged
    predictions = table(history, "daily_predictions", "prediction_date")
    assert len(predictions) == 4 and set(predictions["model_kind"]) == {champion.kind}
    assert set(predictions["model_version"]) == {champion.version}
    assert (predictions["predicted_close"] == predictions["last_close"]).all()  # persistence's median
    quantiles = predictions[["q05", "q25", "q50", "q75", "q95"]].to_numpy()
    assert (quantiles > 0).all() and (np.diff(quantiles, axis=1) > 0).all()  # positive, never crossing
    assert np.allclose(predictions["q50"], predictions["predicted_close"])
    assert (predictions["predicted_volatility"].between(0.003, 0.08)).all()  # daily log-return scale
    assert (predictions["calibration_scale"] == 1.0).all()  # nothing scored yet
    # The served baseline is the persistence-EWMA reference itself: both columns agree.
    assert np.allclose(
        quantiles,
        predictions[["baseline_q05", "baseline_q25", "baseline_q50", "baseline_q75", "baseline_q95"]],
        rtol=0.05,
    )
    # The next session scores them; the baseline stays the champion (no second registration).
    assert run_daily(defs, instance, "2006-03-02").success
    log = table(history, "performance_log", "target_date")
    assert len(log) == 4 and set(log["model_kind"]) == {champion.kind}
    assert len(registry.client().search_model_versions("name = 'stock_lstm'")) == 1


@pytest.mark.slow
def test_predictions_use_the_champion_as_of_their_date_and_fridays_are_scored_on_monday(defs, instance, history):
    assert run_daily(defs, instance, "2006-03-02").success  # the persistence-EWMA baseline v1 is champion
    registry = defs.resources["model_registry"]
    baseline = registry.champion_as_of("2006-03-02").version
    later = run_retraining(defs, instance, "2006-03-03")  # an LSTM; promote it for 03-03 if the gate kept the baseline
    lstm = defs.resources["object_io_manager"].read("candidate_model", "2006-03-03").version
    if not later["promoted"]:
        registry.promote(lstm, "2006-03-03", "test")

    for day in ["2006-03-02", "2006-03-03", "2006-03-06"]:  # Thursday, Friday, Monday
        daily_ok(defs, instance, day)
    predictions = table(history, "daily_predictions", "prediction_date")
    by_day = predictions.groupby("prediction_date")["model_version"].unique().to_dict()
    assert list(by_day["2006-03-02"]) == [baseline]  # before the LSTM's promotion: never a later model
    assert list(by_day["2006-03-03"]) == [lstm] and list(by_day["2006-03-06"]) == [lstm]
    friday = predictions[predictions["prediction_date"] == "2006-03-03"]
    assert set(friday["target_date"]) == {"2006-03-06"} and sorted(friday["ticker"]) == ["AAPL", "GOOG", "IBM", "MSFT"]

    log = table(history, "performance_log", "target_date")
    monday = log[log["target_date"] == "2006-03-06"]
    assert len(monday) == 4 and set(monday["prediction_date"]) == {"2006-03-03"}
    prices = table(history, "raw_prices", "date", "2006-03-06", "2006-03-06").set_index("ticker")
    row = monday.set_index("ticker").loc["AAPL"]
    assert row["actual_close"] == pytest.approx(prices.loc["AAPL", "adj_close"])
    assert row["abs_error"] == pytest.approx(abs(row["predicted_close"] - row["actual_close"]))
    assert row["direction_hit"] == float(
        (row["predicted_close"] > row["last_close"]) == (row["actual_close"] > row["last_close"])
    )
    # Thursday's session had no predictions targeting it: an empty partition with a note, not a failure.
    assert len(log[log["target_date"] == "2006-03-02"]) == 0
    note = instance.get_latest_materialization_event(defs.resolve_assets_def("performance_log").key)
    assert note.asset_materialization.partition == "2006-03-06"
    meta = note.asset_materialization.metadata
    assert meta["rolling_samples"].value == 8 and meta["champion_version"].value == lstm
    assert meta["detector_statistic"].value == 0.0 and not meta["detector_fired"].value  # still warming up


@pytest.mark.slow
def test_predictions_before_a_holiday_are_scored_after_it(defs, instance, history):
    assert trading_calendar.next_session("2006-04-13") == dt.date(2006, 4, 17)  # Good Friday
    for day in ["2006-04-13", "2006-04-17"]:
        assert run_daily(defs, instance, day).success
    log = table(history, "performance_log", "target_date")
    assert set(log["prediction_date"]) == {"2006-04-13"} and set(log["target_date"]) == {"2006-04-17"}


def guard_metadata(instance, defs):
    event = instance.get_latest_materialization_event(defs.resolve_assets_def("daily_predictions").key)
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_an_implausible_champion_never_serves_and_the_sensor_retrains_at_once(defs, instance, history):
    """A drill champion whose every median is +20%: the guard serves persistence's forecast on its
    very first session, the rows and the metadata say why, and the sensor asks for retraining."""
    from dagster import build_sensor_context

    from stock_assets.replay import install_drill_champion

    day = "2006-03-01"
    assert run_daily(defs, instance, "2006-02-28").success  # the first champion; arms nothing yet
    sensor = defs.resolve_sensor_def("retraining_sensor")
    armed = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))
    drill = install_drill_champion(defs, day, bias=0.2)
    assert run_daily(defs, instance, day).success
    rows = table(history, "daily_predictions", "prediction_date", day, day)
    assert len(rows) == 4 and rows["served_by_fallback"].astype(bool).all()
    assert set(rows["model_version"]) == {drill.version}  # the champion of record; its forecast not served
    assert (rows["predicted_close"] == rows["last_close"]).all()  # persistence's median
    assert rows["fallback_reason"].str.contains(r"median move \+22\.14% is .* predicted standard deviations").all()
    meta = guard_metadata(instance, defs)
    assert meta["guard_fallback_rows"] == 4 and meta["guard_reason"].count("AAPL:") == 1
    tick = sensor.evaluate_tick(
        build_sensor_context(instance=instance, cursor=armed.cursor, definitions=defs, resources=defs.resources)
    )
    assert [(r.partition_key, r.tags["stock_assets/reason"][:11]) for r in tick.run_requests] == [(day, "guard: AAPL")]


def test_a_champion_losing_badly_two_sessions_running_is_taken_off(defs, instance, history):
    """The loss rule alone (the sigma rule set out of reach): a +5% drill serves two sessions, is
    scored twice at several times the baseline's pinball loss, and the third session is persistence's."""
    from stock_assets.replay import install_drill_champion
    from stock_assets.settings import GuardSettings

    settings = history.model_copy(update={"guard": GuardSettings(max_sigmas=50)})
    defs = build_definitions(settings)
    install_drill_champion(defs, "2006-03-01", bias=0.05)
    served = []
    for day in ["2006-03-01", "2006-03-02", "2006-03-03", "2006-03-06"]:
        assert run_daily(defs, instance, day).success
        rows = table(settings, "daily_predictions", "prediction_date", day, day)
        served.append(bool(rows["served_by_fallback"].astype(bool).any()))
    assert served == [False, False, True, True]  # 2 sessions served, then off until a retraining decides
    reason = guard_metadata(instance, defs)["guard_reason"]
    assert reason.startswith("the champion's pinball loss ran above 2x the baseline's in each of its last 2")
    log = table(settings, "performance_log", "target_date")
    assert (log.loc[log["target_date"] == "2006-03-06", "served_by_fallback"] == 1.0).all()
