"""The one place that reads user settings: a YAML file plus ``STOCK_ASSETS_*`` environment overrides.

`load_settings()` is called once, by `stock_assets/definitions.py` (and by scripts, which are
entry points of their own); everything else receives the validated `Settings` object. Validation
happens when the code location loads, so a bad value fails fast with the key name, the allowed
range and where the value came from instead of surfacing mid-run; so does a `home` that cannot be
written. URLs that may hold a password come from the environment only, and the settings remember
which variable each came from (`Settings.env_var_for`), so resources receive the variable's name,
not the secret. pydantic-settings does the reading (environment over file over defaults,
`STOCK_ASSETS_TRAINING__N_TRIALS` for nested keys); docs/decisions.md, "Settings and policies".
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from pydantic_settings import SettingsError as SourceError

from stock_assets.lib import trading_calendar
from stock_assets.lib.prices import SanityRules
from stock_assets.lib.redaction import has_password, mask_secrets, masked_url
from stock_assets.lib.study import ARCHITECTURE_NAMES

ENV_PREFIX = "STOCK_ASSETS_"
SAMPLE_LAST_SESSION = dt.date(2013, 3, 1)  # the bundled sample's last session (stock_assets/data/PROVENANCE.md)
MAX_TICKERS = 500  # baskets up to 500 tickers are benchmarked (benchmarks/scale.py)
SETTINGS_FILE_ENV = "STOCK_ASSETS_SETTINGS_FILE"
DEFAULT_SETTINGS_FILE = Path(__file__).with_name("settings.yaml")
__all__ = ["ARCHITECTURE_NAMES", "Settings", "SettingsError", "load_settings"]  # ARCHITECTURE_NAMES: lib/study.py
_TICKER = re.compile(r"^[A-Z0-9^][A-Z0-9.\-=^]{0,14}$")
# Settings that may carry a password: read from the environment only, and handed to resources as
# the variable's name (docs/decisions.md, "Settings and policies"). MLflow's own MLFLOW_TRACKING_URI
# counts as the tracking URI's variable when STOCK_ASSETS_MLFLOW_TRACKING_URI is not set.
SECRET_SETTINGS = {
    "database_url": (ENV_PREFIX + "DATABASE_URL",),
    "optuna_storage": (ENV_PREFIX + "OPTUNA_STORAGE",),
    "mlflow_tracking_uri": (ENV_PREFIX + "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
}


def _comma_list(value: Any) -> Any:
    """ "10,20" (an environment variable) -> ["10", "20"]; lists pass through."""
    return [v for v in value.split(",") if v.strip()] if isinstance(value, str) else value


class SettingsError(ValueError):
    """A setting is missing or out of range; the message names the key and what is allowed. Every
    message goes through `mask_secrets` (lib/redaction.py): it never holds a password."""

    def __init__(self, message: object) -> None:
        super().__init__(mask_secrets(message))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class YFinanceSettings(_Section):
    timeout_seconds: float = Field(30.0, ge=1, le=600, description="hard bound on one download")
    max_retries: int = Field(3, ge=0, le=10)
    backoff_seconds: float = Field(2.0, ge=0, le=120)


class MonitoringSettings(_Section):
    window_sessions: int = Field(10, ge=1, le=250, description="sessions of the rolling metrics")
    detector_drift: float = Field(0.35, gt=0, le=5, description="CUSUM allowance per session (noise units)")
    detector_threshold: float = Field(9.0, gt=0, le=100, description="CUSUM alarm level")
    detector_min_sessions: int = Field(10, ge=2, le=250, description="sessions before the detector judges")
    max_champion_age_sessions: int = Field(63, ge=1, le=2520, description="retrain a champion older than this")
    cooldown_sessions: int = Field(5, ge=0, le=250)
    mape_max: float | None = Field(None, gt=0, le=1, description="optional absolute guard, off by default")
    direction_accuracy_min: float | None = Field(None, ge=0, le=1, description="optional guard, off by default")
    min_samples: int = Field(20, ge=1, le=100_000, description="scored predictions the optional guards need")


class TrainingSettings(_Section):
    training_window: int = Field(1500, ge=150, le=10_000, description="sessions of history per retraining")
    n_trials: int = Field(12, ge=1, le=1000)
    search_timeout_seconds: int = Field(600, ge=10, le=86_400)
    search_workers: int = Field(
        1, ge=1, le=64, description="Optuna worker processes sharing one study in the relational storage"
    )
    max_epochs: int = Field(25, ge=1, le=1000)
    patience: int = Field(4, ge=1, le=100)
    seed: int = Field(7, ge=0)
    sequence_lengths: Annotated[tuple[int, ...], NoDecode, BeforeValidator(_comma_list)] = Field(
        (10, 20), min_length=1, description="searched window lengths"
    )
    gate_alpha: float = Field(0.10, gt=0, lt=1, description="gate: one-sided Diebold-Mariano significance level")

    @field_validator("sequence_lengths")
    @classmethod
    def _check_lengths(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 2 <= v <= 120 for v in value):
            raise ValueError(f"each sequence length must be between 2 and 120, got {list(value)}")
        return tuple(sorted(set(value)))


class ForecastSettings(_Section):
    """Forecasts are distributions (docs/decisions.md, "Forecasts are distributions")."""

    quantiles: Annotated[tuple[float, ...], NoDecode, BeforeValidator(_comma_list)] = Field(
        (0.05, 0.25, 0.5, 0.75, 0.95), description="levels of the forecast quantiles (symmetric, with 0.5)"
    )
    ewma_lambda: float = Field(0.94, ge=0.5, lt=1, description="decay of the baselines' EWMA volatility")
    volatility_lookback: int = Field(250, ge=60, le=2000, description="sessions of prices behind a volatility")
    calibration: bool = Field(True, description="recalibrate served intervals online (adaptive conformal)")
    calibration_gamma: float = Field(0.05, gt=0, le=0.5, description="step of the adaptive conformal update")

    @field_validator("quantiles")
    @classmethod
    def _check_quantiles(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        from stock_assets.lib.distributions import check_levels

        return check_levels(value)


class GuardSettings(_Section):
    """The plausibility guard on served forecasts (docs/decisions.md, "A bad champion never serves twice")."""

    enabled: bool = Field(True, description="serve persistence instead of an implausible champion forecast")
    max_sigmas: float = Field(
        2.5, ge=1, le=50, description="largest median move, in the baseline's predicted standard deviations"
    )
    loss_multiple: float = Field(
        2.0, gt=1, le=100, description="champion's per-session pinball loss above this multiple of the baseline's"
    )
    loss_sessions: int = Field(
        2, ge=1, le=20, description="... in each of this many latest scored sessions takes the champion off"
    )


_RULES = SanityRules()


class SanitySettings(_Section):
    """What vendors get wrong, refused before storage (lib/prices.SanityRules; docs/inputs-and-secrets.md)."""

    split_tolerance: float = Field(
        _RULES.split_tolerance, ge=0, le=0.5, description="a declared split's factor in adj_close's move (log; 0 = off)"
    )
    undeclared_split_tolerance: float = Field(
        _RULES.undeclared_split_tolerance, ge=0, le=0.2, description="adj_close moving by a split ratio (log; 0 = off)"
    )
    dividend_min_fraction: float = Field(
        _RULES.dividend_min_fraction,
        ge=0,
        le=1,
        description="dividends from this share of the price must show in adj_close",
    )
    max_volume: float = Field(_RULES.max_volume, gt=0, le=1e15, description="largest volume (shares) of one session")
    max_dividend_fraction: float = Field(
        _RULES.max_dividend_fraction, gt=0, le=10, description="largest dividend as a share of the close"
    )
    max_split_ratio: float = Field(
        _RULES.max_split_ratio, gt=1, le=1e6, description="stock_splits within 1/this..this (0 = no split)"
    )
    first_row_sessions: int = Field(
        _RULES.first_row_sessions, ge=0, le=250, description="rows after a file's first row validated with it"
    )
    file_name_ticker: bool = Field(_RULES.file_name_ticker, description="AAPL.csv must hold AAPL's rows")

    def rules(self) -> SanityRules:
        return SanityRules(**self.model_dump())


class Settings(BaseSettings):
    """Every setting with its default and bounds. Built in code (`Settings(...)`, tests and scripts)
    it holds what it is given; `load_settings()` adds the environment and the settings file."""

    # Comma lists (STOCK_ASSETS_TICKERS=AAPL,MSFT) are split by the validators: NoDecode keeps
    # pydantic-settings from reading them as JSON.
    model_config = SettingsConfigDict(extra="forbid", frozen=True, env_prefix=ENV_PREFIX, env_nested_delimiter="__")

    tickers: Annotated[tuple[str, ...], NoDecode] = ("AAPL", "MSFT", "IBM", "GOOG")
    exchange: str = Field(
        trading_calendar.DEFAULT_EXCHANGE,
        description="exchange_calendars code of the market (XNYS, XKRX, XLON, ...): partitions, sessions, schedule",
    )
    source: Literal["sample", "csv", "yfinance"] = "sample"
    csv_path: Path | None = None
    start_date: dt.date = dt.date(2004, 8, 19)
    end_date: dt.date | None = Field(
        None, description="last partition; default: the sample's last session for `sample`, else today's"
    )
    home: Path = Path(".stock_assets")
    database_url: str | None = None
    optuna_storage: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_http_timeout_seconds: int = Field(60, ge=1, le=600, description="bound on one MLflow REST request")
    mlflow_http_max_retries: int = Field(2, ge=0, le=7, description="retries of a failed MLflow REST request")
    model_name: str = Field("stock_lstm", pattern=r"^[A-Za-z0-9_.\-]{1,100}$")
    feature_lookback: int = Field(260, ge=220, le=2000, description="sessions of prices behind each feature row")
    overlap_sessions: int = Field(5, ge=0, le=60, description="sessions re-fetched to detect vendor re-adjustments")
    max_abs_log_return: float = Field(
        1.0, gt=0, le=10, description="largest one-day |log return| of adj_close accepted before storage"
    )
    accepted_moves: tuple[tuple[str, dt.date], ...] = Field(
        (), description="known events allowed beyond max_abs_log_return, as [TICKER, YYYY-MM-DD] pairs"
    )
    yfinance: YFinanceSettings = YFinanceSettings()
    training: TrainingSettings = TrainingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    forecast: ForecastSettings = ForecastSettings()
    guard: GuardSettings = GuardSettings()
    sanity: SanitySettings = SanitySettings()
    # {setting: (environment variable, value read from it)}, filled by load_settings().
    _env_sources: dict[str, tuple[str, str]] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, *_: Any, **__: Any
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the settings file; only arguments outside load_settings."""
        loading = _LOADING.get()
        if loading is None:
            return (init_settings,)
        return (init_settings, *loading.sources(settings_cls))

    @field_validator("tickers", mode="before")
    @classmethod
    def _split_tickers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [t for t in value.split(",") if t.strip()]
        return tuple(str(t).strip().upper() for t in value)

    @field_validator("tickers")
    @classmethod
    def _check_tickers(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not 1 <= len(value) <= MAX_TICKERS:
            raise ValueError(f"between 1 and {MAX_TICKERS} tickers allowed, got {len(value)}")
        bad = [t for t in value if not _TICKER.match(t)]
        if bad:
            raise ValueError(f"not ticker symbols: {bad} (letters, digits, '.', '-', '=', '^')")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate tickers in {list(value)}")
        return value

    @field_validator("exchange", mode="before")
    @classmethod
    def _check_exchange(cls, value: Any) -> Any:
        return trading_calendar.check_exchange(str(value).strip().upper())

    @field_validator("start_date")
    @classmethod
    def _check_start(cls, value: dt.date, info: ValidationInfo) -> dt.date:
        exchange = info.data.get("exchange", trading_calendar.DEFAULT_EXCHANGE)
        earliest = trading_calendar.earliest_session(exchange)
        if not earliest <= value <= dt.date.today():
            raise ValueError(f"must be between {earliest} (the {exchange} calendar's start) and today, got {value}")
        return value

    @model_validator(mode="after")
    def _check_source(self) -> Settings:
        if self.source == "sample" and self.exchange != "XNYS":
            raise ValueError(
                f"source 'sample' holds NYSE (XNYS) sessions but exchange is {self.exchange}; use source csv "
                "(csv_path) or yfinance for that market, or exchange XNYS"
            )
        if self.source == "csv" and self.csv_path is None:
            raise ValueError("source 'csv' needs csv_path (a file or a directory of *.csv)")
        if self.end_date is not None and not self.start_date <= self.end_date <= dt.date.today():
            raise ValueError(f"end_date {self.end_date} must lie between start_date {self.start_date} and today")
        return self

    @property
    def last_session(self) -> dt.date | None:
        """The last partition: partitions end with the data the source can serve (None: today's
        session, as the daily schedule needs)."""
        if self.end_date is not None:
            return self.end_date
        return SAMPLE_LAST_SESSION if self.source == "sample" else None

    def env_var_for(self, key: str) -> str | None:
        """The environment variable that `key`'s current value was read from, else None.

        Resources receive such values as `dagster.EnvVar(name)`, so Dagster stores the variable's
        name, never the URL and its password, in job snapshots and run storage. A value set in
        code (tests, scripts) has no variable and is passed as it is."""
        name, value = self._env_sources.get(key, (None, None))
        return name if name is not None and getattr(self, key) == value else None

    # Derived locations: everything embedded lives under `home`.
    @property
    def warehouse_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.home / 'warehouse.db').resolve()}"

    @property
    def optuna_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{(self.home / 'optuna.db').resolve()}"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str | None:
        """Artifact root of new MLflow experiments: a local folder for the embedded store; None with a
        tracking server, so the server decides (`mlflow-artifacts:/`, proxied by `--serve-artifacts`)
        and the MLflow UI and other containers can read what runs log."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return None
        return (self.home / "mlartifacts").resolve().as_uri()


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source on the mapping given to `load_settings` (default
    `os.environ`). MLflow's own MLFLOW_TRACKING_URI stands in for STOCK_ASSETS_MLFLOW_TRACKING_URI
    when that is unset. An unknown STOCK_ASSETS_ variable is kept, so that validation refuses it as
    an unknown key (a typo fails at load time instead of being ignored)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]):
        self.environ = {name: value for name, value in environ.items() if name != SETTINGS_FILE_ENV}
        for names in SECRET_SETTINGS.values():
            fallback = next((name for name in names[1:] if name in environ), None)
            if names[0] not in environ and fallback:
                self.environ[names[0]] = environ[fallback]
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self.environ.items()}

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        for name, value in self.environ.items():
            key = name[len(ENV_PREFIX) :].lower().split("__")[0] if name.startswith(ENV_PREFIX) else None
            if key and key not in self.settings_cls.model_fields:
                values[key] = value
        return values


class _SettingsFile(YamlConfigSettingsSource):
    """pydantic-settings' YAML source, refusing a file that is not a mapping of keys."""

    def _read_file(self, file_path: Any) -> dict[str, Any]:
        raw = super()._read_file(file_path)
        if not isinstance(raw, dict):
            raise SettingsError(f"settings file {file_path} must hold a mapping of keys, got {type(raw).__name__}")
        return raw


class _Loading:
    """The sources of the `load_settings` call in progress (read by `Settings.settings_customise_sources`)."""

    def __init__(self, path: Path, environ: dict[str, str]):
        self.path, self.environ = path, environ
        self.env, self.file = _EnvironSource(Settings, environ), _SettingsFile(Settings, yaml_file=path)

    def sources(self, settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
        return (self.env, self.file)

    def origin(self, loc: tuple) -> str:
        """Where the value at `loc` came from: which environment variable, else the file."""
        keys = [part for part in loc if isinstance(part, str)]
        name = ENV_PREFIX + "__".join(keys).upper()
        if len(keys) == 1 and keys[0] in SECRET_SETTINGS:
            name = next((n for n in SECRET_SETTINGS[keys[0]] if n in self.environ), name)
        if _holds(self.env(), keys):
            return f"from env {name}"
        return f"from file {self.path}" if _holds(self.file(), keys) else f"file {self.path} or env {name}"


_LOADING: ContextVar[_Loading | None] = ContextVar("stock_assets_settings_loading", default=None)


def _holds(tree: Any, keys: list[str]) -> bool:
    for key in keys:
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def _shown(value: Any) -> Any:
    """`value` for an error message: URLs masked (lib/redaction.py), mappings never spelled out."""
    if isinstance(value, str):
        return masked_url(value)
    if isinstance(value, list | tuple):
        return [_shown(item) for item in value]
    return "{...}" if isinstance(value, Mapping) else value


def _describe(exc: ValidationError, loading: _Loading) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(settings)"
        msg = masked_url(err["msg"])
        if not err["loc"]:  # a rule across keys: the input is the whole settings mapping, never shown
            lines.append(f"  {key}: {msg} (settings file {loading.path} or {ENV_PREFIX}* variables)")
            continue
        # A key named like a secret (an unknown `password:`) may hold a plain password: never shown.
        hidden = isinstance(err.get("input"), Mapping) or any(_SECRET_KEY.search(str(p)) for p in err["loc"])
        got = "" if hidden else f"got {_shown(err.get('input'))!r}; "
        lines.append(f"  {key}: {msg} ({got}{loading.origin(err['loc'])})")
    return "invalid stock_assets settings:\n" + "\n".join(lines)


def _env_sources(environ: dict[str, str]) -> dict[str, tuple[str, str]]:
    """{secret setting: (the variable it comes from, its value)} for those set in `environ`."""
    sources = {}
    for key, names in SECRET_SETTINGS.items():
        name = next((n for n in names if n in environ), None)
        if name is not None:
            sources[key] = (name, environ[name])
    return sources


MIN_FREE_BYTES = 100 * 2**20  # below this a run's event records and tables no longer fit


def _check_home(home: Path, path: Path, environ: dict[str, str]) -> None:
    """`home` must be a directory this process can write: fail at load time, not mid-run."""
    where = home.expanduser().resolve()
    try:
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=where):
            pass
    except OSError as exc:
        source = f"env {ENV_PREFIX}HOME" if ENV_PREFIX + "HOME" in environ else f"file {path}"
        raise SettingsError(
            f"invalid stock_assets settings:\n  home: cannot create or write {where} "
            f"({exc.strerror or exc}; from {source}). Point home (settings file) or {ENV_PREFIX}HOME at a "
            "writable directory: the warehouse, MLflow, Optuna and object stores live there"
        ) from None
    for name, folder in (("home", where), ("DAGSTER_HOME", environ.get("DAGSTER_HOME"))):
        if folder and Path(folder).is_dir() and (free := shutil.disk_usage(folder).free) < MIN_FREE_BYTES:
            # Dagster's own storage fails with a raw database error when the disk fills: say it first.
            raise SettingsError(
                f"the disk holding {name} ({folder}) has only {free // 2**20} MB free (at least "
                f"{MIN_FREE_BYTES // 2**20} MB needed): runs would fail writing their records. Free space there, "
                f"or point {name} at another disk; nothing was run"
            )


def load_settings(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, overridden by the settings file (`path`, else ``$STOCK_ASSETS_SETTINGS_FILE``, else
    the packaged default), overridden by the environment (`environ`, default ``os.environ``)."""
    environ = dict(os.environ if environ is None else environ)
    path = Path(path or environ.get(SETTINGS_FILE_ENV) or DEFAULT_SETTINGS_FILE)
    if not path.is_file():
        raise SettingsError(f"settings file {path} does not exist (set {SETTINGS_FILE_ENV} to a YAML file)")
    try:
        loading = _Loading(path, environ)
        in_file = _passwords_in(loading.file())
        loading.env()
    except SourceError as exc:  # a JSON-valued variable (accepted_moves) that is not JSON
        field = re.search(r'field "([^"]+)"', str(exc))
        key = field.group(1) if field else "(settings)"
        raise SettingsError(
            f'invalid stock_assets settings:\n  {key}: not valid JSON, e.g. [["AAPL", "2005-02-28"]] '
            f"(from env {ENV_PREFIX}{key.upper()})"
        ) from None
    if in_file:
        variables = [SECRET_SETTINGS[key][0] for key in in_file if key in SECRET_SETTINGS]
        raise SettingsError(
            f"settings file {path}: {in_file} hold a password; remove them from the file"
            + (" and set " + ", ".join(variables) + " in the environment instead" if variables else "")
            + " (secrets never go in the settings file; docs/inputs-and-secrets.md)"
        )
    token = _LOADING.set(loading)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise SettingsError(_describe(exc, loading)) from None
    finally:
        _LOADING.reset(token)
    _check_home(settings.home, path, environ)
    _check_drivers(settings, loading)
    settings._env_sources = _env_sources(environ)
    # The one hand-over of the exchange: every calendar question of this process is about it.
    trading_calendar.use_exchange(settings.exchange)
    return settings


_SECRET_KEY = re.compile(r"pass(word|wd)?$|^pwd$|secret|token|api_?key|credential", re.IGNORECASE)


def _passwords_in(tree: Any, where: str = "") -> list[str]:
    """Keys of the settings file holding a password in any form: a URL with user-info password or a
    credential query parameter, a `password=` pair in any string, or a key named like a secret."""
    found = []
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            name = f"{where}.{key}" if where else str(key)
            if _SECRET_KEY.search(str(key)) and value not in (None, ""):
                found.append(name)
            else:
                found += _passwords_in(value, name)
    elif isinstance(tree, list | tuple):
        for i, value in enumerate(tree):
            found += _passwords_in(value, f"{where}[{i}]")
    elif isinstance(tree, str) and has_password(tree):
        found.append(where)
    return found


# SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; the project installs psycopg2.
_DRIVERS = {"postgresql": ("psycopg", "postgresql+psycopg2://"), "postgres": ("psycopg", "postgresql+psycopg2://")}


def _check_drivers(settings: Settings, loading: _Loading) -> None:
    """A store URL whose database driver is not installed fails here, naming the URL form that works,
    instead of mid-run with "No module named 'psycopg'"."""
    import importlib.util

    problems = []
    for key in ("database_url", "optuna_storage", "mlflow_tracking_uri"):
        url = getattr(settings, key)
        scheme = url.split("://", 1)[0].lower() if url and "://" in url else ""
        if scheme in _DRIVERS:
            module, fixed = _DRIVERS[scheme]
            if importlib.util.find_spec(module) is None:
                problems.append(
                    f"  {key}: {masked_url(url)} uses SQLAlchemy's default driver {module}, which is not installed; "
                    f"write {fixed}... (psycopg2 is installed) ({loading.origin((key,))})"
                )
    if problems:
        raise SettingsError("invalid stock_assets settings:\n" + "\n".join(problems))
