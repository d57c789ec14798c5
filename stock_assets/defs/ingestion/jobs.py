from dagster import AssetSelection, define_asset_job

from stock_assets.partitions import trading_day_partitions

price_history_job = define_asset_job(
    "price_history_job",
    selection=AssetSelection.groups("ingestion", "features"),
    partitions_def=trading_day_partitions,
    description="raw_prices and processed_features with their checks. Launch it over a partition range "
    "(a backfill) to build history in one run.",
    tags={"stock_assets/run_kind": "backfill"},
)
