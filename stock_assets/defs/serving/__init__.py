from dagster import Definitions

from stock_assets.defs.serving.assets import daily_predictions
from stock_assets.defs.serving.checks import daily_predictions_complete
from stock_assets.defs.serving.jobs import daily_job, daily_schedule

defs = Definitions(
    assets=[daily_predictions], asset_checks=[daily_predictions_complete], jobs=[daily_job], schedules=[daily_schedule]
)
