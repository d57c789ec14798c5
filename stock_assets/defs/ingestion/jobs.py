from dagster import AssetSelection, define_asset_job


def build_price_history_job():
    return define_asset_job(
        "price_history_job",
        selection=AssetSelection.groups("ingestion", "features"),
        description="raw_prices and processed_features with their checks. Launch it over a partition range "
        "(a backfill) to build history in one run.",
        tags={"stock_assets/run_kind": "backfill"},
    )
