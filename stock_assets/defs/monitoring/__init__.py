from dagster import Definitions

from stock_assets.defs.monitoring.assets import performance_log
from stock_assets.defs.monitoring.sensors import retraining_sensor

defs = Definitions(assets=[performance_log], sensors=[retraining_sensor])
