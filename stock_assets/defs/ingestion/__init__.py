from dagster import Definitions

from stock_assets.defs.ingestion.assets import raw_prices
from stock_assets.defs.ingestion.checks import raw_prices_quality
from stock_assets.defs.ingestion.jobs import price_history_job

defs = Definitions(assets=[raw_prices], asset_checks=[raw_prices_quality], jobs=[price_history_job])
