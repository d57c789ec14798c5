"""The code location: the definitions built from the settings of this process."""

import warnings

from dagster import BetaWarning

from stock_assets.defs import build_definitions
from stock_assets.settings import load_settings

# Warnings nobody running this project can act on (docs/decisions.md, "Quiet by default"):
# `BackfillPolicy` is beta in Dagster 1.13, and daily_job mixes single-run (prices, features)
# with per-partition assets while always running one partition.
warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")
warnings.filterwarnings("ignore", message="Asset job daily_job materializes assets with varying BackfillPolicies")

settings = load_settings()
defs = build_definitions(settings)
