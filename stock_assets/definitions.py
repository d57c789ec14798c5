"""The code location: every domain's definitions, the shared resources, in-process execution."""

from dagster import Definitions, in_process_executor

from stock_assets.defs import features, ingestion, training
from stock_assets.resources import build_resources
from stock_assets.settings import get_settings

defs = Definitions.merge(
    ingestion.defs,
    features.defs,
    training.defs,
    Definitions(resources=build_resources(get_settings()), executor=in_process_executor),
)
