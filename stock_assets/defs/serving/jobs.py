from dagster import AssetSelection, PartitionsDefinition, define_asset_job


def build_daily_job(partitions: PartitionsDefinition):
    return define_asset_job(
        "daily_job",
        selection=AssetSelection.assets("raw_prices", "processed_features", "daily_predictions", "performance_log"),
        # Deprecated in Dagster 1.13 ("inferred from the selected assets"), but daily_schedule needs it:
        # without it the schedule requested a run on a Saturday (test_schedules.py).
        partitions_def=partitions,
        description="One session after the close: prices, features, the next session's forecasts, and the scoring "
        "of the forecasts that targeted this session.",
        tags={"stock_assets/run_kind": "daily"},
    )
