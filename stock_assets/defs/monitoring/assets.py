"""`performance_log`: every prediction whose target session is D, scored against the close of D."""

import pandas as pd
from dagster import AssetExecutionContext, AssetIn, MetadataValue, TimeWindowPartitionMapping, asset

from stock_assets.defs.plots import line_plot, markdown_image
from stock_assets.lib import calendar
from stock_assets.partitions import trading_day_partitions
from stock_assets.resources.warehouse import WarehouseResource
from stock_assets.settings import get_settings

WINDOW = get_settings().monitoring.window_sessions
PLOT_SESSIONS = 60


@asset(
    partitions_def=trading_day_partitions,
    group_name="monitoring",
    io_manager_key="table_io_manager",
    ins={
        # Predictions made at the previous session target D; a session without predictions is fine.
        "daily_predictions": AssetIn(
            partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=-1),
            metadata={"allow_missing_partitions": True},
        ),
        "raw_prices": AssetIn(),
    },
    metadata={"partition_expr": "target_date", "primary_key": ["target_date", "ticker", "prediction_date"]},
    kinds={"pandas", "sql"},
)
def performance_log(
    context: AssetExecutionContext, daily_predictions: pd.DataFrame, raw_prices: pd.DataFrame, warehouse: WarehouseResource
) -> pd.DataFrame:
    """Actual vs predicted for every forecast that targeted session D (Friday's are scored on
    Monday, the calendar decides): absolute, percentage and squared error and direction hit.
    Metadata carries rolling aggregates over the last sessions across all tickers, which the
    retraining sensor reads."""
    from stock_assets.lib.monitoring import rolling_metrics, score_predictions

    day = context.partition_key
    scored = score_predictions(daily_predictions, raw_prices, day)
    window_start = calendar.offset_session(day, -(WINDOW - 1)).isoformat()
    history = warehouse.get().read_range("performance_log", "target_date", window_start, calendar.previous_session(day).isoformat())
    window = pd.concat([h for h in (history, scored) if len(h)], ignore_index=True) if len(history) or len(scored) else scored
    rolling = rolling_metrics(window)
    metadata = {
        "rows": len(scored),
        "note": "scored" if len(scored) else f"nothing to score: no predictions targeted {day}",
        "rolling_window_sessions": WINDOW,
        "rolling_samples": int(rolling["n"]),
        "rolling_mae": float(rolling["mae"]),
        "rolling_rmse": float(rolling["rmse"]),
        "rolling_mape": float(rolling["mape"]),
        "rolling_direction_accuracy": float(rolling["directional_accuracy"]),
    }
    if len(scored):
        metadata["scored"] = MetadataValue.md(
            scored[["ticker", "last_close", "predicted_close", "actual_close", "abs_pct_error", "direction_hit"]].round(4).to_markdown(index=False)
        )
        metadata.update(_plots(warehouse, day, scored))
    context.add_output_metadata(metadata)
    return scored


def _plots(warehouse: WarehouseResource, day: str, scored: pd.DataFrame) -> dict:
    """Predicted vs actual per ticker and the rolling MAPE, over the last PLOT_SESSIONS sessions."""
    from stock_assets.lib.monitoring import rolling_metrics

    start = calendar.offset_session(day, -(PLOT_SESSIONS - 1)).isoformat()
    log = warehouse.get().read_range("performance_log", "target_date", start, calendar.previous_session(day).isoformat())
    log = pd.concat([log, scored], ignore_index=True) if len(log) else scored
    series = {}
    for ticker, rows in log.groupby("ticker"):
        rows = rows.sort_values("target_date")
        series[f"{ticker} actual"] = (rows["actual_close"] / rows["actual_close"].iloc[0]).tolist()
        series[f"{ticker} predicted"] = (rows["predicted_close"] / rows["actual_close"].iloc[0]).tolist()
    dates = sorted(log["target_date"].unique())
    mape = [rolling_metrics(log[(log["target_date"] <= d) & (log["target_date"] >= dates[max(0, i - WINDOW + 1)])])["mape"]
            for i, d in enumerate(dates)]  # fmt: skip
    return {
        "predicted_vs_actual": markdown_image(
            line_plot(series, f"predicted vs actual (relative to first close), {len(dates)} sessions", "scored session", "price / first close"),
            "predicted vs actual",
        ),
        "rolling_mape_plot": markdown_image(
            line_plot({f"rolling {WINDOW}-session MAPE": mape}, "rolling MAPE", "scored session", "MAPE"), "rolling MAPE"
        ),
    }
