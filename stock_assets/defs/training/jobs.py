from dagster import AssetSelection, define_asset_job

from stock_assets.partitions import trading_day_partitions

retraining_job = define_asset_job(
    "retraining_job",
    selection=AssetSelection.groups("training"),
    partitions_def=trading_day_partitions,
    description="Scalers, scaled sets, Optuna search, candidate fit and (behind the promotion gate) promotion, "
    "as of one session. Launched by the retraining sensor or by hand from the Launchpad.",
    tags={"stock_assets/run_kind": "retraining"},
)
