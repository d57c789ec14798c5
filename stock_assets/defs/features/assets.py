"""`processed_features`: the scale-free indicator vector per (session, ticker)."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    BackfillPolicy,
    Failure,
    MetadataValue,
    PartitionsDefinition,
    asset,
)

from stock_assets.defs.lookback import SessionLookback
from stock_assets.lib.indicators import FEATURE_COLUMNS, compute_features, max_window
from stock_assets.lib.prices import describe_problems, price_problems
from stock_assets.partitions import run_partition_keys, session_keys
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.settings import Settings


def build_processed_features(settings: Settings, partitions: PartitionsDefinition) -> AssetsDefinition:
    lookback = settings.feature_lookback
    price_window = max_window(lookback)

    @asset(
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        group_name="features",
        io_manager_key="table_io_manager",
        ins={"raw_prices": AssetIn(partition_mapping=SessionLookback(price_window))},
        metadata={
            "partition_expr": "date",
            "primary_key": ["date", "ticker"],
            "feature_columns": ", ".join(FEATURE_COLUMNS),
        },
        kinds={"pandas", "sql"},
        code_version="1",
        description=(
            "Technical indicators on adjusted prices, expressed scale-free, per session and ticker. Each row is "
            f"computed on a fixed window of at least {lookback} sessions that depends only on its date, so "
            "training and serving see identical values. The first sessions after the partitions' start are "
            "warm-up and hold no rows."
        ),
    )
    def processed_features(
        context: AssetExecutionContext,
        raw_prices: pd.DataFrame,
        basket: BasketResource,
        price_source: PriceSourceResource,
    ) -> pd.DataFrame:
        keys = run_partition_keys(context)
        tickers = list(basket.tickers)
        window = session_keys(raw_prices["date"].min(), keys[-1]) if len(raw_prices) else []
        problems = price_problems(raw_prices, tickers, window, **price_source.price_rules)
        if any(problems.values()):
            raise Failure(
                description=f"raw_prices fail quality rules in {window[0]}..{window[-1]}: "
                f"{describe_problems(problems)}. Fix the source data and re-materialize raw_prices for those "
                "sessions; no features were written.",
            )
        # Anchors count from the partitions' first session (docs/decisions.md, "Date-anchored feature windows").
        sessions = session_keys(basket.start_date, keys[-1])
        features = compute_features(raw_prices, sessions, list(keys), tickers, lookback)
        warmup = len(keys) - features["date"].nunique()
        # Dagster copies range-run metadata onto every partition's event: previews only for single sessions.
        preview = {}
        if len(keys) == 1:
            preview = {
                "preview": MetadataValue.md(features.tail(min(8, len(features))).round(4).to_markdown(index=False))
            }
        context.add_output_metadata(
            {
                "rows": len(features),
                "sessions": len(keys),
                "warm_up_sessions_without_rows": warmup,
                "tickers": MetadataValue.text(", ".join(tickers)),
                "first_session": keys[0],
                "last_session": keys[-1],
                "price_window": f"{window[0]}..{window[-1]}" if window else "none",
                **preview,
            }
        )
        return features

    return processed_features
