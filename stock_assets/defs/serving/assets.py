"""`daily_predictions`: after the close of D, one forecast per ticker for the next session."""

import datetime as dt

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    Failure,
    MetadataValue,
    PartitionsDefinition,
    asset,
)

from stock_assets.defs.champions import promote_better_baseline
from stock_assets.defs.lookback import SessionLookback
from stock_assets.lib import trading_calendar
from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.model_registry import ModelRegistryResource
from stock_assets.resources.warehouse import WarehouseResource
from stock_assets.settings import Settings

PREDICTION_COLUMNS = [
    "prediction_date",
    "target_date",
    "ticker",
    "last_close",
    "predicted_log_return",
    "predicted_close",
    "model_name",
    "model_version",
    "model_run_id",
    "model_trained_for",
    "model_kind",
    "created_at",
]


def build_daily_predictions(settings: Settings, partitions: PartitionsDefinition) -> AssetsDefinition:
    max_seq = max(settings.training.sequence_lengths)
    training_window = settings.training.training_window

    @asset(
        partitions_def=partitions,
        group_name="serving",
        io_manager_key="table_io_manager",
        ins={
            name: AssetIn(partition_mapping=SessionLookback(max_seq)) for name in ("processed_features", "raw_prices")
        },
        deps=["production_model"],
        metadata={"partition_expr": "prediction_date", "primary_key": ["prediction_date", "ticker"]},
        kinds={"pytorch", "sql"},
    )
    def daily_predictions(
        context: AssetExecutionContext,
        processed_features: pd.DataFrame,
        raw_prices: pd.DataFrame,
        basket: BasketResource,
        warehouse: WarehouseResource,
        model_registry: ModelRegistryResource,
    ) -> pd.DataFrame:
        """The champion as of D (the model promoted for the latest partition <= D, never one trained
        later) applied to the stored features of the last `sequence_length` sessions up to D: the
        same values training saw. Predicted close = adj_close[D] x exp(predicted log return). With no
        champion yet, the better of the persistence and drift baselines becomes the champion first."""
        return predict_next_session(
            context, processed_features, raw_prices, basket, warehouse, model_registry, training_window
        )

    return daily_predictions


def predict_next_session(
    context, processed_features, raw_prices, basket: BasketResource, warehouse, model_registry, training_window: int
) -> pd.DataFrame:
    from stock_assets.lib.datasets import build_panel, predicted_close
    from stock_assets.lib.evaluation import forecast_log_returns

    day = context.partition_key
    champion = model_registry.champion_as_of(day)
    if champion is None:
        champion = promote_better_baseline(context, day, basket, warehouse, model_registry, training_window)
    model, preprocessing = model_registry.load(champion)
    tickers, seq = list(preprocessing.tickers), preprocessing.sequence_length
    if sorted(tickers) != sorted(basket.tickers):
        raise Failure(
            description=f"champion {champion.label} serves {tickers}, settings ask for {list(basket.tickers)}; "
            f"run retraining_job for {day}"
        )
    panel = build_panel(processed_features, raw_prices, tickers, FEATURE_COLUMNS)
    if panel.n_sessions < seq or panel.dates[-1] != day:
        raise Failure(
            description=f"features for all of {tickers} are needed on the {seq} sessions up to {day}; "
            f"found {panel.n_sessions} complete session(s) ending {panel.dates[-1] if panel.dates else 'nowhere'}. "
            "Materialize processed_features for that range."
        )
    log_returns = forecast_log_returns(model, preprocessing, panel.features, [-1])[0]
    closes = panel.close[-1]
    frame = pd.DataFrame(
        {
            "prediction_date": day,
            "target_date": trading_calendar.next_session(day).isoformat(),
            "ticker": tickers,
            "last_close": closes,
            "predicted_log_return": log_returns,
            "predicted_close": predicted_close(closes, log_returns),
            "model_name": champion.name,
            "model_version": str(champion.version),
            "model_run_id": champion.run_id,
            "model_trained_for": champion.partition,
            "model_kind": preprocessing.kind,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )[PREDICTION_COLUMNS]
    context.add_output_metadata(
        {
            "rows": len(frame),
            "target_session": frame["target_date"].iloc[0],
            "model": f"{champion.label}, promoted for {champion.partition}",
            "predictions": MetadataValue.md(
                frame[["ticker", "last_close", "predicted_close", "predicted_log_return"]]
                .round(4)
                .to_markdown(index=False)
            ),
        }
    )
    return frame
