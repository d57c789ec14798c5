"""The registry tells the truth (real MLflow registry on local files, real processes): the alias
`champion` only moves forward, a killed promotion is repaired by its re-run, two runs for one
session never both promote, `challenger` never names a rejected candidate."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stock_assets.defs.champions import register_baseline
from stock_assets.lib.forecasters import gaussian_baseline

TICKERS = ["AAPL", "MSFT"]
LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


@pytest.fixture
def registry(resources):
    return resources["model_registry"]


def baseline_version(registry, day: str, kind: str = "persistence") -> str:
    forecaster = gaussian_baseline(kind, [0.0, 0.0], TICKERS, LEVELS, 0.94, day)
    with registry.mlflow_run_for(f"run-{kind}-{day}", day, "test"):
        return register_baseline(registry, forecaster, day, f"run-{kind}-{day}").version


def tag_keys(registry, version: str) -> list[str]:
    tags = registry.client().get_model_version("stock_lstm", version).tags
    return sorted(k for k in tags if k.startswith("promotion/"))


def test_a_promotion_for_an_older_session_is_recorded_but_never_moves_the_alias(registry):
    v1, v2 = baseline_version(registry, "2010-01-04"), baseline_version(registry, "2010-03-01")
    registry.promote(v2, "2010-03-01", "daily-0301")
    assert registry.alias("champion").version == v2
    registry.promote(v1, "2010-02-01", "backfill-0201")  # e.g. an old daily_predictions partition
    assert registry.alias("champion").version == v2  # the latest session's champion, still
    assert registry.champion_as_of("2010-02-15").version == v1  # the as-of history answers for the past
    assert registry.champion_as_of("2010-03-02").version == v2
    registry.promote(v1, "2010-03-02", "daily-0302")  # a newer session: the alias follows
    assert registry.alias("champion").version == v1


KILLED_PROMOTION = """
import os, signal
from stock_assets.resources.model_registry import ModelRegistryResource

def die(self, alias, version):  # kill -9 between the history tag and the alias update
    os.kill(os.getpid(), signal.SIGKILL)

ModelRegistryResource.set_alias = die
ModelRegistryResource(tracking_uri={uri!r}).promote({version!r}, "2010-03-01", "killed-run")
"""


def test_a_run_killed_between_the_history_and_the_alias_is_repaired_by_its_rerun(registry, tmp_path):
    v1, v2 = baseline_version(registry, "2010-01-04"), baseline_version(registry, "2010-03-01")
    registry.promote(v1, "2010-01-04", "first")
    code = KILLED_PROMOTION.format(uri=registry.resolved_tracking_uri(), version=v2)
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True)
    assert killed.returncode == -9
    assert tag_keys(registry, v2) == ["promotion/2010-03-01/killed-run"]  # recorded ...
    assert registry.alias("champion").version == v1  # ... but the alias lies
    registry.promote(v2, "2010-03-01", "killed-run")  # the re-run: nothing recorded twice, alias repaired
    assert tag_keys(registry, v2) == ["promotion/2010-03-01/killed-run"]
    assert registry.alias("champion").version == v2
    registry.set_alias("champion", v1)  # any other promotion (or serving, which syncs) repairs it too
    assert registry.sync_champion_alias().version == v2 and registry.alias("champion").version == v2


def test_of_two_runs_promoting_one_session_at_once_only_the_first_stands(registry):
    v1, v2 = baseline_version(registry, "2010-03-01"), baseline_version(registry, "2010-03-01", "drift")
    started = "2000-01-01T00:00:00+00:00"  # both runs started before either promoted
    first = registry.promote(v1, "2010-03-01", "run-a", run_started_at=started)
    second = registry.promote(v2, "2010-03-01", "run-b", run_started_at=started)
    assert first.version == v1 and second.version == v1  # run-b withdrew its promotion
    assert tag_keys(registry, v2) == [] and registry.alias("champion").version == v1
    # A later, sequential run for the same session (started after run-a's promotion) does promote.
    later = registry.promote(v2, "2010-03-01", "run-c", run_started_at="2999-01-01T00:00:00+00:00")
    assert later.version == v2 and registry.champion_as_of("2010-03-01").version == v2


CONCURRENT_FIRST_RUN = """
import sys
from dagster import DagsterInstance
from stock_assets.defs import build_definitions
from stock_assets.run_config import QUIET
from stock_assets_tests.conftest import TEST_SETTINGS
from pathlib import Path

settings = TEST_SETTINGS.model_copy(update={{"home": Path({home!r})}})
defs = build_definitions(settings)
result = defs.resolve_job_def("daily_job").execute_in_process(
    instance=DagsterInstance.get(), partition_key="2006-03-01", run_config=QUIET, raise_on_error=False
)
for event in result.all_events:
    if event.is_step_failure or event.is_failure or "FAIL" in event.event_type_value:
        print(event.event_type_value, event.step_key, event.message)
        data = event.event_specific_data
        if getattr(data, "error", None) is not None:
            print(data.error.to_string())
sys.exit(0 if result.success else 1)
"""


@pytest.mark.slow
def test_two_first_daily_runs_at_once_register_one_baseline_and_one_promotion(history, registry, tmp_path):
    """Two real processes run the very first daily_job for one session at the same time."""
    code = textwrap.dedent(CONCURRENT_FIRST_RUN.format(home=str(history.home)))
    dagster_home = tmp_path / "dh"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    from dagster import DagsterInstance

    DagsterInstance.from_config(str(dagster_home)).dispose()  # the instance exists, as in any deployment
    root = str(Path(__file__).resolve().parents[2])  # the repository: stock_assets_tests importable
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": root}
    logs = [tmp_path / f"run{i}.log" for i in range(2)]
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code], env=env, cwd=tmp_path, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        for log in logs
    ]
    codes = [p.wait(timeout=600) for p in runs]
    assert codes == [0, 0], "\n".join(log.read_text()[-6000:] for log in logs)
    versions = registry.client().search_model_versions("name = 'stock_lstm'")
    assert [v.tags["model_kind"] for v in versions] == ["persistence"]
    assert [(p.version, p.partition) for p in registry.promotions()] == [(str(versions[0].version), "2006-03-01")]
    assert registry.alias("champion").version == str(versions[0].version)


def test_challenger_never_names_a_rejected_candidate(registry):
    from mlflow.exceptions import MlflowException

    client = registry.client()
    versions = [baseline_version(registry, "2010-03-01", kind) for kind in ("persistence", "drift")]
    for version in versions:  # stand-ins for two LSTM candidates: only the kind tag matters here
        client.set_model_version_tag("stock_lstm", version, "model_kind", "pooled_lstm")
    registry.set_alias("challenger", versions[1])
    registry.record_verdict(versions[1], "rejected", 0.42, "rejected: pinball not below the baseline's", "2010-03-01")
    assert registry.alias("challenger").version == versions[0]  # the latest still undecided
    tags = client.get_model_version("stock_lstm", versions[1]).tags
    assert (tags["gate_verdict"], tags["gate_p_value"], tags["gate_partition"]) == ("rejected", "0.42", "2010-03-01")
    assert client.get_run(client.get_model_version("stock_lstm", versions[1]).run_id).data.tags["gate_verdict"] == (
        "rejected"
    )
    registry.record_verdict(versions[0], "rejected", 0.3, "rejected", "2010-03-02")
    assert registry.alias("challenger") is None
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias("stock_lstm", "challenger")


KILLED_REGISTRATION = """
import os, signal
from stock_assets.lib.forecasters import gaussian_baseline
from stock_assets.resources.model_registry import ModelRegistryResource

def die(self, *args, **kwargs):  # kill -9 after MLflow registered the version, before it is described
    os.kill(os.getpid(), signal.SIGKILL)

ModelRegistryResource._registered = die
registry = ModelRegistryResource(tracking_uri={uri!r})
levels = (0.05, 0.25, 0.5, 0.75, 0.95)
baseline = gaussian_baseline("persistence", [0.0, 0.0], ["AAPL", "MSFT"], levels, 0.94, "2010-03-01")
with registry.mlflow_run_for("killed-run", "2010-03-01", "daily_job"):
    registry.log_baseline(baseline, "2010-03-01", "killed-run")
"""


def test_runs_a_killed_process_left_running_are_closed_and_its_version_marked_orphan(registry, instance, tmp_path):
    code = KILLED_REGISTRATION.format(uri=registry.resolved_tracking_uri())
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True)
    assert killed.returncode == -9
    client = registry.client()
    (left,) = client.search_runs([registry.experiment_id()], filter_string="attributes.status = 'RUNNING'")
    (orphan,) = client.search_model_versions("name = 'stock_lstm'")
    assert "model_kind" not in orphan.tags
    # The next step of any run (its Dagster instance knows no live "killed-run") cleans up first.
    with registry.mlflow_run_for("next-run", "2010-03-02", "daily_job", instance):
        pass
    assert client.get_run(left.info.run_id).info.status == "KILLED"
    assert "killed-run" in client.get_run(left.info.run_id).data.tags["stock_assets_closed"]
    assert not client.search_runs([registry.experiment_id()], filter_string="attributes.status = 'RUNNING'")
    marked = client.get_model_version("stock_lstm", orphan.version)
    assert marked.tags["orphan"] == "its run was killed" and marked.description.startswith("orphan")
    assert registry.promotions() == []  # never a champion
