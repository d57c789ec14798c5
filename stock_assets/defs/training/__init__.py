from dagster import Definitions, PartitionsDefinition

from stock_assets.defs.training.assets import build_training_assets
from stock_assets.defs.training.checks import build_training_checks
from stock_assets.defs.training.jobs import build_retraining_job
from stock_assets.settings import Settings


def build_defs(settings: Settings, partitions: PartitionsDefinition) -> Definitions:
    return Definitions(
        assets=build_training_assets(settings, partitions),
        asset_checks=build_training_checks(partitions, settings.forecast.ewma_lambda),
        jobs=[build_retraining_job(partitions)],
    )
