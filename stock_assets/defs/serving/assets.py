"""`daily_predictions`: after the close of D, the distribution of the next session's close per ticker."""

import datetime as dt

import numpy as np
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

from stock_assets.defs.champions import kept_since, promote_first_champion
from stock_assets.defs.lookback import SessionLookback
from stock_assets.lib import trading_calendar
from stock_assets.lib.contracts import GUARD_REASON, GUARD_ROWS, SERVED_CHAMPION_PROMOTED_FOR
from stock_assets.lib.distributions import quantile_column
from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.model_registry import ModelRegistryResource
from stock_assets.resources.warehouse import WarehouseResource
from stock_assets.settings import Settings

MODEL_COLUMNS = ["model_name", "model_version", "model_run_id", "model_trained_for", "model_kind", "created_at"]


def prediction_columns(levels) -> list[str]:
    """The columns of `daily_predictions` for the configured quantile levels."""
    quantiles = [quantile_column(level) for level in levels]
    return [
        "prediction_date",
        "target_date",
        "ticker",
        "last_close",
        "predicted_log_return",
        "predicted_close",
        "predicted_change_pct",
        "predicted_volatility",
        *quantiles,
        *(f"baseline_{q}" for q in quantiles),
        "baseline_volatility",
        "calibration_scale",
        "served_by_fallback",
        "fallback_reason",
        *MODEL_COLUMNS,
    ]


def build_daily_predictions(settings: Settings, partitions: PartitionsDefinition) -> AssetsDefinition:
    max_seq = max(settings.training.sequence_lengths)
    price_lookback = max(max_seq, settings.forecast.volatility_lookback)

    @asset(
        partitions_def=partitions,
        group_name="operations",
        ins={
            "processed_features": AssetIn(partition_mapping=SessionLookback(max_seq)),
            # Volatility needs a longer memory than the networks' windows (forecast.volatility_lookback).
            "raw_prices": AssetIn(partition_mapping=SessionLookback(price_lookback)),
        },
        io_manager_key="table_io_manager",
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
        later) forecasts the next session's log-return quantiles from the stored features and prices
        up to D; served intervals are recalibrated per ticker from the performance log (adaptive
        conformal inference), and the persistence-EWMA baseline's quantiles sit beside them on the
        same row. Prices are adj_close[D] x exp(quantile). With no champion yet, the
        persistence-EWMA baseline becomes the first champion."""
        return predict_next_session(
            context, processed_features, raw_prices, basket, warehouse, model_registry, settings
        )

    return daily_predictions


def _closes(raw_prices: pd.DataFrame, tickers: list[str], day: str) -> np.ndarray:
    close = raw_prices.pivot(index="date", columns="ticker", values="adj_close").reindex(columns=tickers).dropna()
    if len(close) < 2 or str(close.index[-1]) != day:
        raise Failure(
            description=f"prices for all of {tickers} are needed up to {day}; found {len(close)} complete sessions. "
            "Materialize raw_prices for that range."
        )
    return close.to_numpy(dtype=np.float64)


def scored_log(warehouse, raw_prices: pd.DataFrame, first: str, day: str) -> pd.DataFrame:
    """The performance log from `first` through `day`, including the scores of the forecasts that
    targeted `day` itself: this run may serve before it writes performance_log for `day` (the two
    assets do not wait for each other), and calibration and the guard must see the latest session."""
    from stock_assets.lib.scoring import score_predictions

    log = warehouse.get().read_range("performance_log", "target_date", first, day)
    if len(log) and (log["target_date"] == day).any():
        return log
    previous = trading_calendar.previous_session(day).isoformat()
    made = warehouse.get().read_range("daily_predictions", "prediction_date", previous, previous)
    if len(made) == 0:
        return log
    today = score_predictions(made, raw_prices, day)
    return pd.concat([log, today], ignore_index=True) if len(log) else today


def calibration_scales(log: pd.DataFrame, champion, tickers: list[str], forecast) -> np.ndarray:
    """Per ticker, the adaptive conformal spread factor from the misses of this champion's served 90%
    intervals so far (`log`: since its promotion), oldest first: derived from the performance log,
    not hidden state (docs/decisions.md, "Calibration that holds online")."""
    from stock_assets.lib.distributions import aci_scale
    from stock_assets.lib.scoring import champion_rows

    if not forecast.calibration or len(log) == 0 or "covered_90" not in log:
        return np.ones(len(tickers))
    mine = champion_rows(log, champion.version, champion.partition).sort_values("target_date")
    scales = []
    for ticker in tickers:
        misses = 1.0 - mine.loc[mine["ticker"] == ticker, "covered_90"].to_numpy(dtype=np.float64)
        scales.append(aci_scale(misses, target=0.10, gamma=forecast.calibration_gamma))
    return np.asarray(scales)


def predict_next_session(
    context, processed_features, raw_prices, basket: BasketResource, warehouse, model_registry, settings
) -> pd.DataFrame:
    from stock_assets.lib.distributions import price_quantiles, rescale_spread, volatility_from_quantiles
    from stock_assets.lib.forecasters import PERSISTENCE, fit_baseline

    day, forecast = context.partition_key, settings.forecast
    levels = tuple(forecast.quantiles)
    champion = model_registry.champion_as_of(day)
    if champion is None:
        champion = promote_first_champion(context, day, basket, warehouse, model_registry, settings)
    model_registry.sync_champion_alias()  # repairs an alias a killed promotion left behind
    forecaster = model_registry.load(champion)
    preprocessing = getattr(forecaster, "preprocessing", None)
    tickers = list(preprocessing.tickers if preprocessing is not None else forecaster.tickers)
    if sorted(tickers) != sorted(basket.tickers):
        raise Failure(
            description=f"champion {champion.label} serves {tickers}, settings ask for {list(basket.tickers)}; "
            f"run retraining_job for {day}"
        )
    if tuple(forecaster.levels) != levels:
        raise Failure(
            description=f"champion {champion.label} forecasts the quantile levels {list(forecaster.levels)}, settings "
            f"ask for {list(levels)} (forecast.quantiles); run retraining_job for {day} or restore the setting"
        )
    close = _closes(raw_prices, tickers, day)
    features = None
    if preprocessing is not None:  # a network reads the last sequence_length sessions of features
        from stock_assets.lib.datasets import build_panel

        panel = build_panel(processed_features, raw_prices, tickers, FEATURE_COLUMNS)
        seq = preprocessing.sequence_length
        if panel.n_sessions < seq or panel.dates[-1] != day:
            raise Failure(
                description=f"features for all of {tickers} are needed on the {seq} sessions up to {day}; found "
                f"{panel.n_sessions} complete session(s) ending {panel.dates[-1] if panel.dates else 'nowhere'}. "
                "Materialize processed_features for that range."
            )
        features = panel.features
    raw = forecaster.forecast(features, close, [-1])[0]  # (tickers, levels) log-return quantiles
    log = scored_log(warehouse, raw_prices, str(champion.partition or day), day)
    scales = calibration_scales(log, champion, tickers, forecast)
    with np.errstate(invalid="ignore", over="ignore"):
        served = rescale_spread(raw, levels, scales)
    baseline = fit_baseline(PERSISTENCE, close, tickers, levels, forecast.ewma_lambda, day).forecast(None, close, [-1])[
        0
    ]
    guard = guard_decision(served, baseline, levels, tickers, champion, day, log, context.instance, settings)
    if guard.fired:  # those tickers are served persistence's forecast (docs/decisions.md, "A bad champion ...")
        served = np.where(guard.fallback[:, None], baseline, served)
        scales = np.where(guard.fallback, 1.0, scales)
        context.log.warning(f"guard: served the persistence-EWMA baseline for {day}: {guard.summary()}")
    last = close[-1]
    median = served[:, levels.index(0.5)]
    frame = pd.DataFrame(
        {
            "prediction_date": day,
            "target_date": trading_calendar.next_session(day).isoformat(),
            "ticker": tickers,
            "last_close": last,
            "predicted_log_return": median,
            "predicted_close": last * np.exp(median),
            "predicted_change_pct": 100.0 * np.expm1(median),
            "predicted_volatility": volatility_from_quantiles(served, levels),
            **dict(zip([quantile_column(v) for v in levels], price_quantiles(last, served).T)),
            **dict(zip([f"baseline_{quantile_column(v)}" for v in levels], price_quantiles(last, baseline).T)),
            "baseline_volatility": volatility_from_quantiles(baseline, levels),
            "calibration_scale": scales,
            "served_by_fallback": guard.fallback,
            "fallback_reason": list(guard.reasons),
            "model_name": champion.name,
            "model_version": str(champion.version),
            "model_run_id": champion.run_id,
            "model_trained_for": champion.partition,
            "model_kind": forecaster.kind,
            "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
    )[prediction_columns(levels)]
    context.add_output_metadata(
        {
            "rows": len(frame),
            "target_session": frame["target_date"].iloc[0],
            "model": f"{champion.label}, promoted for {champion.partition}",
            SERVED_CHAMPION_PROMOTED_FOR: str(champion.partition),
            GUARD_ROWS: int(guard.fallback.sum()),
            **({GUARD_REASON: guard.summary()} if guard.fired else {}),
            "forecasts": MetadataValue.md(forecast_table(frame, levels)),
        }
    )
    return frame


def guard_decision(served, baseline, levels, tickers, champion, day, log, instance, settings):
    """The plausibility guard for this session (lib/guard.py): the champion's own scored sessions in
    `log` (never those the fallback served) since its promotion, or since the latest retraining whose
    gate kept it, judged against the baseline's on the same rows."""
    from stock_assets.lib.distributions import volatility_from_quantiles
    from stock_assets.lib.guard import GuardDecision, decide, loss_streak
    from stock_assets.lib.scoring import champion_session_losses

    rule = settings.guard
    if not rule.enabled:
        return GuardDecision(np.zeros(len(tickers), dtype=bool), ("",) * len(tickers))
    since = kept_since(instance, str(champion.partition or day), day)
    streak = None
    if len(log) and "pinball_loss" in log:
        recent = log[log["target_date"] > since]
        mine, theirs = champion_session_losses(recent, champion.version, champion.partition)
        streak = loss_streak(mine, theirs, rule)
    return decide(served, volatility_from_quantiles(baseline, levels), levels, tickers, rule, streak)


def forecast_table(frame: pd.DataFrame, levels) -> str:
    """What a user reads without opening anything: per ticker the last close, the median, the change
    and the 50% / 90% ranges of the next session's close."""
    from stock_assets.lib.distributions import central_intervals

    intervals = central_intervals(levels)
    rows = []
    for _, row in frame.iterrows():
        ranges = [
            f"{row[quantile_column(lo)]:.2f}–{row[quantile_column(hi)]:.2f}"
            for cover, (lo, hi) in sorted(intervals.items())
        ]
        rows.append(
            f"| {row['ticker']} | {row['last_close']:.2f} | {row['predicted_close']:.2f} | "
            f"{row['predicted_change_pct']:+.2f}% | " + " | ".join(ranges) + f" | {row['calibration_scale']:.2f} |"
        )
    covers = [f"{cover:.0%} range" for cover in sorted(intervals)]
    header = "| ticker | last close | median | change | " + " | ".join(covers) + " | calibration |"
    return "\n".join([header, "|" + "---|" * (5 + len(covers)), *rows])
