from dagster import Definitions, PartitionsDefinition

from stock_assets.defs.serving.assets import build_daily_predictions
from stock_assets.defs.serving.checks import daily_predictions_complete
from stock_assets.defs.serving.jobs import build_daily_job
from stock_assets.defs.serving.schedules import build_daily_schedule
from stock_assets.settings import Settings


def build_defs(settings: Settings, partitions: PartitionsDefinition) -> Definitions:
    daily_job = build_daily_job(partitions)
    return Definitions(
        assets=[build_daily_predictions(settings, partitions)],
        asset_checks=[daily_predictions_complete],
        jobs=[daily_job],
        schedules=[build_daily_schedule(daily_job)],
    )
