"""The code location loads fast, lists what docs/architecture.md promises, and keeps heavy imports lazy."""

import json
import os
import subprocess
import sys
from pathlib import Path

from stock_assets.definitions import defs as load_defs
from stock_assets.settings import ARCHITECTURE_NAMES, SettingsError, load_settings

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"
UPDATE = "UPDATE_SNAPSHOTS"


def describe(defs) -> dict:
    """What the code location declares, as plain data: assets (group, partitions, parents, checks),
    jobs (their assets), schedules and sensors (their jobs)."""
    graph = defs.resolve_asset_graph()
    checks: dict[str, list] = {}
    for key in graph.asset_check_keys:
        checks.setdefault(key.asset_key.to_user_string(), []).append(key.name)
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "partitions": None
            if partitions is None
            else f"{type(partitions).__name__} from {partitions.start:%Y-%m-%d}",
            "parents": sorted(p.to_user_string() for p in node.parent_keys),
            "checks": sorted(checks.get(key.to_user_string(), [])),
        }
    jobs = {
        job.name: sorted(k.to_user_string() for k in job.asset_layer.selected_asset_keys)
        for job in sorted(defs.resolve_all_job_defs(), key=lambda j: j.name)
        if not job.name.startswith("__")
    }
    return {
        "assets": assets,
        "jobs": jobs,
        "schedules": {s.name: defs.resolve_schedule_def(s.name).job_name for s in defs.schedules},
        "sensors": {s.name: defs.resolve_sensor_def(s.name).job_name for s in defs.sensors},
    }


def test_the_definitions_match_the_snapshot():
    """Keys, groups, partitions, lineage, checks and jobs in one reviewed file; after an intended
    change, rerun with UPDATE_SNAPSHOTS=1 and review the diff of the snapshot."""
    described = describe(load_defs())
    if os.environ.get(UPDATE):
        SNAPSHOT.write_text(json.dumps(described, indent=2, sort_keys=True) + "\n")
    assert described == json.loads(SNAPSHOT.read_text()), f"definitions changed: review, then rerun with {UPDATE}=1"


def test_importing_the_code_location_has_no_side_effects(tmp_path):
    """No settings read, no folder created, no warning filter installed until Dagster loads it."""
    code = (
        "import os, sys, warnings; n = len(warnings.filters); import stock_assets.definitions; "
        "print(os.listdir('.'), len(warnings.filters) - n)"
    )
    env = {"PATH": "/usr/bin:/bin", "STOCK_ASSETS_SOURCE": "not-a-source"}  # invalid, yet never read
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, cwd=tmp_path
    )
    assert proc.stdout.strip() == "[] 0"


def test_loading_the_code_location_does_not_import_torch_mlflow_or_optuna():
    code = (
        "import sys, stock_assets.definitions as d; d.defs(); "
        "print(sorted(m for m in ('torch', 'mlflow', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_loading_the_code_location_and_its_jobs_prints_no_warning(tmp_path):
    """What `dagster dev` or a launched run prints on loading: nothing (docs/decisions.md, "Quiet by default")."""
    code = "import stock_assets.definitions as d; print(len(d.defs().resolve_all_job_defs()))"
    env = {"PATH": "/usr/bin:/bin", "STOCK_ASSETS_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert int(proc.stdout) >= 3
    assert proc.stderr == ""


def test_bad_settings_name_the_key_and_the_allowed_range(tmp_path):
    env = {"STOCK_ASSETS_MONITORING__MAPE_MAX": "3", "STOCK_ASSETS_TICKERS": "AAPL,??", "STOCK_ASSETS_SOURCE": "ftp"}
    try:
        load_settings(environ=env)
    except SettingsError as exc:
        message = str(exc)
    else:
        raise AssertionError("bad settings were accepted")
    assert "monitoring.mape_max: Input should be less than or equal to 1 (got '3'" in message
    assert "env STOCK_ASSETS_MONITORING__MAPE_MAX" in message
    assert "tickers: Value error, not ticker symbols: ['??']" in message
    assert "source: Input should be 'sample', 'csv' or 'yfinance'" in message
    (tmp_path / "s.yaml").write_text("source: csv\n")
    try:
        load_settings(tmp_path / "s.yaml", environ={})
    except SettingsError as exc:
        assert "source 'csv' needs csv_path" in str(exc)
    good = load_settings(environ={"STOCK_ASSETS_TICKERS": "aapl, msft", "STOCK_ASSETS_TRAINING__N_TRIALS": "5"})
    assert good.tickers == ("AAPL", "MSFT") and good.training.n_trials == 5


def test_settings_know_every_architecture_without_importing_torch():
    from stock_assets.lib.models import ARCHITECTURES

    assert ARCHITECTURE_NAMES == ARCHITECTURES
