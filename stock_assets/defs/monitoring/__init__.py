from dagster import Definitions, PartitionsDefinition

from stock_assets.defs.monitoring.assets import build_performance_log
from stock_assets.defs.monitoring.sensors import retraining_sensor
from stock_assets.settings import Settings


def build_defs(settings: Settings, partitions: PartitionsDefinition) -> Definitions:
    return Definitions(
        assets=[build_performance_log(partitions, settings.forecast.quantiles)], sensors=[retraining_sensor]
    )
