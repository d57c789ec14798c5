"""Dagster wiring by domain. `build_definitions(settings)` is the only entry point: every domain's
factory receives the settings (partitions, lookbacks, Config defaults) and the resources carry the
policies (docs/architecture.md)."""

from dagster import Definitions, in_process_executor

from stock_assets.defs import features, ingestion, monitoring, serving, training
from stock_assets.partitions import build_trading_day_partitions
from stock_assets.resources import build_resources
from stock_assets.settings import Settings

DOMAINS = (ingestion, features, training, serving, monitoring)


def build_definitions(settings: Settings) -> Definitions:
    """All definitions wired to `settings`."""
    partitions = build_trading_day_partitions(settings.start_date, settings.last_session)
    return Definitions.merge(
        *(domain.build_defs(settings, partitions) for domain in DOMAINS),
        # In-process: torch/mlflow/optuna imports cost seconds per step subprocess
        # (docs/decisions.md, "In-process execution").
        Definitions(resources=build_resources(settings), executor=in_process_executor),
    )
