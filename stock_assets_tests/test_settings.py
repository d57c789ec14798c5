"""Settings: pydantic-settings reads defaults < settings file < environment; errors name the key,
the range and where the value came from, and never show a password."""

import pytest

from stock_assets.settings import Settings, SettingsError, load_settings

PASSWORD = "s3cr3t-pw"


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text(
        f"home: {tmp_path / 'home'}\ntickers: [IBM]\nsource: sample\n"
        "training:\n  n_trials: 7\n  max_epochs: 9\nmonitoring:\n  cooldown_sessions: 2\n"
    )
    return path


def test_the_environment_overrides_the_file_key_by_key_also_in_nested_sections(settings_file):
    from_file = load_settings(settings_file, environ={})
    assert from_file.tickers == ("IBM",) and from_file.training.n_trials == 7 and from_file.training.max_epochs == 9
    env = {
        "STOCK_ASSETS_TICKERS": "aapl,MSFT",
        "STOCK_ASSETS_TRAINING__N_TRIALS": "5",
        "STOCK_ASSETS_TRAINING__SEQUENCE_LENGTHS": "20,5",
        "STOCK_ASSETS_MONITORING__MAPE_MAX": "0.1",
    }
    settings = load_settings(settings_file, environ=env)
    assert settings.tickers == ("AAPL", "MSFT")
    assert settings.training.n_trials == 5 and settings.training.max_epochs == 9  # the file's other keys stay
    assert settings.training.sequence_lengths == (5, 20)
    assert settings.monitoring.mape_max == 0.1 and settings.monitoring.cooldown_sessions == 2


def test_the_settings_file_comes_from_its_variable(settings_file, tmp_path):
    assert load_settings(environ={"STOCK_ASSETS_SETTINGS_FILE": str(settings_file)}).tickers == ("IBM",)
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(environ={"STOCK_ASSETS_SETTINGS_FILE": str(tmp_path / "missing.yaml")})
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SettingsError, match="must hold a mapping of keys, got list"):
        load_settings(tmp_path / "list.yaml", environ={})


def test_mlflow_tracking_uri_falls_back_to_mlflows_own_variable(settings_file):
    settings = load_settings(settings_file, environ={"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert settings.tracking_uri == "http://mlflow:5000"
    assert settings.env_var_for("mlflow_tracking_uri") == "MLFLOW_TRACKING_URI"
    ours = load_settings(
        settings_file,
        environ={"MLFLOW_TRACKING_URI": "http://a:5000", "STOCK_ASSETS_MLFLOW_TRACKING_URI": "http://b:5000"},
    )
    assert ours.tracking_uri == "http://b:5000"
    assert ours.env_var_for("mlflow_tracking_uri") == "STOCK_ASSETS_MLFLOW_TRACKING_URI"
    assert load_settings(settings_file, environ={}).env_var_for("mlflow_tracking_uri") is None


def test_errors_say_whether_the_value_came_from_the_file_or_which_variable(settings_file, tmp_path):
    good = settings_file.read_text()
    settings_file.write_text(good.replace("n_trials: 7", "n_trials: 0"))
    with pytest.raises(SettingsError) as caught:
        load_settings(settings_file, environ={"STOCK_ASSETS_TRAINING__MAX_EPOCHS": "5000"})
    message = str(caught.value)
    expected = f"training.n_trials: Input should be greater than or equal to 1 (got 0; from file {settings_file})"
    assert expected in message
    assert "training.max_epochs: Input should be less than or equal to 1000 (got '5000'; " in message
    assert "from env STOCK_ASSETS_TRAINING__MAX_EPOCHS" in message
    settings_file.write_text(good)
    with pytest.raises(SettingsError, match=r"foo: Extra inputs are not permitted .*from env STOCK_ASSETS_FOO"):
        load_settings(settings_file, environ={"STOCK_ASSETS_FOO": "1"})  # a typo fails, it is not ignored
    with pytest.raises(SettingsError, match=r"accepted_moves: not valid JSON.*STOCK_ASSETS_ACCEPTED_MOVES"):
        load_settings(settings_file, environ={"STOCK_ASSETS_ACCEPTED_MOVES": "AAPL 2005-02-28"})
    moves = load_settings(settings_file, environ={"STOCK_ASSETS_ACCEPTED_MOVES": '[["AAPL", "2005-02-28"]]'})
    assert [(t, d.isoformat()) for t, d in moves.accepted_moves] == [("AAPL", "2005-02-28")]


@pytest.mark.parametrize(
    "env",
    [
        {"STOCK_ASSETS_SOURCE": "csv"},  # a rule across keys: the whole settings mapping is the input
        {"STOCK_ASSETS_MLFLOW_HTTP_TIMEOUT_SECONDS": "0"},
        {"STOCK_ASSETS_DATABSE_URL": "x"},  # a typo next to the secret
    ],
    ids=["model rule", "field rule", "unknown key"],
)
def test_errors_never_show_a_password(settings_file, env):
    secrets = {
        "STOCK_ASSETS_DATABASE_URL": f"postgresql+psycopg2://app:{PASSWORD}@db/w",
        "STOCK_ASSETS_OPTUNA_STORAGE": f"postgresql://app@db/o?password={PASSWORD}",
        "MLFLOW_TRACKING_URI": f"http://ops:{PASSWORD}@mlflow:5000",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(settings_file, environ={**secrets, **env})
    assert PASSWORD not in str(caught.value) and "invalid stock_assets settings" in str(caught.value)


def test_a_misspelt_secret_is_masked_where_it_is_shown(settings_file):
    with pytest.raises(SettingsError) as caught:
        load_settings(settings_file, environ={"STOCK_ASSETS_DATABSE_URL": f"postgresql://app:{PASSWORD}@db/w"})
    assert "got 'postgresql://app:***@db/w'" in str(caught.value)


def test_settings_built_in_code_read_neither_the_environment_nor_the_file(monkeypatch):
    monkeypatch.setenv("STOCK_ASSETS_TICKERS", "IBM")
    monkeypatch.setenv("STOCK_ASSETS_TRAINING__N_TRIALS", "99")
    assert Settings().tickers == ("AAPL", "MSFT", "IBM", "GOOG") and Settings().training.n_trials == 12
    assert Settings(tickers="ibm,goog").tickers == ("IBM", "GOOG")
    assert load_settings(environ={"STOCK_ASSETS_HOME": str(Settings().home)}).training.n_trials == 12


def test_the_exchange_and_sanity_rules_are_settings_with_their_defaults(tmp_path):
    from stock_assets.lib import trading_calendar
    from stock_assets.lib.prices import SanityRules

    with trading_calendar.using_exchange("XNYS"):
        packaged = load_settings(environ={"STOCK_ASSETS_HOME": str(tmp_path / "home")})
        assert packaged.exchange == "XNYS" and packaged.sanity.rules() == SanityRules()
        env = {"STOCK_ASSETS_HOME": str(tmp_path / "home"), "STOCK_ASSETS_SANITY__MAX_VOLUME": "5e11"}
        assert load_settings(environ=env).sanity.rules().max_volume == 5e11
        with pytest.raises(SettingsError, match=r"sanity.max_split_ratio: Input should be greater than 1 \(got '0.5'"):
            load_settings(environ={**env, "STOCK_ASSETS_SANITY__MAX_SPLIT_RATIO": "0.5"})
        env = {
            "STOCK_ASSETS_HOME": str(tmp_path / "home"),
            "STOCK_ASSETS_EXCHANGE": "xlon",
            "STOCK_ASSETS_SOURCE": "yfinance",
            "STOCK_ASSETS_START_DATE": "2012-10-29",  # not an NYSE session (hurricane Sandy); London traded
        }
        assert load_settings(environ=env).exchange == "XLON" and trading_calendar.EXCHANGE == "XLON"
    assert trading_calendar.EXCHANGE == "XNYS"


def test_a_full_disk_is_said_before_anything_runs(tmp_path, monkeypatch):
    """Dagster's own storage fails with a raw database error when its disk fills up: the settings
    refuse first, naming the folder, the free space and what to do."""
    import collections
    import shutil

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 5 * 2**20, 5 * 2**20))
    dagster_home = tmp_path / "dh"
    dagster_home.mkdir()
    environ = {"STOCK_ASSETS_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(dagster_home)}
    with pytest.raises(SettingsError) as error:
        load_settings(environ=environ)
    message = str(error.value)
    assert f"the disk holding home ({tmp_path / 'home'}) has only 5 MB free (at least 100 MB needed)" in message
    assert "Free space there, or point home at another disk" in message
