"""The code location: every domain's definitions, the shared resources, in-process execution."""

from dagster import Definitions, in_process_executor

from stock_assets.defs import features, ingestion, monitoring, serving, training
from stock_assets.resources import build_resources
from stock_assets.settings import Settings, get_settings


def build_definitions(settings: Settings) -> Definitions:
    """All definitions wired to `settings`' stores (partitions and lookbacks are fixed at import)."""
    return Definitions.merge(
        ingestion.defs,
        features.defs,
        training.defs,
        serving.defs,
        monitoring.defs,
        # In-process: torch/mlflow/optuna imports cost seconds per step subprocess (SPEC §12).
        Definitions(resources=build_resources(settings), executor=in_process_executor),
    )


defs = build_definitions(get_settings())
