"""The code location loads fast, lists what docs/architecture.md promises, and keeps heavy imports lazy."""

import subprocess
import sys

from stock_assets.definitions import defs
from stock_assets.settings import ARCHITECTURE_NAMES, SettingsError, load_settings

ASSETS = {
    "raw_prices",
    "processed_features",
    "scalers",
    "scaled_sets",
    "best_params",
    "candidate_model",
    "production_model",
    "daily_predictions",
    "performance_log",
}


def test_the_graph_and_its_lineage():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == ASSETS
    parents = {
        k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()
    }
    assert parents["processed_features"] == {"raw_prices"}
    assert parents["scaled_sets"] == {"processed_features", "raw_prices", "scalers"}
    assert parents["candidate_model"] == {"scaled_sets", "scalers", "best_params"}
    assert parents["production_model"] == {"candidate_model"}
    assert parents["daily_predictions"] == {"processed_features", "raw_prices", "production_model"}
    assert parents["performance_log"] == {"daily_predictions", "raw_prices"}
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups["raw_prices"] == "ingestion" and groups["performance_log"] == "monitoring"
    assert {j.name for j in defs.resolve_all_job_defs()} >= {"daily_job", "retraining_job", "price_history_job"}
    assert defs.resolve_schedule_def("daily_schedule").job_name == "daily_job"
    assert defs.resolve_sensor_def("retraining_sensor").job_name == "retraining_job"


def test_loading_the_code_location_does_not_import_torch_mlflow_or_optuna():
    code = (
        "import sys, stock_assets.definitions; "
        "print(sorted(m for m in ('torch', 'mlflow', 'optuna') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_loading_the_code_location_and_its_jobs_prints_no_warning(tmp_path):
    """What `dagster dev` or a launched run prints on loading: nothing (docs/decisions.md, "Quiet by default")."""
    code = "import stock_assets.definitions as d; print(len(d.defs.resolve_all_job_defs()))"
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
