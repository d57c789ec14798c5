"""Per-run knobs of `raw_prices`, editable in the Launchpad; defaults come from settings."""

from dagster import Config
from pydantic import Field

from stock_assets.defs.config_types import between
from stock_assets.settings import Settings


def build_raw_prices_config(settings: Settings) -> type[Config]:
    """Bounded in the config schema, so a bad value fails the launch before any step runs
    (docs/decisions.md, "Run config")."""

    class RawPricesConfig(Config):
        overlap_sessions: between(0, 60) = Field(
            settings.overlap_sessions, description="stored sessions re-fetched to detect re-adjustments"
        )
        accept_vendor_readjustment: bool = Field(
            False, description="store a re-based history from here on instead of failing"
        )

    return RawPricesConfig
