"""The code location, loaded lazily: importing this module reads no settings, creates no folder and
installs no warning filter; Dagster calls `defs()` when it loads the code location
(docs/architecture.md, "Loading the code location")."""

from pathlib import Path

import dagster as dg

RUN_LOG_LEVEL = "INFO"


def console_logger() -> dg.LoggerDefinition:
    """Dagster's console logger with INFO instead of DEBUG as its default level: runs launched from
    the UI, schedules and sensors print their log lines, not a dump of every event, to compute logs
    and `dagster dev`'s output (the event log keeps every event). DEBUG on request, in the
    Launchpad: `loggers: {console: {config: {log_level: DEBUG}}}`."""
    from dagster._loggers import colored_console_logger

    return dg.LoggerDefinition(
        colored_console_logger.logger_fn,
        config_schema={
            "log_level": dg.Field(str, is_required=False, default_value=RUN_LOG_LEVEL),
            "name": dg.Field(str, is_required=False, default_value="dagster"),
        },
        description=f"The console logger at {RUN_LOG_LEVEL} unless the run config says otherwise.",
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The project's definitions wired to this process's settings, plus whatever `dg scaffold defs`
    put in `stock_assets/components/`."""
    from stock_assets.defs import build_definitions
    from stock_assets.settings import load_settings

    project = next((p for p in Path(__file__).parents if (p / "pyproject.toml").is_file()), None)
    # Installed as a wheel (no project folder, nothing scaffolded) there is nothing more to load.
    scaffolded = dg.load_from_defs_folder(path_within_project=project) if project else dg.Definitions()
    loggers = dg.Definitions(loggers={"console": console_logger()})
    return dg.Definitions.merge(build_definitions(load_settings()), scaffolded, loggers)
