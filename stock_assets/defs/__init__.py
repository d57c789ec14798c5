"""Dagster wiring by domain. `build_definitions(settings)` is the only entry point: every domain's
factory receives the settings (partitions, lookbacks, Config defaults) and the resources carry the
policies (docs/architecture.md)."""

import warnings

from dagster import BetaWarning, Definitions, PreviewWarning, in_process_executor

from stock_assets.defs import features, ingestion, monitoring, serving, training
from stock_assets.partitions import build_trading_day_partitions
from stock_assets.resources import build_resources
from stock_assets.settings import Settings

DOMAINS = (ingestion, features, training, serving, monitoring)


def quiet_known_warnings() -> None:
    """Silence the warnings nobody running this project can act on (docs/decisions.md, "Quiet by
    default"): `BackfillPolicy` is beta and partitioned asset checks are in preview in Dagster 1.13,
    and daily_job mixes single-run (prices, features) with per-partition assets while always running
    one partition. Process-wide, because Dagster warns again when a run resolves its job."""
    warnings.filterwarnings("ignore", category=BetaWarning, message=".*backfill_policy.*")
    warnings.filterwarnings(
        "ignore", category=PreviewWarning, message="Specifying a partitions_def on an AssetCheckSpec"
    )
    warnings.filterwarnings("ignore", message="Asset job daily_job materializes assets with varying BackfillPolicies")


def build_definitions(settings: Settings) -> Definitions:
    """All definitions wired to `settings`."""
    quiet_known_warnings()
    partitions = build_trading_day_partitions(settings.start_date, settings.last_session)
    return Definitions.merge(
        *(domain.build_defs(settings, partitions) for domain in DOMAINS),
        # In-process: torch/mlflow/optuna imports cost seconds per step subprocess
        # (docs/decisions.md, "In-process execution").
        Definitions(resources=build_resources(settings), executor=in_process_executor),
    )
