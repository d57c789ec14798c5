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


# --- issue 23: a password in any URL form never shows --------------------------------------------
PLANTED = "Pl4nted-pw"  # in every URL form below; no output, log, stored run or file may hold it
URL_FORMS = {
    "userinfo": f"postgresql+psycopg2://app:{PLANTED}@127.0.0.1:5432/test",
    "query password": f"postgresql+psycopg2://app@127.0.0.1:5432/test?password={PLANTED}",
    "query pwd": f"postgresql+psycopg2://app@127.0.0.1:5432/test?sslmode=disable&pwd={PLANTED}",
    "url characters": "postgresql+psycopg2://app:p%40ss%3Aw%2Frd%23" + PLANTED + "@127.0.0.1/test",
    "mlflow userinfo": f"http://ops:{PLANTED}@127.0.0.1:5999",
}


def planted_environment(tmp_path, **extra) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "DAGSTER_HOME": str(tmp_path / "dh"),
        "STOCK_ASSETS_HOME": str(tmp_path / "home"),
        "STOCK_ASSETS_DATABASE_URL": URL_FORMS["userinfo"],
        "STOCK_ASSETS_OPTUNA_STORAGE": URL_FORMS["query password"],
        "MLFLOW_TRACKING_URI": URL_FORMS["mlflow userinfo"],
        **extra,
    }


@pytest.mark.parametrize(
    "broken, shown",
    [
        ({"STOCK_ASSETS_END_DATE": "2003-01-02"}, "end_date 2003-01-02 must lie between start_date"),
        ({"STOCK_ASSETS_SOURCE": "csv"}, "source 'csv' needs csv_path"),
        ({"STOCK_ASSETS_DATABASE_URL": URL_FORMS["query pwd"] + "&bad"}, None),  # a valid URL: loads
        ({"STOCK_ASSETS_OPTUNA_STORAGE": URL_FORMS["url characters"], "STOCK_ASSETS_TICKERS": "AAPL,??"}, "tickers"),
        ({"STOCK_ASSETS_DATABASE_URL": f"postgresql://app:{PLANTED}@db/w"}, "write postgresql+psycopg2://"),
        ({"STOCK_ASSETS_DATABSE_URL": URL_FORMS["query password"]}, "databse_url"),
    ],
    ids=["end before start", "csv without csv_path", "query pwd", "url characters", "bare postgresql", "misspelt"],
)
def test_settings_errors_on_the_cli_never_show_a_password(tmp_path, broken, shown):
    (tmp_path / "dh").mkdir()
    env = planted_environment(tmp_path, **broken)
    cmd = [str(Path(os.sys.executable).parent / "dagster"), "definitions", "validate", "-m", "stock_assets.definitions"]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    if shown is None:
        assert proc.returncode == 0, output[-2000:]
    else:
        assert proc.returncode != 0 and shown in output, output[-2000:]
    assert PLANTED not in output
    assert PLANTED not in "".join(p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file())


LOCATION_ERRORS = """
{ workspaceOrError { __typename ... on Workspace { locationEntries { name locationOrLoadError {
    __typename ... on PythonError { message stack cause { message stack } }
} } } } }
"""


def test_the_code_location_error_served_over_graphql_never_shows_a_password(tmp_path, monkeypatch):
    """What the UI shows (and `dagster dev` logs) when the code location fails to load."""
    from dagster import instance_for_test
    from dagster_graphql.test.utils import define_out_of_process_context, execute_dagster_graphql

    for name, value in planted_environment(tmp_path, STOCK_ASSETS_END_DATE="2003-01-02").items():
        if name != "PATH":
            monkeypatch.setenv(name, value)
    (tmp_path / "dh").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dh")) as instance:
        definitions = str(REPO_ROOT / "stock_assets" / "definitions.py")
        with define_out_of_process_context(definitions, "defs", instance) as context:
            answer = execute_dagster_graphql(context, LOCATION_ERRORS)
    text = str(answer.data)
    assert "PythonError" in text and "must lie between start_date" in text, text[:2000]
    assert PLANTED not in text


@pytest.mark.parametrize("form", sorted(URL_FORMS))
def test_the_settings_file_refuses_a_password_in_any_form(tmp_path, form):
    key = "mlflow_tracking_uri" if form.startswith("mlflow") else "optuna_storage"
    (tmp_path / "s.yaml").write_text(f"home: {tmp_path / 'home'}\n{key}: '{URL_FORMS[form]}'\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path / "s.yaml", environ={})
    assert f"['{key}'] hold a password" in str(caught.value) and PLANTED not in str(caught.value)


@pytest.mark.parametrize(
    "text, key",
    [
        (f"csv_path: https://u:{PLANTED}@files.example.com/prices.csv\nsource: csv\n", "csv_path"),
        (f"password: {PLANTED}\n", "password"),
        (f"yfinance:\n  api_key: {PLANTED}\n", "yfinance.api_key"),
        (f"tickers: [AAPL]\ndatabase_url: 'host=db user=app password={PLANTED}'\n", "database_url"),
    ],
    ids=["url in another key", "a password key", "a nested key", "libpq keywords"],
)
def test_the_settings_file_refuses_a_password_under_any_key(tmp_path, text, key):
    (tmp_path / "s.yaml").write_text(f"home: {tmp_path / 'home'}\n{text}")
    with pytest.raises(SettingsError) as caught:
        load_settings(tmp_path / "s.yaml", environ={})
    assert f"['{key}'] hold a password" in str(caught.value) and PLANTED not in str(caught.value)


def test_a_query_parameter_password_from_the_environment_never_reaches_runs_or_files(
    postgres_url, tmp_path, monkeypatch, instance
):
    """`?password=` in the environment's URL works (libpq takes it) and, like user info, Dagster stores
    only the variable's name: run config, job snapshot, event log, every file of DAGSTER_HOME and home."""
    from stock_assets.defs import build_definitions

    url = sa.engine.make_url(postgres_url)
    query_url = f"postgresql+psycopg2://{url.username}@{url.host}:{url.port}/{url.database}?password={PLANTED}"
    monkeypatch.setenv("STOCK_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STOCK_ASSETS_DATABASE_URL", query_url)
    monkeypatch.setenv("STOCK_ASSETS_OPTUNA_STORAGE", URL_FORMS["query pwd"])
    settings = load_settings()
    job = build_definitions(settings).resolve_job_def("price_history_job")
    result = job.execute_in_process(
        instance=instance, partition_key="2012-10-31", asset_selection=[AssetKey("raw_prices")]
    )
    assert result.success
    with sa.create_engine(postgres_url).connect() as conn:
        assert conn.execute(sa.text("select count(*) from raw_prices")).scalar() == 4
    stored = stored_text(instance, result.run_id)
    assert "STOCK_ASSETS_DATABASE_URL" in stored and PLANTED not in stored
    home = "".join(p.read_bytes().decode("latin-1") for p in (tmp_path / "home").rglob("*") if p.is_file())
    assert PLANTED not in home


def test_a_warehouse_error_masks_a_query_password(tmp_path):
    from stock_assets.resources.warehouse import Warehouse, WarehouseError

    store = Warehouse(f"postgresql+psycopg2://app@127.0.0.1:1/none?password={PLANTED}&connect_timeout=2")
    with pytest.raises(WarehouseError) as caught:
        store.read_range("raw_prices", "date", "2010-01-04", "2010-01-05")
    assert "unreachable" in str(caught.value) and "password=***" in str(caught.value)
    assert PLANTED not in str(caught.value)


def test_containers_refuse_weak_passwords():
    for weak in ("password", "Postgres", "short-pw", "123456789"):
        proc = run_check({"POSTGRES_PASSWORD": weak})
        assert proc.returncode != 0 and "started" not in proc.stdout, weak
        assert "weak" in proc.stderr and f"{weak} " not in proc.stderr.replace("password.", "")  # never echoed


def test_passwords_with_url_characters_are_encoded_into_the_urls():
    raw = "p@ss:w/rd#1x"
    base = {"PATH": os.environ["PATH"], "APP_DB_PASSWORD": raw, "POSTGRES_PASSWORD": "0f3a9c2e71d4"}
    base["STOCK_ASSETS_DATABASE_URL"] = f"postgresql+psycopg2://stock_assets:{raw}@postgres:5432/warehouse"
    proc = subprocess.run(
        ["sh", str(CHECK_SECRETS), "sh", "-c", 'printf %s "$STOCK_ASSETS_DATABASE_URL"'],
        env=base,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    parsed = sa.engine.make_url(proc.stdout)
    assert (parsed.password, parsed.host, parsed.database) == (raw, "postgres", "warehouse")
