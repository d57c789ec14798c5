"""`daily_predictions`: after the close of D, one forecast per ticker for the next session."""

import datetime as dt

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, Failure, MetadataValue, TimeWindowPartitionMapping, asset

from stock_assets.defs.training.config import MAX_SEQUENCE_LENGTH
from stock_assets.lib import calendar
from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.partitions import trading_day_partitions
from stock_assets.resources.model_registry import ModelRegistryResource
from stock_assets.resources.price_source import PriceSourceResource

PREDICTION_COLUMNS = [
    "prediction_date", "target_date", "ticker", "last_close", "predicted_log_return", "predicted_close",
    "model_name", "model_version", "model_run_id", "model_trained_for", "created_at",
]  # fmt: skip


@asset(
    partitions_def=trading_day_partitions,
    group_name="serving",
    io_manager_key="table_io_manager",
    ins={
        name: AssetIn(partition_mapping=TimeWindowPartitionMapping(start_offset=-(MAX_SEQUENCE_LENGTH - 1)))
        for name in ("processed_features", "raw_prices")
    },
    deps=["production_model"],
    metadata={"partition_expr": "prediction_date", "primary_key": ["prediction_date", "ticker"]},
    kinds={"pytorch", "sql"},
)
def daily_predictions(
    context: AssetExecutionContext,
    processed_features: pd.DataFrame,
    raw_prices: pd.DataFrame,
    price_source: PriceSourceResource,
    model_registry: ModelRegistryResource,
) -> pd.DataFrame:
    """The champion as of D (the model promoted for the latest partition <= D, never one trained
    later) applied to the stored features of the last `sequence_length` sessions up to D: the
    same values training saw. Predicted close = adj_close[D] x exp(predicted log return)."""
    from stock_assets.lib.datasets import apply_scaler, build_panel, predicted_close, unscale_predictions, window_at
    from stock_assets.lib.training import predict

    day = context.partition_key
    champion = model_registry.champion_as_of(day)
    if champion is None:
        raise Failure(
            description=f"no champion model as of {day}: nothing has been promoted for any partition <= {day}. "
            f"Run retraining_job for partition {day} (or an earlier session with enough history) and let the gate promote it."
        )
    model, pre = model_registry.load(champion)
    tickers, seq = list(pre["tickers"]), int(pre["sequence_length"])
    if sorted(tickers) != sorted(price_source.tickers):
        raise Failure(description=f"champion v{champion.version} serves {tickers}, settings ask for {list(price_source.tickers)}; retrain for {day}")
    panel = build_panel(processed_features, raw_prices, tickers, FEATURE_COLUMNS)
    if panel.n_sessions < seq or panel.dates[-1] != day:
        raise Failure(
            description=f"features for all of {tickers} are needed on the {seq} sessions up to {day}; "
            f"found {panel.n_sessions} complete session(s) ending {panel.dates[-1] if panel.dates else 'nowhere'}. "
            "Materialize processed_features for that range."
        )
    x = window_at(apply_scaler(panel.features, pre["scaler"]), -1, seq)
    log_returns = unscale_predictions(predict(model, x), pre["scaler"])[0]
    closes = panel.close[-1]
    frame = pd.DataFrame(
        {
            "prediction_date": day,
            "target_date": calendar.next_session(day).isoformat(),
            "ticker": tickers,
            "last_close": closes,
            "predicted_log_return": log_returns,
            "predicted_close": predicted_close(closes, log_returns),
            "model_name": champion.name,
            "model_version": str(champion.version),
            "model_run_id": champion.run_id,
            "model_trained_for": champion.partition,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )[PREDICTION_COLUMNS]
    context.add_output_metadata(
        {
            "rows": len(frame),
            "target_session": frame["target_date"].iloc[0],
            "model": f"{champion.name} v{champion.version} (promoted for {champion.partition})",
            "predictions": MetadataValue.md(
                frame[["ticker", "last_close", "predicted_close", "predicted_log_return"]].round(4).to_markdown(index=False)
            ),
        }
    )
    return frame
