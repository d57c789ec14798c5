from dagster import Definitions, PartitionsDefinition

from stock_assets.defs.ingestion.assets import build_raw_prices
from stock_assets.defs.ingestion.checks import raw_prices_quality
from stock_assets.defs.ingestion.jobs import build_price_history_job
from stock_assets.lib import trading_calendar
from stock_assets.lib.csv_source import CsvPriceSource
from stock_assets.lib.prices import PriceDataError
from stock_assets.lib.sources import PriceSourceError, SamplePriceSource
from stock_assets.settings import Settings, SettingsError


def check_source(settings: Settings) -> None:
    """File sources (csv, sample) must hold every configured ticker and the schema's columns: checked
    when the code location loads, so a range run is refused in seconds instead of after Dagster has
    planned each of its partitions (docs/inputs-and-secrets.md, "Errors that name the fix"). The values
    are still validated by each run, for the rows it fetches."""
    if settings.source == "sample":
        source = SamplePriceSource()
    elif settings.source == "csv" and settings.csv_path is not None:
        source = CsvPriceSource(path=settings.csv_path, rules=settings.sanity.rules())
    else:
        return  # yfinance: online, checked by each run
    try:
        source.preflight(list(settings.tickers))
    except (PriceSourceError, PriceDataError) as exc:
        raise SettingsError(
            f"invalid stock_assets settings:\n  source {settings.source}: {exc} (checked when the code location "
            "loads; fix the files or settings tickers / csv_path, then reload the code location)"
        ) from None


def build_defs(settings: Settings, partitions: PartitionsDefinition) -> Definitions:
    # The partitions were built on the active calendar: it must be the settings' exchange
    # (load_settings hands it over; settings built in code use trading_calendar.using_exchange).
    if trading_calendar.active_exchange() != settings.exchange:
        raise ValueError(
            f"settings exchange is {settings.exchange} but the trading calendar answers for "
            f"{trading_calendar.active_exchange()}: load settings with stock_assets.settings.load_settings(), or "
            f"wrap the build in trading_calendar.using_exchange({settings.exchange!r})"
        )
    check_source(settings)
    return Definitions(
        assets=[build_raw_prices(settings, partitions)],
        asset_checks=[raw_prices_quality],
        jobs=[build_price_history_job(partitions)],
    )
