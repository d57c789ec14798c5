"""`replay`: daily operations over past sessions, the sensor's requests and the gate's decisions."""

from pathlib import Path

import pytest

from stock_assets.defs import build_definitions
from stock_assets.lib import trading_calendar
from stock_assets.replay import replay, search_progress
from stock_assets.resources.warehouse import get_warehouse
from stock_assets_tests.conftest import TEST_SETTINGS

REPO_ROOT = Path(__file__).resolve().parents[1]


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
    # The plausibility guard: a +5% median is beyond 2.5 predicted standard deviations of these
    # tickers' daily moves, so persistence serves from the drill's first session and the sensor asks
    # for a retraining for that very session (before the guard: the coverage alarm, after 10 sessions).
    assert reason.startswith("guard: "), reason
    assert "predicted standard deviations" in reason or "pinball loss ran above" in reason
    assert first["partition"] == sessions[0]
    assert report.drill["caught_after_sessions"] <= 2 and report.drill_line.startswith("drill caught after")
    rows = get_warehouse(history.warehouse_url).read_range(
        "daily_predictions", "prediction_date", sessions[0], sessions[0]
    )
    assert rows["served_by_fallback"].astype(bool).any()  # tickers whose +5% is beyond 2.5 sd: not served
    assert report.drill["caught"].startswith(first["partition"])
    assert first["promoted"] or first["fallback"]
    replaced = defs.resources["model_registry"].champion_as_of(sessions[-1])
    assert replaced.kind != "drill-biased" and replaced.partition == first["partition"]
    assert report.drill["replaced"] == f"{first['partition']} by {replaced.label}"


RUNS_OF_JOB = """
query Runs($filter: RunsFilter!) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId pipelineName status repositoryOrigin { repositoryLocationName repositoryName }
                            tags { key value } } }
  }
}
"""


def graphql(instance, query: str, variables: dict) -> dict:
    """Dagster's GraphQL schema over `instance`, as the webserver serves it (no code location loaded:
    runs are read from the instance's run storage)."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster_graphql.test.utils import execute_dagster_graphql

    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget([])) as process:
        result = execute_dagster_graphql(process.create_request_context(), query, variables)
    assert not result.errors, result.errors
    return result.data


def failures(instance, run_id: str) -> list[str]:
    """The step failures of a run, for an assertion's message."""
    from dagster import DagsterEventType

    events = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    out = []
    for event in events:
        error, chain = event.dagster_event.event_specific_data.error, []
        while error is not None:
            chain.append(error.message.strip()[:400])
            error = error.cause
        out.append(f"{event.step_key}: {' <- '.join(chain)}")
    return out


def test_the_workspace_file_names_the_location_the_replay_runs_belong_to():
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    from stock_assets.replay import CODE_MODULE, LOCATION_NAME

    (origin,) = WorkspaceFileTarget(paths=[str(REPO_ROOT / "workspace.yaml")]).create_origins()
    assert origin.location_name == LOCATION_NAME
    assert origin.loadable_target_origin.module_name == CODE_MODULE


@pytest.mark.slow
def test_replayed_runs_belong_to_the_code_location_and_the_job_pages_list_them(instance, history):
    strict = history.model_copy(
        update={"monitoring": TEST_SETTINGS.monitoring.model_copy(update={"max_champion_age_sessions": 1})}
    )
    defs = build_definitions(strict)
    sessions = [d.isoformat() for d in trading_calendar.sessions_between("2006-02-23", "2006-02-28")]
    lines = []
    report = replay(defs, instance, sessions, progress=lines.append, heartbeat_seconds=0.5)
    assert not report.failed_daily_runs and report.retrainings
    # Long work is never silent: the heartbeat names the run, its time and the running step.
    assert report.retrainings[0]["success"], failures(instance, report.retrainings[0]["run_id"])
    search = [line for line in lines if line.startswith("    ... retraining 2006-02-2") and "step best_params" in line]
    assert search, lines
    # What the heartbeat says of a search, read from the Optuna storage (here after it finished).
    said = search_progress(defs, report.retrainings[0]["partition"])("best_params")
    import optuna

    studies = [s.study_name for s in optuna.storages.RDBStorage(strict.optuna_url).get_all_studies()]
    assert said == f"{strict.training.n_trials} search trials finished", (studies, report.retrainings)

    # What the UI's job page asks for: the job's runs tagged with the repository of its code location.
    label = {"key": ".dagster/repository", "value": "__repository__@stock_assets"}
    data = graphql(instance, RUNS_OF_JOB, {"filter": {"pipelineName": "daily_job", "tags": [label]}})
    runs = data["runsOrError"]["results"]
    assert len(runs) == len(sessions) and all(r["status"] == "SUCCESS" for r in runs)
    assert {r["repositoryOrigin"]["repositoryLocationName"] for r in runs} == {"stock_assets"}
    partitions = sorted(next(t["value"] for t in r["tags"] if t["key"] == "dagster/partition") for r in runs)
    assert partitions == sessions
    # The retrainings the sensor requested: on the job page, and on the sensor's page (its name tag).
    sensor_tag = {"key": "dagster/sensor_name", "value": "retraining_sensor"}
    data = graphql(instance, RUNS_OF_JOB, {"filter": {"pipelineName": "retraining_job", "tags": [label, sensor_tag]}})
    retrainings = data["runsOrError"]["results"]
    assert {r["runId"] for r in retrainings} == {r["run_id"] for r in report.retrainings}
    tags = {t["key"]: t["value"] for t in retrainings[0]["tags"]}
    assert tags["dagster/run_key"].startswith("retrain-") and tags["stock_assets/run_kind"] == "retraining"
    # A run of another location is not listed under this one.
    other = {"key": ".dagster/repository", "value": "__repository__@elsewhere"}
    assert (
        graphql(instance, RUNS_OF_JOB, {"filter": {"pipelineName": "daily_job", "tags": [other]}})["runsOrError"][
            "results"
        ]
        == []
    )

    # The reports' automation condition asked for both reports after the replay; they ran as one run
    # of the code location, and they say which model served each session.
    assert report.reports["requested"] == ["model_leaderboard", "monitoring_report"] and report.reports["success"]
    from dagster import AssetKey

    def latest(name):
        event = instance.get_latest_materialization_event(AssetKey(name))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}

    board = latest("model_leaderboard")["leaderboard"].records
    registry = defs.resources["model_registry"]
    versions = registry.client().search_model_versions(f"name = '{registry.model_name}'")
    assert sorted(r.data["version"] for r in board) == sorted(f"v{v.version}" for v in versions)
    # Every replayed session (and the first one's bootstrap) was served by exactly one version.
    assert sum(r.data["sessions_served"] for r in board) == len(sessions)
    first = next(r.data for r in board if r.data["version"] == "v1")
    assert first["kind"] == "persistence" and first["promoted_for"].startswith(sessions[0])
    assert first["mlflow_version"].endswith(f"/#/models/{registry.model_name}/versions/1")
    retrained = next(r.data for r in board if r.data["trained_for"] == report.retrainings[0]["partition"])
    assert retrained["verdict"] in ("promoted", "rejected") and 0 <= retrained["dm_p_value"] <= 1
    assert retrained["holdout_pinball_ratio"] != "-"
    monitoring = latest("monitoring_report")
    timeline = [r.data for r in monitoring["champion_timeline"].records]
    assert timeline[0]["from"] == sessions[0] and sum(r["sessions"] for r in timeline) == len(sessions)
    for chart in ("detector_chart", "forecasts_chart"):
        assert monitoring[chart].startswith(f"![{chart}](http://127.0.0.1:5000/get-artifact?")
        assert "data:image/png;base64," in monitoring[f"{chart}_embedded"]
