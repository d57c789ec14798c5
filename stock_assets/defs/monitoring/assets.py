"""`performance_log`: every prediction whose target session is D, scored against the close of D."""

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetsDefinition,
    MetadataValue,
    PartitionsDefinition,
    TimeWindowPartitionMapping,
    asset,
)

from stock_assets.defs.plots import line_plot, markdown_image
from stock_assets.lib import trading_calendar
from stock_assets.lib.contracts import MonitorMetadata
from stock_assets.resources.policies import MonitoringPolicyResource
from stock_assets.resources.warehouse import WarehouseResource

PLOT_SESSIONS = 60
PLOT_TICKERS = 8


def build_performance_log(partitions: PartitionsDefinition) -> AssetsDefinition:
    return asset(
        partitions_def=partitions,
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
    )(performance_log)


def performance_log(
    context: AssetExecutionContext,
    daily_predictions: pd.DataFrame,
    raw_prices: pd.DataFrame,
    warehouse: WarehouseResource,
    monitoring_policy: MonitoringPolicyResource,
) -> pd.DataFrame:
    """Actual vs predicted for every forecast that targeted session D (Friday's are scored on
    Monday, the calendar decides): absolute, percentage and squared error and direction hit.
    Metadata carries rolling aggregates over the last sessions across all tickers, which the
    retraining sensor reads."""
    from stock_assets.lib.degradation import detect_degradation
    from stock_assets.lib.scoring import champion_session_losses, rolling_summary, score_predictions

    day = context.partition_key
    scored = score_predictions(daily_predictions, raw_prices, day)
    window_sessions = monitoring_policy.window_sessions
    # Enough history for the rolling window and for the champion's whole tenure up to the age limit.
    span = max(window_sessions, monitoring_policy.max_champion_age_sessions + 1)
    start = trading_calendar.offset_session(day, -(span - 1)).isoformat()
    history = warehouse.get().read_range(
        "performance_log", "target_date", start, trading_calendar.previous_session(day).isoformat()
    )
    log = pd.concat([h for h in (history, scored) if len(h)], ignore_index=True) if len(history) else scored
    window_start = trading_calendar.offset_session(day, -(window_sessions - 1)).isoformat()
    rolling = rolling_summary(log[log["target_date"] >= window_start])
    metadata = {
        "rows": len(scored),
        "note": "scored" if len(scored) else f"nothing to score: no predictions targeted {day}",
        "rolling_window_sessions": window_sessions,
        **rolling,
    }
    if len(scored):
        champion = scored.iloc[0]
        champion_loss, persistence_loss = champion_session_losses(
            log, champion["model_version"], champion["model_trained_for"]
        )
        detector = detect_degradation(champion_loss, persistence_loss, monitoring_policy.detector_config())
        monitor = MonitorMetadata(
            champion_version=str(champion["model_version"]),
            champion_kind=str(champion["model_kind"]),
            champion_promoted_for=str(champion["model_trained_for"]),
            champion_age_sessions=len(trading_calendar.sessions_between(champion["model_trained_for"], day)) - 1,
            champion_mae_ratio=detector.mae_ratio,
            detector_statistic=detector.statistic,
            detector_threshold=detector.threshold,
            detector_fired=bool(detector.fired),
            detector_reason=detector.reason,
            rolling_samples=int(rolling.get("rolling_samples", 0)),
            rolling_mape=rolling.get("rolling_mape"),
            rolling_direction_accuracy=rolling.get("rolling_direction_accuracy"),
        )
        metadata.update(
            {
                **monitor.to_metadata(),
                "scored": MetadataValue.md(
                    scored[
                        ["ticker", "last_close", "predicted_close", "actual_close", "abs_pct_error", "direction_hit"]
                    ]
                    .round(4)
                    .to_markdown(index=False)
                ),
                **_plots(log, window_sessions),
            }
        )
    context.add_output_metadata(metadata)
    return scored


def _plots(log: pd.DataFrame, window_sessions: int) -> dict:
    """Predicted vs actual per ticker (the first PLOT_TICKERS of the basket: a chart of 500 tickers is
    unreadable and costs seconds) and the rolling MAE ratio to persistence over all of them, dated,
    over the last PLOT_SESSIONS scored sessions."""
    from stock_assets.lib.scoring import rolling_summary

    dates = sorted(log["target_date"].unique())[-PLOT_SESSIONS:]
    log = log[log["target_date"].isin(set(dates))]
    x = pd.to_datetime(dates)
    series = {}
    shown = sorted(log["ticker"].unique())[:PLOT_TICKERS]
    for ticker, rows in log[log["ticker"].isin(shown)].groupby("ticker"):
        rows = rows.set_index("target_date").reindex(dates)
        series[f"{ticker} actual"] = (rows["actual_close"] / rows["actual_close"].iloc[0]).tolist()
        series[f"{ticker} predicted"] = (rows["predicted_close"] / rows["actual_close"].iloc[0]).tolist()
    ratio = [
        rolling_summary(
            log[(log["target_date"] <= d) & (log["target_date"] >= dates[max(0, i - window_sessions + 1)])]
        )["rolling_mae_ratio"]
        for i, d in enumerate(dates)
    ]
    more = log["ticker"].nunique() - len(shown)
    title = f"predicted vs actual (relative to first close), {len(dates)} sessions" + (
        f", {more} more tickers in the log" if more > 0 else ""
    )
    return {
        "predicted_vs_actual": markdown_image(
            line_plot(series, title, "target session", "price / first close", x=x), "predicted vs actual"
        ),
        "mae_ratio_plot": markdown_image(
            line_plot(
                {f"rolling {window_sessions}-session MAE / persistence MAE": ratio},
                "skill against persistence (< 1 beats it)",
                "target session",
                "MAE ratio",
                x=x,
            ),
            "MAE ratio",
        ),
    }
