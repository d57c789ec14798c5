"""`processed_features`: the scale-free indicator vector per (session, ticker)."""

import numpy as np
import pandas as pd
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    MetadataValue,
    PartitionsDefinition,
    asset,
)

from stock_assets.defs.failures import reported_as_failure
from stock_assets.defs.lookback import SessionLookback
from stock_assets.lib.indicators import FEATURE_COLUMNS, compute_features, max_window, window_start
from stock_assets.lib.prices import PriceDataError, describe_problems, price_problems
from stock_assets.partitions import chunked, run_partition_keys, session_keys
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.io_managers import FrameChunks
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import WarehouseResource
from stock_assets.settings import Settings


def finite_features(features: pd.DataFrame) -> pd.DataFrame:
    """Refuse feature rows holding NaN or infinity (prices at the edge of float range, a zero range):
    they would poison scalers and models. Names ticker, session and feature; nothing is written."""
    values = features[FEATURE_COLUMNS].to_numpy(dtype=float) if len(features) else np.empty((0, 0))
    bad = ~np.isfinite(values)
    if bad.any():
        rows, cols = np.nonzero(bad)
        shown = ", ".join(
            f"{features['date'].iloc[r]} {features['ticker'].iloc[r]} {FEATURE_COLUMNS[c]}={values[r, c]}"
            for r, c in list(zip(rows, cols, strict=True))[:5]
        )
        raise PriceDataError(
            f"processed_features: {int(bad.sum())} non-finite feature value(s) from the stored prices ({shown}). "
            "Check raw_prices of those tickers around those sessions for extreme or constant values (settings "
            "sanity.max_volume bounds volume), fix the source and re-materialize raw_prices; no features were written."
        )
    return features


def build_processed_features(settings: Settings, partitions: PartitionsDefinition) -> AssetsDefinition:
    lookback = settings.feature_lookback
    price_window = max_window(lookback)
    sanity = settings.sanity.rules()

    @asset(
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        group_name="data",
        io_manager_key="table_io_manager",
        # Read chunk by chunk from the warehouse rather than loaded as one input (see below).
        deps=[AssetDep("raw_prices", partition_mapping=SessionLookback(price_window))],
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
        basket: BasketResource,
        price_source: PriceSourceResource,
        warehouse: WarehouseResource,
    ):
        """A daily run returns one small frame; a range run returns `FrameChunks` that read the prices
        of, compute and write `CHUNK_SESSIONS` sessions at a time inside the one write transaction, so
        its memory follows a chunk and not the range (docs/architecture.md, "Memory")."""
        with reported_as_failure(context):  # a key that is not a session: refused, never retried
            keys = run_partition_keys(context)
        tickers = list(basket.tickers)
        # Anchors count from the partitions' first session (docs/decisions.md, "Date-anchored feature windows").
        sessions = session_keys(basket.start_date, keys[-1])
        first = len(sessions) - len(keys)
        store = warehouse.get()
        with reported_as_failure(context):
            store.require_partitions("raw_prices", sessions[max(0, first - price_window + 1) :])
        rules = price_source.price_rules

        @reported_as_failure(context)
        def compute(chunk: list[str]) -> pd.DataFrame:
            at = sessions.index(chunk[0], first)
            window = sessions[max(0, at - price_window + 1) : at + len(chunk)]
            prices = store.read_range("raw_prices", "date", window[0], window[-1])
            problems = price_problems(prices, tickers, window, **rules, rules=sanity)
            if any(problems.values()):
                raise PriceDataError(  # reported as a Failure, and not retried: the stored data stays bad
                    f"raw_prices fail quality rules in {window[0]}..{window[-1]}: "
                    f"{describe_problems(problems)}. Fix the source data and re-materialize raw_prices for those "
                    "sessions; no features were written."
                )
            return finite_features(compute_features(prices, sessions, chunk, tickers, lookback))

        warmup = sum(window_start(i, lookback) is None for i in range(first, len(sessions)))
        context.add_output_metadata(
            {
                "sessions": len(keys),
                "warm_up_sessions_without_rows": warmup,
                "tickers": MetadataValue.text(", ".join(tickers)),
                "first_session": keys[0],
                "last_session": keys[-1],
                "price_window": f"{sessions[max(0, first - price_window + 1)]}..{keys[-1]}",
            }
        )
        if len(keys) > 1:  # Dagster copies range-run metadata onto every partition's event: no preview
            return FrameChunks(compute(chunk) for chunk in chunked(keys))
        features = compute(keys)
        context.add_output_metadata(
            {
                "rows": len(features),
                "preview": MetadataValue.md(features.tail(min(8, len(features))).round(4).to_markdown(index=False)),
            }
        )
        return features

    return processed_features
