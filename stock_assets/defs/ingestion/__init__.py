from dagster import Definitions, PartitionsDefinition

from stock_assets.defs.ingestion.assets import build_raw_prices
from stock_assets.defs.ingestion.checks import raw_prices_quality
from stock_assets.defs.ingestion.jobs import build_price_history_job
from stock_assets.settings import Settings


def build_defs(settings: Settings, partitions: PartitionsDefinition) -> Definitions:
    return Definitions(
        assets=[build_raw_prices(settings, partitions)],
        asset_checks=[raw_prices_quality],
        jobs=[build_price_history_job(partitions)],
    )
