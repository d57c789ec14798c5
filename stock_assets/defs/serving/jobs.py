from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

from stock_assets.partitions import trading_day_partitions

daily_job = define_asset_job(
    "daily_job",
    selection=AssetSelection.assets("raw_prices", "processed_features", "daily_predictions", "performance_log"),
    partitions_def=trading_day_partitions,
    description="One session after the close: prices, features, the next session's forecasts, and the scoring of "
    "the forecasts that targeted this session.",
    tags={"stock_assets/run_kind": "daily"},
)

# 18:30 New York time on every trading day; weekends and NYSE holidays are not partitions, so no run.
daily_schedule = build_schedule_from_partitioned_job(daily_job, hour_of_day=18, minute_of_hour=30, name="daily_schedule")
