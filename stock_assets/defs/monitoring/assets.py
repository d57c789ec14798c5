"""`performance_log`: every prediction whose target session is D, scored against the close of D: the
point forecast and the served distribution, each next to its baseline."""

import math
from collections.abc import Sequence

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

from stock_assets.defs.champions import kept_since
from stock_assets.defs.plots import calibration_chart_png, fan_chart_png, line_plot, markdown_image
from stock_assets.lib import trading_calendar
from stock_assets.lib.contracts import MonitorMetadata
from stock_assets.lib.distributions import DEFAULT_LEVELS
from stock_assets.resources.policies import MonitoringPolicyResource
from stock_assets.resources.warehouse import WarehouseResource

PLOT_SESSIONS = 60
PLOT_TICKERS = 8


def build_performance_log(
    partitions: PartitionsDefinition, levels: Sequence[float] = DEFAULT_LEVELS
) -> AssetsDefinition:
    """`levels`: the configured `settings.forecast.quantiles`; they shape the columns of a partition
    with nothing to score (scored rows follow the q-columns of the predictions)."""
    levels = tuple(float(x) for x in levels)

    def performance_log(
        context: AssetExecutionContext,
        daily_predictions: pd.DataFrame,
        raw_prices: pd.DataFrame,
        warehouse: WarehouseResource,
        monitoring_policy: MonitoringPolicyResource,
    ) -> pd.DataFrame:
        """Actual vs predicted for every forecast that targeted session D (Friday's are scored on
        Monday, the calendar decides): the point errors and direction hit, and the served
        distribution's pinball loss, interval coverage, Winkler score and PIT next to the
        persistence-EWMA baseline's. Metadata carries rolling aggregates over the last sessions
        across all tickers, the champion's calibration backtests over its tenure, the degradation
        detector's and the coverage alarm's verdicts (read by the retraining sensor) and charts."""
        return _performance_log(context, daily_predictions, raw_prices, warehouse, monitoring_policy, levels)

    return asset(
        name="performance_log",
        partitions_def=partitions,
        group_name="operations",
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


def _performance_log(
    context: AssetExecutionContext,
    daily_predictions: pd.DataFrame,
    raw_prices: pd.DataFrame,
    warehouse: WarehouseResource,
    monitoring_policy: MonitoringPolicyResource,
    levels: tuple[float, ...],
) -> pd.DataFrame:
    from stock_assets.lib.scoring import rolling_summary, score_predictions

    day = context.partition_key
    scored = score_predictions(daily_predictions, raw_prices, day, levels)
    window_sessions = monitoring_policy.window_sessions
    # Enough history for the rolling window and for the champion's whole tenure up to the age limit.
    span = max(window_sessions, monitoring_policy.max_champion_age_sessions + 1, PLOT_SESSIONS)
    start = trading_calendar.offset_session(day, -(span - 1)).isoformat()
    history = warehouse.get().read_range(
        "performance_log", "target_date", start, trading_calendar.previous_session(day).isoformat()
    )
    log = pd.concat([h for h in (history, scored) if len(h)], ignore_index=True) if len(history) else scored
    window_start = trading_calendar.offset_session(day, -(window_sessions - 1)).isoformat()
    rolling = rolling_summary(log[log["target_date"] >= window_start])
    metadata = {
        "rows": len(scored),
        # Text, not a number: a constant would be one more flat chart in the Plots tab.
        "note": (
            f"scored; rolling window {window_sessions} sessions; charts by session: asset monitoring_report"
            if len(scored)
            else f"nothing to score: no predictions targeted {day}"
        ),
        **plottable(rolling),
    }
    if len(scored):
        champion = scored.iloc[0]
        answered = kept_since(context.instance, str(champion["model_trained_for"]), day)
        monitor, tenure = champion_monitor(log, champion, day, rolling, monitoring_policy, answered)
        metadata.update(
            {
                **plottable(monitor.to_metadata(), keep=True),
                **plottable(tenure),
                "scored": MetadataValue.md(scored[SCORED_TABLE_COLUMNS].round(4).to_markdown(index=False)),
                **_plots(log, window_sessions),
            }
        )
    context.add_output_metadata(metadata)
    return scored


def plottable(entries: dict, keep: bool = False) -> dict:
    """Floats rounded to 4 significant digits for the UI's tables and Plots tab; a float that is not
    finite (no directional rows yet, say) is left out, so the session is a gap in its chart rather
    than a NaN, unless `keep` (the monitor's contract: the sensor reads every key it writes).
    Other values pass unchanged."""
    from stock_assets.lib.reports import rounded

    out = {}
    for key, value in entries.items():
        if not isinstance(value, float):
            out[key] = value
        elif rounded(value) is not None:
            out[key] = rounded(value)
        elif keep:
            out[key] = value
    return out


SCORED_TABLE_COLUMNS = [
    "ticker", "last_close", "predicted_close", "actual_close", "abs_pct_error", "direction_hit",
    "pinball_loss", "baseline_pinball_loss", "covered_90", "pit",
]  # fmt: skip


def _number(x) -> float | None:
    """A finite float, or None (an optional contract field then stays out of the metadata)."""
    x = float(x)
    return x if math.isfinite(x) else None


def champion_monitor(
    log: pd.DataFrame,
    champion: pd.Series,
    day: str,
    rolling: dict,
    policy: MonitoringPolicyResource,
    answered: str | None = None,
) -> tuple[MonitorMetadata, dict]:
    """The verdicts on the champion that served `day`: the CUSUM on its per-session pinball
    differential against the baseline and the coverage alarm on its served 90% interval, over its
    sessions after `answered` (the latest retraining whose gate kept it; default: its promotion),
    and (second value, shown only) the Kupiec and Christoffersen p-values of that interval over its
    whole tenure."""
    from stock_assets.lib.degradation import detect_coverage_shortfall, detect_degradation
    from stock_assets.lib.scoring import (
        champion_rows,
        champion_session_losses,
        champion_session_misses,
        interval_backtests,
        significant,
    )

    version, trained_for = str(champion["model_version"]), str(champion["model_trained_for"])
    fresh = log[log["target_date"] > answered] if answered else log  # an answered alarm is not raised again
    pinball, baseline = champion_session_losses(fresh, version, trained_for)
    detector = detect_degradation(pinball, baseline, policy.detector_config())
    misses, rows = champion_session_misses(fresh, version, trained_for, 90)
    coverage = detect_coverage_shortfall(misses, rows)
    mine = champion_rows(log, version, trained_for)
    backtest = interval_backtests(mine, 90)
    mae_ratio = float(mine["abs_error"].mean() / mine["persistence_abs_error"].mean())
    monitor = MonitorMetadata(
        champion_version=version,
        champion_kind=str(champion["model_kind"]),
        champion_promoted_for=trained_for,
        champion_age_sessions=len(trading_calendar.sessions_between(trained_for, day)) - 1,
        champion_mae_ratio=significant(mae_ratio) if math.isfinite(mae_ratio) else 1.0,
        detector_statistic=significant(detector.statistic),
        detector_threshold=detector.threshold,
        detector_fired=bool(detector.fired),
        detector_reason=detector.reason,
        rolling_samples=int(rolling.get("rolling_samples", 0)),
        rolling_mape=_number(rolling.get("rolling_mape", float("nan"))),
        rolling_direction_accuracy=_number(rolling.get("rolling_direction_accuracy", float("nan"))),
        champion_pinball_ratio=_number(significant(detector.loss_ratio)),
        rolling_coverage_90=_number(rolling.get("rolling_coverage_90", float("nan"))),
        champion_coverage_90=_number(significant(coverage.coverage)),
        champion_covered_rows=coverage.rows,
        coverage_p_value=_number(significant(coverage.p_value)),
        coverage_alarm=bool(coverage.fired),
        coverage_reason=coverage.reason,
    )
    tenure = {
        "champion_kupiec_90_p": significant(backtest["kupiec_p"]),
        "champion_christoffersen_90_p": significant(backtest["christoffersen_p"]),
    }
    return monitor, tenure


def _plots(log: pd.DataFrame, window_sessions: int) -> dict:
    """The served distribution per ticker as fan charts (the first PLOT_TICKERS of the basket: a chart
    of 500 tickers is unreadable and costs seconds), the calibration of every central interval, and
    the rolling MAE and pinball ratios to the baselines over all tickers, dated, over the last
    PLOT_SESSIONS scored sessions."""
    from stock_assets.lib.scoring import rolling_summary

    dates = sorted(log["target_date"].unique())[-PLOT_SESSIONS:]
    log = log[log["target_date"].isin(set(dates))]
    x = pd.to_datetime(dates)
    windows = [
        rolling_summary(log[(log["target_date"] <= d) & (log["target_date"] >= dates[max(0, i - window_sessions + 1)])])
        for i, d in enumerate(dates)
    ]
    out = {
        "fan_chart": markdown_image(
            fan_chart_png(log, "served median and intervals vs actual close", max_tickers=PLOT_TICKERS),
            "fan chart",
        ),
        "calibration_chart": markdown_image(
            calibration_chart_png(log, f"calibration over the last {len(dates)} sessions"), "calibration"
        ),
        "mae_ratio_plot": markdown_image(
            line_plot(
                {
                    f"rolling {window_sessions}-session MAE / persistence MAE": [
                        w["rolling_mae_ratio"] for w in windows
                    ],
                    f"rolling {window_sessions}-session pinball / baseline pinball": [
                        w["rolling_pinball_ratio"] for w in windows
                    ],
                },
                "skill against the baselines (< 1 beats them)",
                "target session",
                "loss ratio",
                x=x,
            ),
            "MAE and pinball ratios",
        ),
    }
    return out
