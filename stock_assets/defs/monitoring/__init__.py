from dagster import Definitions, PartitionsDefinition

from stock_assets.defs.monitoring.assets import build_performance_log
from stock_assets.defs.monitoring.reports import build_reports
from stock_assets.defs.monitoring.sensors import retraining_sensor
from stock_assets.settings import Settings


def build_defs(settings: Settings, partitions: PartitionsDefinition) -> Definitions:
    leaderboard, report, reports_job = build_reports(str(settings.start_date))
    return Definitions(
        assets=[build_performance_log(partitions, settings.forecast.quantiles), leaderboard, report],
        jobs=[reports_job],
        sensors=[retraining_sensor],
    )
