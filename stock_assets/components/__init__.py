"""Where `dg scaffold defs ...` writes (pyproject.toml `[tool.dg.project] defs_module`): whatever lands
here is autoloaded and merged into the code location by `stock_assets/definitions.py`. The project's
own wiring is built by `stock_assets.defs.build_definitions(settings)`, which needs the settings and
therefore is not autoloaded (docs/architecture.md, "Loading the code location")."""
