from dagster import AssetSelection, PartitionsDefinition, define_asset_job


def build_retraining_job(partitions: PartitionsDefinition):
    return define_asset_job(
        "retraining_job",
        selection=AssetSelection.groups("training"),
        partitions_def=partitions,
        description="Scalers, scaled sets, Optuna search, candidate fit and (behind the promotion gate) promotion, "
        "as of one session. Launched by the retraining sensor or by hand from the Launchpad.",
        tags={"stock_assets/run_kind": "retraining"},
    )
