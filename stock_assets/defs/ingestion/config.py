"""Per-run knobs of `raw_prices`, editable in the Launchpad; defaults come from settings."""

from dagster import Config
from pydantic import Field

from stock_assets.settings import Settings


def build_raw_prices_config(settings: Settings) -> type[Config]:
    class RawPricesConfig(Config):
        overlap_sessions: int = Field(
            settings.overlap_sessions, ge=0, le=60, description="stored sessions re-fetched to detect re-adjustments"
        )
        accept_vendor_readjustment: bool = Field(
            False, description="store a re-based history from here on instead of failing"
        )

    return RawPricesConfig
