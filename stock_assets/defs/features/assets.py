"""`processed_features`: the scale-free indicator vector of SPEC §6 per (session, ticker)."""


import pandas as pd
from dagster import AssetExecutionContext, AssetIn, BackfillPolicy, Failure, MetadataValue, TimeWindowPartitionMapping, asset

from stock_assets.lib.indicators import FEATURE_COLUMNS, compute_features, max_window
from stock_assets.lib.prices import describe_problems, price_problems
from stock_assets.partitions import session_keys, trading_day_partitions
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.settings import get_settings

FEATURE_LOOKBACK = get_settings().feature_lookback
PRICE_WINDOW = max_window(FEATURE_LOOKBACK)


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="features",
    io_manager_key="table_io_manager",
    ins={"raw_prices": AssetIn(partition_mapping=TimeWindowPartitionMapping(start_offset=-(PRICE_WINDOW - 1)))},
    metadata={"partition_expr": "date", "primary_key": ["date", "ticker"], "feature_columns": ", ".join(FEATURE_COLUMNS)},
    kinds={"pandas", "sql"},
    code_version="1",
    description=(
        "Technical indicators on adjusted prices, expressed scale-free, per session and ticker. Each row is "
        f"computed on a fixed window of at least {FEATURE_LOOKBACK} sessions that depends only on its date, so "
        "training and serving see identical values. The first sessions after the partitions' start are "
        "warm-up and hold no rows."
    ),
)
def processed_features(
    context: AssetExecutionContext, raw_prices: pd.DataFrame, price_source: PriceSourceResource
) -> pd.DataFrame:
    keys = context.partition_keys
    tickers = list(price_source.tickers)
    window = session_keys(raw_prices["date"].min(), keys[-1]) if len(raw_prices) else []
    problems = price_problems(raw_prices, tickers, window)
    if any(problems.values()):
        raise Failure(
            description=f"raw_prices fail quality rules in {window[0]}..{window[-1]}: {describe_problems(problems)}. "
            "Fix the source data and re-materialize raw_prices for those sessions; no features were written.",
        )
    sessions = session_keys("1900-01-01", keys[-1])
    features = compute_features(raw_prices, sessions, list(keys), tickers, FEATURE_LOOKBACK)
    warmup = len(keys) - features["date"].nunique()
    # Dagster copies range-run metadata onto every partition's event: previews only for single sessions.
    preview = {"preview": MetadataValue.md(features.tail(min(8, len(features))).round(4).to_markdown(index=False))} if len(keys) == 1 else {}
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
