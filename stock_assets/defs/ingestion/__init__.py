from dagster import Definitions, PartitionsDefinition

from stock_assets.defs.ingestion.assets import build_raw_prices
from stock_assets.defs.ingestion.checks import raw_prices_quality
from stock_assets.defs.ingestion.jobs import build_price_history_job
from stock_assets.lib import trading_calendar
from stock_assets.settings import Settings


def build_defs(settings: Settings, partitions: PartitionsDefinition) -> Definitions:
    # The partitions were built on the active calendar: it must be the settings' exchange
    # (load_settings hands it over; settings built in code use trading_calendar.using_exchange).
    if trading_calendar.active_exchange() != settings.exchange:
        raise ValueError(
            f"settings exchange is {settings.exchange} but the trading calendar answers for "
            f"{trading_calendar.active_exchange()}: load settings with stock_assets.settings.load_settings(), or "
            f"wrap the build in trading_calendar.using_exchange({settings.exchange!r})"
        )
    return Definitions(
        assets=[build_raw_prices(settings, partitions)],
        asset_checks=[raw_prices_quality],
        jobs=[build_price_history_job(partitions)],
    )
