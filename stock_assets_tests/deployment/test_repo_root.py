"""The repository root just works: Dagster's and dg's CLIs run from it with no DAGSTER_HOME and no
PostgreSQL variables, on the local instance the top-level dagster.yaml describes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stock_assets_tests.deployment.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def run_from_root(tmp_path, *cmd: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "STOCK_ASSETS_"))}
    env["STOCK_ASSETS_HOME"] = str(tmp_path / "home")
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_the_two_instance_configs_are_local_and_deployment():
    local = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())
    deployment = yaml.safe_load((REPO_ROOT / "docker" / "dagster.yaml").read_text())
    assert "run_storage" not in local and "event_log_storage" not in local  # SQLite under DAGSTER_HOME
    assert deployment["run_storage"]["class"] == "PostgresRunStorage"
    for config in (local, deployment):
        assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
        (limit,) = config["concurrency"]["runs"]["tag_concurrency_limits"]
        assert limit == {"key": "stock_assets/run_kind", "value": "retraining", "limit": 1}
        assert config["telemetry"] == {"enabled": False} and config["run_monitoring"]["enabled"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "cmd",
    [
        (
            "dagster",
            "asset",
            "materialize",
            "-m",
            "stock_assets.definitions",
            "--select",
            "raw_prices",
            "--partition",
            "2004-08-20",
        ),
        ("dg", "check", "defs"),
        ("dg", "launch", "--assets", "raw_prices", "--partition", "2004-08-23"),
    ],
    ids=["dagster asset materialize", "dg check defs", "dg launch"],
)
def test_the_clis_run_from_the_repository_root_without_environment(tmp_path, cmd):
    result = run_from_root(tmp_path, str(BIN / cmd[0]), *cmd[1:])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DAGSTER_PG" not in result.stderr
