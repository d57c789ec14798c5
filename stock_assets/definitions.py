"""The code location, loaded lazily: importing this module reads no settings, creates no folder and
installs no warning filter; Dagster calls `defs()` when it loads the code location
(docs/architecture.md, "Loading the code location")."""

from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    """The project's definitions wired to this process's settings, plus whatever `dg scaffold defs`
    put in `stock_assets/components/`."""
    from stock_assets.defs import build_definitions
    from stock_assets.settings import load_settings

    project = next((p for p in Path(__file__).parents if (p / "pyproject.toml").is_file()), None)
    # Installed as a wheel (no project folder, nothing scaffolded) there is nothing more to load.
    scaffolded = dg.load_from_defs_folder(path_within_project=project) if project else dg.Definitions()
    return dg.Definitions.merge(build_definitions(load_settings()), scaffolded)
