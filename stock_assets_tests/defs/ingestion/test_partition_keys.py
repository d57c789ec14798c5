"""Partition keys are sessions (issue 23, item 2): a run whose partition key is a weekend or holiday fails
at once with a message naming the key and its nearest sessions, whatever launched it (the CLI's
`dagster job execute --tags`, GraphQL `launchRun`, a range run), nothing is stored under it, and the
instance's run retries do not retry it."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import DagsterRunStatus, instance_for_test

from stock_assets.resources.warehouse import LEDGER
from stock_assets_tests.helpers import range_tags

REPO_ROOT = Path(__file__).resolve().parents[3]
SATURDAY, HOLIDAY = "2010-03-06", "2010-12-24"  # a Saturday; Christmas observed on Friday 2010-12-24
NEAREST = {SATURDAY: "the nearest sessions are 2010-03-05 and 2010-03-08", HOLIDAY: "2010-12-23 and 2010-12-27"}
RETRYING = "run_retries:\n  enabled: true\n  max_retries: 2\ntelemetry:\n  enabled: false\n"


def stored_keys(home: Path) -> list[str]:
    """Every partition key the warehouse ledger holds (none if nothing was ever written)."""
    db = home / "warehouse.db"
    if not db.exists():
        return []
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        if not sa.inspect(conn).has_table(LEDGER):
            return []
        return [k for (k,) in conn.execute(sa.text(f"select partition_key from {LEDGER}"))]


@pytest.fixture
def cli_env(tmp_path):
    dagster_home = tmp_path / "dh"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(RETRYING)
    return {
        "PATH": "/usr/bin:/bin",
        "DAGSTER_HOME": str(dagster_home),
        "STOCK_ASSETS_HOME": str(tmp_path / "home"),
        "STOCK_ASSETS_FEATURE_LOOKBACK": "220",
    }


@pytest.mark.parametrize("key", [SATURDAY, HOLIDAY])
def test_cli_tags_with_a_non_session_key_fail_at_once_and_are_not_retried(tmp_path, cli_env, key):
    cmd = [
        str(Path(sys.executable).parent / "dagster"),
        "job",
        "execute",
        "-m",
        "stock_assets.definitions",
        "-j",
        "daily_job",
        "--tags",
        json.dumps({"dagster/partition": key}),
    ]
    proc = subprocess.run(cmd, env=cli_env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert f"partition key {key} is not a trading session of XNYS (America/New_York)" in output
    assert NEAREST[key] in output
    assert stored_keys(tmp_path / "home") == []  # neither Monday's rows nor anything else was written
    with instance_for_test(temp_dir=cli_env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.FAILURE
        assert run.tags["dagster/retry_on_asset_or_op_failure"] == "false"
        assert run.tags.get("dagster/will_retry") == "false"


def test_a_range_run_ending_on_a_weekend_is_refused(defs, instance, settings):
    job = defs.resolve_job_def("price_history_job")
    result = job.execute_in_process(instance=instance, tags=range_tags("2010-03-01", SATURDAY), raise_on_error=False)
    assert not result.success
    from stock_assets_tests.deployment.conftest import error_text

    assert f"partition key {SATURDAY} is not a trading session" in error_text(result)
    assert stored_keys(settings.home) == []


def test_a_training_run_for_a_weekend_names_the_key_not_a_missing_upstream(defs, instance):
    """Assets of every job read through the project's IO managers, which refuse the key first."""
    job = defs.resolve_job_def("retraining_job")
    result = job.execute_in_process(instance=instance, tags={"dagster/partition": SATURDAY}, raise_on_error=False)
    assert not result.success
    from stock_assets_tests.deployment.conftest import error_text

    message = error_text(result)
    assert f"partition key {SATURDAY} is not a trading session" in message and NEAREST[SATURDAY] in message
    assert "Materialize" not in message
    assert instance.get_run_by_id(result.run_id).tags["dagster/retry_on_asset_or_op_failure"] == "false"


LAUNCH = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN_LOGS = """
query($runId: ID!) {
  logsForRun(runId: $runId) {
    __typename
    ... on EventConnection {
      events { __typename ... on MessageEvent { message } ... on ExecutionStepFailureEvent { error { message } } }
    }
  }
}
"""


def test_graphql_launch_run_with_a_weekend_key_fails_and_is_not_retried(tmp_path, monkeypatch):
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    monkeypatch.setenv("STOCK_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STOCK_ASSETS_FEATURE_LOOKBACK", "220")
    (tmp_path / "dh").mkdir()
    overrides = {
        "run_retries": {"enabled": True, "max_retries": 2},
        # Launch at once (no daemon dequeues runs in a test).
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
    }
    with instance_for_test(temp_dir=str(tmp_path / "dh"), overrides=overrides) as instance:
        definitions = str(REPO_ROOT / "stock_assets" / "definitions.py")
        with define_out_of_process_context(definitions, "defs", instance) as context:
            location = context.code_location_names[0]
            params = {
                "selector": {
                    "repositoryLocationName": location,
                    "repositoryName": "__repository__",
                    "jobName": "daily_job",
                },
                "executionMetadata": {"tags": [{"key": "dagster/partition", "value": SATURDAY}]},
            }
            launched = execute_dagster_graphql(context, LAUNCH, {"params": params}).data["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            run_id = launched["run"]["runId"]
            deadline = time.monotonic() + 240
            while not instance.get_run_by_id(run_id).is_finished and time.monotonic() < deadline:
                time.sleep(0.5)
            run = instance.get_run_by_id(run_id)
            assert run.status == DagsterRunStatus.FAILURE
            assert run.tags["dagster/retry_on_asset_or_op_failure"] == "false"
            assert run.tags.get("dagster/will_retry") == "false"
            logs = execute_dagster_graphql(context, RUN_LOGS, {"runId": run_id}).data["logsForRun"]["events"]
            text = "\n".join((e.get("message") or "") + str((e.get("error") or {}).get("message")) for e in logs)
            assert f"partition key {SATURDAY} is not a trading session" in text
            assert NEAREST[SATURDAY] in text
    assert stored_keys(tmp_path / "home") == []


BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) { __typename ... on PythonError { message } }
}
"""


def test_a_job_backfill_of_a_weekend_key_is_refused_at_launch(tmp_path, monkeypatch):
    """GraphQL `launchPartitionBackfill` of daily_job's partition set names only partitions: a Saturday
    is refused before any run exists (Dagster's PartitionKeysNotFoundError, against our partitions)."""
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    monkeypatch.setenv("STOCK_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STOCK_ASSETS_FEATURE_LOOKBACK", "220")
    (tmp_path / "dh").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dh")) as instance:
        definitions = str(REPO_ROOT / "stock_assets" / "definitions.py")
        with define_out_of_process_context(definitions, "defs", instance) as context:
            repository = {"repositoryLocationName": context.code_location_names[0], "repositoryName": "__repository__"}
            params = {
                "partitionNames": [SATURDAY],
                "selector": {"partitionSetName": "daily_job_partition_set", "repositorySelector": repository},
            }
            answer = execute_dagster_graphql(context, BACKFILL, {"params": params}).data["launchPartitionBackfill"]
            assert answer["__typename"] == "PartitionKeysNotFoundError", answer
            params["partitionNames"] = ["2010-03-05"]  # the session before it is accepted
            answer = execute_dagster_graphql(context, BACKFILL, {"params": params}).data["launchPartitionBackfill"]
            assert answer["__typename"] == "LaunchBackfillSuccess", answer
        assert instance.get_runs() == [] and len(instance.get_backfills()) == 1
