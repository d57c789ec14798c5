from dagster import AssetSelection, define_asset_job


def build_daily_job():
    return define_asset_job(
        "daily_job",
        selection=AssetSelection.assets("raw_prices", "processed_features", "daily_predictions", "performance_log"),
        description="One session after the close: prices, features, the next session's forecasts, and the scoring "
        "of the forecasts that targeted this session.",
        tags={"stock_assets/run_kind": "daily"},
    )
