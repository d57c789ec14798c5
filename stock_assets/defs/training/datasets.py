"""`scalers` and `scaled_sets`: the training data as of partition D, fitted on its train part only."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, TimeWindowPartitionMapping, asset

from stock_assets.defs.training.config import MAX_SEQUENCE_LENGTH, TRAINING_WINDOW, DatasetConfig
from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.partitions import trading_day_partitions
from stock_assets.resources.price_source import PriceSourceResource

TRAINING_INPUTS = {
    name: AssetIn(partition_mapping=TimeWindowPartitionMapping(start_offset=-(TRAINING_WINDOW - 1)))
    for name in ("processed_features", "raw_prices")
}

# Both datasets read the same training window of features and prices and store plain objects.
training_data_asset = asset(
    partitions_def=trading_day_partitions,
    group_name="training",
    io_manager_key="object_io_manager",
    ins=TRAINING_INPUTS,
    kinds={"numpy"},
)


def _sets(config: DatasetConfig, features: pd.DataFrame, prices: pd.DataFrame, tickers: list[str], scaler=None):
    from stock_assets.lib.evaluation import build_training_sets

    return build_training_sets(features, prices, tickers, FEATURE_COLUMNS, config.training_window, MAX_SEQUENCE_LENGTH, scaler)


@training_data_asset
def scalers(
    context: AssetExecutionContext,
    config: DatasetConfig,
    processed_features: pd.DataFrame,
    raw_prices: pd.DataFrame,
    price_source: PriceSourceResource,
) -> dict:
    """Per-ticker, per-feature mean/std (and target mean/std) fitted on the train part of the
    training window ending at D, stored as plain JSON numbers."""
    from stock_assets.lib.evaluation import part_dates

    scaler, arrays = _sets(config, processed_features, raw_prices, list(price_source.tickers))

    scaler["parts"] = {part: part_dates(arrays, part) for part in ("train", "validation", "holdout")}
    context.add_output_metadata(
        {
            "fitted_on": f"{scaler['fitted_sessions']['first']}..{scaler['fitted_sessions']['last']}",
            "tickers": ", ".join(scaler["tickers"]),
            "features": len(scaler["feature_columns"]),
            "parts": MetadataValue.json(scaler["parts"]),
        }
    )
    return scaler


@training_data_asset
def scaled_sets(
    context: AssetExecutionContext,
    config: DatasetConfig,
    processed_features: pd.DataFrame,
    raw_prices: pd.DataFrame,
    scalers: dict,
    price_source: PriceSourceResource,
) -> dict:
    """Train / validation / holdout in compact form: one scaled panel, its closes and targets, and
    the window-end indices of each part (embargoed by the longest searched sequence length).
    Windows are cut on demand, never stored stacked."""
    from stock_assets.lib.evaluation import part_dates

    _, arrays = _sets(config, processed_features, raw_prices, list(price_source.tickers), scaler=scalers)
    parts = {part: part_dates(arrays, part) for part in ("train", "validation", "holdout")}
    context.add_output_metadata(
        {
            "sessions": len(arrays["dates"]),
            "first_session": str(arrays["dates"][0]),
            "last_session": str(arrays["dates"][-1]),
            "embargo_sessions": MAX_SEQUENCE_LENGTH,
            **{f"{part}_samples": info["samples"] for part, info in parts.items()},
            "parts": MetadataValue.json(parts),
            "stored_mb": round(sum(a.nbytes for a in arrays.values()) / 1e6, 2),
        }
    )
    return arrays
