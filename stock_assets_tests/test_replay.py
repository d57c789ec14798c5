"""`replay`: daily operations over past sessions, the sensor's requests and the gate's decisions."""

import pytest

from stock_assets.defs import build_definitions
from stock_assets.lib import trading_calendar
from stock_assets.replay import replay
from stock_assets_tests.conftest import TEST_SETTINGS


@pytest.mark.slow
def test_replay_serves_a_baseline_then_the_sensor_requests_a_retraining_and_the_gate_decides(instance, history):
    # A champion older than 2 sessions is stale: the sensor must request a retraining early in the replay.
    strict = history.model_copy(
        update={"monitoring": TEST_SETTINGS.monitoring.model_copy(update={"max_champion_age_sessions": 2})}
    )
    defs = build_definitions(strict)
    sessions = [d.isoformat() for d in trading_calendar.sessions_between("2006-02-23", "2006-03-03")]
    report = replay(defs, instance, sessions)
    assert report.sessions == sessions and not report.failed_daily_runs
    assert report.predictions_scored == 4 * (len(sessions) - 1)
    assert report.retrainings, "the sensor should have requested a retraining"
    first = report.retrainings[0]
    # The baseline was promoted for 02-23; two sessions later (02-27) it is stale.
    assert first["partition"] == "2006-02-27"
    run = instance.get_run_by_id(first["run_id"])
    assert run.tags["dagster/run_key"] == f"retrain-{first['partition']}"
    assert run.tags["stock_assets/trigger"] == "retraining_sensor"
    assert "sessions old" in run.tags["stock_assets/reason"]
    assert first["success"] and 0.0 <= first["p_value"] <= 1.0
    assert first["gate"].startswith("promoted" if first["promoted"] else "rejected")
    champion = defs.resources["model_registry"].champion_as_of(sessions[-1])
    assert (champion.kind not in ("persistence", "drift", "garch")) == first["promoted"]


@pytest.mark.slow
def test_the_detector_catches_a_biased_champion_and_the_loop_replaces_it(instance, history):
    defs = build_definitions(history)
    sessions = [d.isoformat() for d in trading_calendar.sessions_between("2006-03-01", "2006-03-31")]
    # The drill: from the first session on, every forecast is a +5% log return.
    report = replay(defs, instance, sessions, drill=(sessions[0], 0.05))
    assert report.drill["installed"] == sessions[0] and "drill-biased" in report.drill["model"]
    assert report.retrainings, "the detector never fired on a champion 5% off every session"
    first = report.retrainings[0]
    run = instance.get_run_by_id(first["run_id"])
    assert run.tags["stock_assets/trigger"] == "retraining_sensor"
    reason = run.tags["stock_assets/reason"]
    assert reason.startswith(("CUSUM", "coverage alarm")), reason  # a detector, not the age rule
    # Scoring starts one session after the drill; a +5% median puts most closes outside its 90%
    # interval, so the coverage alarm has its evidence as soon as it may judge (40 rows: 10 sessions
    # of 4 tickers), before the CUSUM's warm-up and evidence (measured before: the 18th session).
    delay = sessions.index(first["partition"])
    assert 10 <= delay <= 20
    assert report.drill["caught"].startswith(first["partition"])
    assert first["promoted"] or first["fallback"]
    replaced = defs.resources["model_registry"].champion_as_of(sessions[-1])
    assert replaced.kind != "drill-biased" and replaced.partition == first["partition"]
    assert report.drill["replaced"] == f"{first['partition']} by {replaced.label}"
