from dagster import AssetSelection, PartitionsDefinition, define_asset_job


def build_price_history_job(partitions: PartitionsDefinition):
    return define_asset_job(
        "price_history_job",
        selection=AssetSelection.groups("data"),
        partitions_def=partitions,
        description="raw_prices and processed_features with their checks. Launch it over a partition range "
        "(a backfill) to build history in one run.",
        tags={"stock_assets/run_kind": "backfill"},
    )
