"""Secrets stay secret: passwords reach resources as `EnvVar`s, so Dagster's run storage and event log
never hold them; the settings file refuses them; the compose stack refuses placeholder passwords."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster import AssetKey, EnvVar
from dagster._serdes import serialize_value

from stock_assets.settings import SettingsError, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cr3t-pw"  # trust auth on the test server ignores it; the point is where it ends up


def with_password(url: str, password: str = PASSWORD) -> str:
    return sa.engine.make_url(url).set(password=password).render_as_string(hide_password=False)


def stored_text(instance, run_id: str) -> str:
    """Everything Dagster stored about a run, serialized: the run (config, tags), its job and plan
    snapshots and every event record; plus the raw bytes of every file of the instance."""
    run = instance.get_run_by_id(run_id)
    parts = [
        serialize_value(run),
        serialize_value(instance.get_job_snapshot(run.job_snapshot_id)),
        serialize_value(instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)),
        *(serialize_value(record) for record in instance.all_logs(run_id)),
    ]
    for path in Path(instance.root_directory).rglob("*"):
        if path.is_file():
            parts.append(path.read_bytes().decode("latin-1"))
    return "\n".join(parts)


@pytest.fixture
def secret_environment(postgres_url, tmp_path, monkeypatch):
    """Deployment-style settings: every store URL in the environment, each with a password."""
    env = {
        "STOCK_ASSETS_HOME": str(tmp_path / "home"),
        "STOCK_ASSETS_DATABASE_URL": with_password(postgres_url),
        "STOCK_ASSETS_OPTUNA_STORAGE": with_password(postgres_url),
        "MLFLOW_TRACKING_URI": with_password("postgresql+psycopg2://postgres@127.0.0.1:5432/unused"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_database_passwords_never_reach_run_storage_or_the_event_log(secret_environment, postgres_url, instance):
    from stock_assets.defs import build_definitions

    settings = load_settings()
    resources = build_definitions(settings).resources
    assert resources["warehouse"].database_url == EnvVar("STOCK_ASSETS_DATABASE_URL")
    assert resources["optuna_storage"].url == EnvVar("STOCK_ASSETS_OPTUNA_STORAGE")
    assert resources["model_registry"].tracking_uri == EnvVar("MLFLOW_TRACKING_URI")

    job = build_definitions(settings).resolve_job_def("price_history_job")
    result = job.execute_in_process(
        instance=instance, partition_key="2012-10-31", asset_selection=[AssetKey("raw_prices")]
    )
    assert result.success
    # The run reached the warehouse through the password URL it resolved from the environment...
    with sa.create_engine(postgres_url).connect() as conn:
        assert conn.execute(sa.text("select count(*) from raw_prices")).scalar() == 4
    # ... yet Dagster stored only the variable's name.
    stored = stored_text(instance, result.run_id)
    assert "STOCK_ASSETS_DATABASE_URL" in stored  # the resource config is in what was searched
    assert PASSWORD not in stored


def test_a_url_set_in_code_is_passed_as_is(postgres_url):
    """What the EnvVar prevents: a URL given as a plain value lands in the job snapshot (which is why
    the settings file refuses passwords and load_settings records where URLs came from)."""
    from stock_assets.defs import build_definitions
    from stock_assets_tests.conftest import TEST_SETTINGS

    settings = TEST_SETTINGS.model_copy(update={"database_url": with_password(postgres_url)})
    assert settings.env_var_for("database_url") is None
    snapshot = build_definitions(settings).resolve_job_def("price_history_job").get_job_snapshot()
    assert PASSWORD in serialize_value(snapshot)


def test_env_var_is_used_only_while_the_value_is_the_variables(tmp_path):
    env = {"STOCK_ASSETS_HOME": str(tmp_path / "home"), "STOCK_ASSETS_DATABASE_URL": "sqlite:///x.db"}
    settings = load_settings(environ=env)
    assert settings.env_var_for("database_url") == "STOCK_ASSETS_DATABASE_URL"
    assert settings.env_var_for("optuna_storage") is None  # the embedded default: nothing secret
    assert settings.model_copy(update={"database_url": "sqlite:///y.db"}).env_var_for("database_url") is None
    both = load_settings(
        environ={**env, "MLFLOW_TRACKING_URI": "http://a:5000", "STOCK_ASSETS_MLFLOW_TRACKING_URI": "http://b:5000"}
    )
    assert both.mlflow_tracking_uri == "http://b:5000"
    assert both.env_var_for("mlflow_tracking_uri") == "STOCK_ASSETS_MLFLOW_TRACKING_URI"


def test_the_settings_file_refuses_passwords(tmp_path):
    (tmp_path / "s.yaml").write_text(
        f"home: {tmp_path / 'home'}\ndatabase_url: {with_password('postgresql://u@h/db')}\n"
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path / "s.yaml", environ={})
    assert "['database_url'] hold a password" in str(caught.value)
    assert "STOCK_ASSETS_DATABASE_URL" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_docker_env_file_is_git_ignored():
    ignored = (REPO_ROOT / ".gitignore").read_text().splitlines()
    assert "docker/.env" in ignored


# --- the compose stack ------------------------------------------------------------------------------
COMPOSE_FILE = REPO_ROOT / "docker" / "docker-compose.yml"
CHECK_SECRETS = REPO_ROOT / "docker" / "entrypoint" / "check-secrets.sh"
PASSWORDS = ("POSTGRES_SUPERUSER_PASSWORD", "POSTGRES_APP_PASSWORD")


def compose_config(tmp_path, **overrides) -> subprocess.CompletedProcess:
    """`docker-compose config` with docker/.env.example plus `overrides` as the env file."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose not installed (Debian: apt-get install -y docker-compose)")
    example = (REPO_ROOT / "docker" / ".env.example").read_text().splitlines()
    lines = [line for line in example if line.split("=", 1)[0] not in overrides]
    env_file = tmp_path / "compose.env"
    env_file.write_text("\n".join([*lines, *(f"{k}={v}" for k, v in overrides.items())]) + "\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "COMPOSE_"))}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        env=clean,
        timeout=60,
    )


def test_compose_refuses_the_example_env_file_until_passwords_are_set(tmp_path):
    proc = compose_config(tmp_path)
    assert proc.returncode != 0
    assert "set POSTGRES_SUPERUSER_PASSWORD" in proc.stderr or "set POSTGRES_APP_PASSWORD" in proc.stderr
    ok = compose_config(tmp_path, POSTGRES_SUPERUSER_PASSWORD="0f3a9c2e71d4", POSTGRES_APP_PASSWORD="9b1e77d0c5a8")
    assert ok.returncode == 0, ok.stderr
    assert "0f3a9c2e71d4" in ok.stdout and "check-secrets" in ok.stdout


def run_check(env: dict) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ["PATH"]}
    return subprocess.run(
        ["sh", str(CHECK_SECRETS), "echo", "started"], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(
    "env, named",
    [
        ({"POSTGRES_PASSWORD": "change-me-superuser-password"}, "POSTGRES_PASSWORD"),
        ({"DAGSTER_PG_PASSWORD": "change-me-app-password"}, "DAGSTER_PG_PASSWORD"),
        ({"APP_DB_PASSWORD": ""}, "APP_DB_PASSWORD"),
        (
            {"STOCK_ASSETS_DATABASE_URL": "postgresql+psycopg2://stock_assets:change-me-app-password@postgres/w"},
            "STOCK_ASSETS_DATABASE_URL",
        ),
        (
            {"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://stock_assets:@postgres/mlflow"},
            "MLFLOW_BACKEND_STORE_URI",
        ),
    ],
    ids=["superuser placeholder", "app placeholder", "empty", "placeholder in a URL", "empty in a URL"],
)
def test_containers_refuse_to_start_with_placeholder_passwords(env, named):
    proc = run_check(env)
    assert proc.returncode != 0 and "started" not in proc.stdout
    assert named in proc.stderr and "docker/.env" in proc.stderr
    assert "change-me" not in proc.stderr.replace("change-me placeholder", "")  # the value is not echoed


def test_containers_start_with_real_passwords():
    proc = run_check(
        {
            "POSTGRES_PASSWORD": "0f3a9c2e71d4",
            "DAGSTER_PG_PASSWORD": "9b1e77d0c5a8",
            "STOCK_ASSETS_DATABASE_URL": "postgresql+psycopg2://stock_assets:9b1e77d0c5a8@postgres:5432/warehouse",
            "MLFLOW_TRACKING_URI": "http://mlflow:5000",
        }
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "started"
