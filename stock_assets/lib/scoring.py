"""Scoring predictions against what happened, rolling aggregates, and the retraining rule (pure)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from stock_assets.lib.distributions import (
    DEFAULT_LEVELS,
    binomial_band,
    central_intervals,
    check_levels,
    christoffersen_independence,
    interval_covered,
    kupiec_pof,
    pinball_loss,
    pit_values,
    quantile_column,
    winkler_score,
)
from stock_assets.lib.metrics import persistence_errors, pointwise_errors, price_forecast_metrics

TEXT_COLUMNS = [
    "target_date", "ticker", "prediction_date", "model_version", "model_run_id", "model_trained_for", "model_kind",
]  # fmt: skip
NUMBER_COLUMNS = [
    "last_close",
    "predicted_close",
    "actual_close",
    "abs_error",
    "abs_pct_error",
    "squared_error",
    "direction_hit",
    "persistence_abs_error",
]
# What the served distribution was, copied from daily_predictions (NaN when a row lacks it).
# `served_by_fallback` is 1 where the guard served the baseline's forecast instead of the champion's.
FORECAST_COLUMNS = ["predicted_volatility", "baseline_volatility", "calibration_scale", "served_by_fallback"]
BASELINE = "baseline_"  # prefix of the persistence-EWMA baseline's quantiles and scores
_Q_COLUMN = re.compile(r"^q(\d+)$")


def quantile_levels(frame: pd.DataFrame | Sequence[str]) -> tuple[float, ...]:
    """The quantile levels whose served price columns (q05, q50, ...) a frame carries, ascending."""
    columns = frame.columns if isinstance(frame, pd.DataFrame) else frame
    return tuple(sorted(float("0." + m.group(1)) for c in columns if (m := _Q_COLUMN.match(str(c)))))


def interval_names(levels: Sequence[float]) -> dict[int, tuple[float, float]]:
    """Percent of each central interval -> (lower, upper) level, e.g. {90: (0.05, 0.95), 50: (0.25, 0.75)}."""
    return {int(round(100 * coverage)): pair for coverage, pair in central_intervals(levels).items()}


def score_columns(levels: Sequence[float]) -> list[str]:
    """Per-row distribution scores of one forecaster (unprefixed): pinball, coverage and Winkler score
    of every central interval, PIT."""
    names = interval_names(levels)
    return ["pinball_loss", *[f"covered_{p}" for p in names], *[f"winkler_{p}" for p in names], "pit"]


def log_columns(levels: Sequence[float] = DEFAULT_LEVELS) -> list[str]:
    """performance_log's columns for these quantile levels, in order."""
    quantiles = [quantile_column(x) for x in levels]
    scores = score_columns(levels)
    return [
        *TEXT_COLUMNS[:3],
        *NUMBER_COLUMNS,
        *quantiles,
        *scores,
        *FORECAST_COLUMNS,
        *[BASELINE + c for c in quantiles],
        *[BASELINE + c for c in scores],
        *TEXT_COLUMNS[3:],
    ]


LOG_COLUMNS = log_columns(DEFAULT_LEVELS)


def empty_log(levels: Sequence[float] = DEFAULT_LEVELS) -> pd.DataFrame:
    """A typed empty log, so a first empty partition still creates numeric columns."""
    columns = log_columns(levels)
    return pd.DataFrame({c: pd.Series(dtype=object if c in TEXT_COLUMNS else float) for c in columns})[columns]


def distribution_scores(
    actual_close, last_close, price_quantiles: np.ndarray, levels: Sequence[float]
) -> dict[str, np.ndarray]:
    """`score_columns(levels)` of price quantiles (rows, L), in log-return units:
    y = log(actual / last), q = log(q_price / last). NaN where the forecast or the outcome is missing."""
    last = np.asarray(last_close, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(np.asarray(actual_close, dtype=np.float64) / last)
        q = np.log(np.asarray(price_quantiles, dtype=np.float64) / last[:, None])
    q = np.where(np.isfinite(q), q, np.nan)
    levels = [float(x) for x in levels]
    out = {"pinball_loss": pinball_loss(y, q, levels)}
    covered, winkler = {}, {}
    for percent, (low, high) in interval_names(levels).items():
        lo, hi = q[:, levels.index(low)], q[:, levels.index(high)]
        covered[f"covered_{percent}"] = interval_covered(y, lo, hi)
        winkler[f"winkler_{percent}"] = winkler_score(y, lo, hi, 1.0 - percent / 100)
    return {**out, **covered, **winkler, "pit": pit_values(y, q, levels)}


def score_predictions(
    predictions: pd.DataFrame, actual: pd.DataFrame, target_date: str, levels: Sequence[float] | None = None
) -> pd.DataFrame:
    """One row per prediction whose target session is `target_date`, with its errors and the scores
    of its distribution (and of the baseline's, prefixed `baseline_`).

    `actual` holds raw_prices rows (date, ticker, adj_close); the direction is judged from the
    same last close the prediction started from, and only for a directional forecast: a flat one
    (predicted_close == last_close, what persistence serves) gets `direction_hit` NaN ("n/a").
    The levels are those of the q-columns present (the configured ones); `levels` (default
    DEFAULT_LEVELS) only shapes the columns when the predictions carry none (an empty partition, or
    point-only rows from before distributions, whose scores are then NaN).
    """
    found = quantile_levels(predictions)
    levels = check_levels(found) if found else check_levels(levels or DEFAULT_LEVELS)
    if len(predictions) == 0:
        return empty_log(levels)
    due = predictions[predictions["target_date"] == target_date]
    if len(due) == 0:
        return empty_log(levels)
    merged = due.merge(
        actual.loc[actual["date"] == target_date, ["ticker", "adj_close"]].rename(
            columns={"adj_close": "actual_close"}
        ),
        on="ticker",
        how="inner",
    )
    errors = pointwise_errors(merged["actual_close"], merged["predicted_close"], merged["last_close"])
    for name, values in errors.items():
        merged[name] = values
    flat = merged["predicted_close"].to_numpy(dtype=float) == merged["last_close"].to_numpy(dtype=float)
    merged.loc[flat, "direction_hit"] = np.nan
    merged["persistence_abs_error"] = persistence_errors(merged["actual_close"], merged["last_close"])["abs_error"]
    for column in FORECAST_COLUMNS:
        merged[column] = merged[column].astype(float) if column in merged else np.nan
    for prefix in ("", BASELINE):
        columns = [prefix + quantile_column(x) for x in levels]
        for column in columns:
            merged[column] = merged[column].astype(float) if column in merged else np.nan
        scores = distribution_scores(
            merged["actual_close"], merged["last_close"], merged[columns].to_numpy(dtype=float), levels
        )
        for name, values in scores.items():
            merged[prefix + name] = values
    return merged[log_columns(levels)].sort_values("ticker").reset_index(drop=True)


def significant(x: float, digits: int = 4) -> float:
    """`x` rounded to `digits` significant digits (NaN and inf unchanged)."""
    x = float(x)
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


def share_band(n: int, p: float) -> str:
    """The binomial 95% band of an observed share of n Bernoulli(p) rows, as text "0.85–0.97"."""
    if n <= 0:
        return "n/a"
    low, high = binomial_band(n, p)
    return f"{low:.2f}–{high:.2f}"


def _finite(values: pd.Series) -> np.ndarray:
    a = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    return a[np.isfinite(a)]


def _mean(log: pd.DataFrame, column: str) -> float:
    a = _finite(log[column]) if column in log else np.array([])
    return float(a.mean()) if a.size else float("nan")


def _ratio(num: float, den: float) -> float:
    return num / den if den and math.isfinite(den) else float("nan")


def directional(log: pd.DataFrame) -> pd.DataFrame:
    """Rows with a directional forecast (predicted_close != last_close): the only ones that call a
    direction. Also right for logs written before flat forecasts had `direction_hit` NaN."""
    if len(log) == 0:
        return log
    moved = log["predicted_close"].astype(float) != log["last_close"].astype(float)
    return log[moved & np.isfinite(log["direction_hit"].astype(float))]


def miss_sequences(log: pd.DataFrame, percent: int = 90) -> np.ndarray:
    """Misses (1 - covered) of the `percent`% interval, per ticker oldest first, tickers joined by a
    NaN (so a Christoffersen transition never links two tickers)."""
    column = f"covered_{percent}"
    if len(log) == 0 or column not in log:
        return np.array([])
    parts = []
    for _, rows in log.sort_values("target_date").groupby("ticker"):
        parts += [1.0 - rows[column].to_numpy(dtype=float), np.array([np.nan])]
    return np.concatenate(parts)


def interval_backtests(log: pd.DataFrame, percent: int = 90) -> dict[str, float]:
    """Kupiec POF and Christoffersen independence p-values of the `percent`% interval over the rows
    given, with the observed coverage and its row count."""
    misses = miss_sequences(log, percent)
    finite = misses[np.isfinite(misses)]
    nominal = percent / 100
    return {
        "rows": int(finite.size),
        "coverage": float(1.0 - finite.mean()) if finite.size else float("nan"),
        "kupiec_p": kupiec_pof(finite, 1.0 - nominal) if finite.size else float("nan"),
        "christoffersen_p": christoffersen_independence(misses) if finite.size else float("nan"),
    }


def rolling_summary(log: pd.DataFrame) -> dict[str, float | int | str]:
    """What performance_log shows per partition, over the rows given (the rolling window): the point
    metrics next to persistence on the same rows, direction accuracy against the up-share of the
    same directional rows, the observed coverage of each central interval with its binomial 95%
    band, and the mean pinball loss next to the baseline's. Floats at 4 significant digits."""
    metrics = rolling_metrics(log)
    persistence_mae = _mean(log, "persistence_abs_error")
    calls = directional(log)
    up = float((calls["actual_close"] > calls["last_close"]).mean()) if len(calls) else float("nan")
    out: dict[str, float | int | str] = {
        "rolling_samples": int(metrics["n"]),
        "rolling_mae": significant(metrics["mae"]),
        "rolling_persistence_mae": significant(persistence_mae),
        "rolling_mae_ratio": significant(_ratio(metrics["mae"], persistence_mae)),
        "rolling_mape": significant(metrics["mape"]),
        "rolling_directional_samples": len(calls),
        "rolling_direction_accuracy": significant(calls["direction_hit"].mean()) if len(calls) else float("nan"),
        "rolling_up_share": significant(up),
    }
    for percent in interval_names(quantile_levels(log) or DEFAULT_LEVELS):
        covered = _finite(log[f"covered_{percent}"]) if f"covered_{percent}" in log else np.array([])
        out[f"rolling_coverage_{percent}"] = significant(covered.mean()) if covered.size else float("nan")
        out[f"rolling_coverage_{percent}_band"] = share_band(covered.size, percent / 100)
        out[f"rolling_baseline_coverage_{percent}"] = significant(_mean(log, f"{BASELINE}covered_{percent}"))
    pinball, baseline = _mean(log, "pinball_loss"), _mean(log, BASELINE + "pinball_loss")
    out["rolling_pinball"] = significant(pinball)
    out["rolling_baseline_pinball"] = significant(baseline)
    out["rolling_pinball_ratio"] = significant(_ratio(pinball, baseline))
    return out


def champion_rows(log: pd.DataFrame, version: str, trained_for: str) -> pd.DataFrame:
    """The rows one champion served itself since its promotion (not those the guard's fallback served)."""
    mine = (log["model_version"].astype(str) == str(version)) & (log["model_trained_for"] == trained_for)
    if "served_by_fallback" in log:
        mine &= log["served_by_fallback"].astype(float).fillna(0.0) != 1.0
    return log[mine]


def champion_session_losses(log: pd.DataFrame, version: str, trained_for: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-session mean pinball loss of one champion and of the persistence-EWMA baseline on its
    rows, oldest first: the stream the degradation detector judges (since that champion's promotion)."""
    mine = champion_rows(log, version, trained_for)
    by_session = mine.groupby("target_date")[["pinball_loss", BASELINE + "pinball_loss"]].mean().sort_index()
    return by_session["pinball_loss"].to_numpy(), by_session[BASELINE + "pinball_loss"].to_numpy()


def champion_session_misses(
    log: pd.DataFrame, version: str, trained_for: str, percent: int = 90
) -> tuple[np.ndarray, np.ndarray]:
    """Per-session (misses, scored rows) of one champion's served `percent`% interval, oldest first:
    the counts the coverage alarm judges."""
    mine = champion_rows(log, version, trained_for)
    covered = mine[f"covered_{percent}"].astype(float) if f"covered_{percent}" in mine else pd.Series(dtype=float)
    frame = pd.DataFrame({"target_date": mine["target_date"], "miss": 1.0 - covered, "row": covered.notna()})
    by_session = frame.groupby("target_date")[["miss", "row"]].sum().sort_index()
    return by_session["miss"].to_numpy(dtype=float), by_session["row"].to_numpy(dtype=float)


def rolling_metrics(log: pd.DataFrame) -> dict[str, float]:
    """MAE, RMSE, MAPE, directional accuracy and sample count over all rows given."""
    if len(log) == 0:
        return price_forecast_metrics(np.array([]), np.array([]), np.array([]))
    return price_forecast_metrics(log["actual_close"], log["predicted_close"], log["last_close"])


@dataclass(frozen=True)
class AbsoluteGuards:
    """Optional absolute thresholds (off when None). On real daily data a coin flip breaches a
    direction bound most days, so they are guards, never the default rule."""

    mape_max: float | None
    direction_accuracy_min: float | None
    min_samples: int

    def breach(self, samples: int, mape: float, direction_accuracy: float) -> str | None:
        """Why performance counts as degraded, or None (too few samples is never a breach)."""
        if samples < self.min_samples:
            return None
        reasons = []
        if self.mape_max is not None and mape > self.mape_max:
            reasons.append(f"rolling MAPE {mape:.4f} > {self.mape_max}")
        if self.direction_accuracy_min is not None and direction_accuracy < self.direction_accuracy_min:
            reasons.append(f"rolling directional accuracy {direction_accuracy:.3f} < {self.direction_accuracy_min}")
        return "; ".join(reasons) or None


FAMILIES = ("baseline", "LSTM", "drill")


def served_by(kind: str) -> str:
    """The family of a model kind: a baseline, a drill's deliberately degraded model, or an LSTM."""
    if kind in ("persistence", "drift", "garch"):
        return "baseline"
    return "drill" if str(kind).startswith("drill") else "LSTM"


STATIC_LOOKBACK = 500  # sessions of past log returns behind the static interval reference


def static_interval_quantiles(
    prices: pd.DataFrame,
    log: pd.DataFrame,
    levels: Sequence[float] | None = None,
    lookback: int = STATIC_LOOKBACK,
) -> pd.DataFrame:
    """The static-interval reference for each log row: per ticker, the empirical quantiles at
    `levels` (default: the log's) of the `lookback` log returns up to and including the row's
    prediction_date (so the return being forecast is never among them).

    `prices` holds raw_prices rows (date, ticker, adj_close) from at least `lookback` + 1 sessions
    before the log's first prediction_date on; rows with fewer past returns use those there are
    (NaN with fewer than 2). Returns target_date, ticker and the q-columns in LOG-RETURN units.
    """
    levels = check_levels(levels or quantile_levels(log) or DEFAULT_LEVELS)
    columns = [quantile_column(x) for x in levels]
    out = []
    for ticker, rows in log[["target_date", "prediction_date", "ticker"]].drop_duplicates().groupby("ticker"):
        close = prices[prices["ticker"] == ticker].sort_values("date")
        dates = close["date"].astype(str).to_numpy()
        returns = np.log(close["adj_close"].to_numpy(dtype=float))
        returns = np.concatenate([[np.nan], np.diff(returns)])  # returns[i]: from dates[i - 1] to dates[i]
        end = np.searchsorted(dates, rows["prediction_date"].astype(str).to_numpy(), side="right")
        values = np.full((len(rows), len(levels)), np.nan)
        for i, e in enumerate(end):
            past = returns[max(0, e - lookback) : e]
            past = past[np.isfinite(past)]
            if past.size >= 2:
                values[i] = np.quantile(past, levels)
        frame = pd.DataFrame(values, columns=columns)
        frame.insert(0, "ticker", ticker)
        frame.insert(0, "target_date", rows["target_date"].to_numpy())
        out.append(frame)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["target_date", "ticker", *columns])


StaticQuantiles = pd.DataFrame | Callable[[pd.DataFrame], pd.DataFrame]


def _reference_losses(log: pd.DataFrame, static_quantiles: StaticQuantiles, levels) -> np.ndarray:
    """Pinball loss per log row of the static interval (log-return quantiles keyed by target_date, ticker)."""
    frame = static_quantiles(log) if callable(static_quantiles) else static_quantiles
    columns = [quantile_column(x) for x in levels]
    missing = [c for c in ["target_date", "ticker", *columns] if c not in frame]
    if missing:
        raise ValueError(f"static_quantiles lacks columns {missing}")
    keyed = log[["target_date", "ticker"]].merge(frame[["target_date", "ticker", *columns]], how="left", validate="m:1")
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(log["actual_close"].to_numpy(dtype=float) / log["last_close"].to_numpy(dtype=float))
    return pinball_loss(y, keyed[columns].to_numpy(dtype=float), levels)


def _pinball_against(log: pd.DataFrame, reference: np.ndarray, name: str) -> dict[str, float | str]:
    """Mean pinball ratio against a reference on the rows both scored, and the one-sided DM p-value
    (H1: the served loss is lower) on per-session means."""
    from stock_assets.lib.significance import diebold_mariano

    frame = pd.DataFrame(
        {"target_date": log["target_date"].to_numpy(), "model": log["pinball_loss"].to_numpy(dtype=float)}
    )
    frame["reference"] = reference
    frame = frame[np.isfinite(frame["model"]) & np.isfinite(frame["reference"])]
    if len(frame) == 0:
        return {f"pinball / {name}": "n/a (no row scored by both)"}
    by_session = frame.groupby("target_date")[["model", "reference"]].mean()
    dm = diebold_mariano((by_session["model"] - by_session["reference"]).to_numpy())
    return {
        f"pinball / {name}": round(float(frame["model"].mean() / frame["reference"].mean()), 4),
        f"p-value (pinball < {name})": round(float(dm.p_value), 4),
    }


def walk_forward_summary(log: pd.DataFrame, static_quantiles: StaticQuantiles | None = None) -> dict[str, float | str]:
    """The honest scorecard of served forecasts over a replay: skill against persistence on the same
    rows with a Diebold-Mariano p-value (per-session differentials); the served distribution's
    coverage of each central interval with its binomial 95% band, its mean pinball loss against the
    persistence-EWMA baseline's and (when `static_quantiles` is given) against a static interval,
    with one-sided DM p-values, and the Kupiec p-value of the 90% interval; directional accuracy
    against the share of up moves on exactly the same directional rows (what "always up" scores
    there) with a one-sided binomial p-value; and the share of sessions each family of model served.

    `static_quantiles`: a frame with target_date, ticker and the log's q-columns holding LOG-RETURN
    quantiles (`static_interval_quantiles(prices, log)`), or a callable taking the log and returning one.
    """
    from scipy.stats import binomtest

    from stock_assets.lib.significance import diebold_mariano

    if len(log) == 0:
        return {"scored predictions": 0}
    by_session = log.groupby("target_date")[["abs_error", "persistence_abs_error"]].mean()
    dm = diebold_mariano((by_session["abs_error"] - by_session["persistence_abs_error"]).to_numpy())
    out: dict[str, float | str] = {
        "scored sessions": len(by_session),
        "scored predictions": len(log),
        "model MAE / persistence MAE": round(float(log["abs_error"].mean() / log["persistence_abs_error"].mean()), 4),
        "p-value (model MAE < persistence)": round(float(dm.p_value), 4),
    }
    levels = quantile_levels(log)
    if levels and "pinball_loss" in log and np.isfinite(log["pinball_loss"].astype(float)).any():
        for percent in sorted(interval_names(levels)):
            covered = _finite(log[f"covered_{percent}"])
            out[f"coverage {percent}%"] = (
                f"{covered.mean():.4f} over {covered.size} rows (95% band if calibrated "
                f"{share_band(covered.size, percent / 100)})"
            )
        out |= _pinball_against(log, log[BASELINE + "pinball_loss"].to_numpy(dtype=float), "baseline")
        if static_quantiles is not None:
            out |= _pinball_against(log, _reference_losses(log, static_quantiles, levels), "static interval")
        if 90 in interval_names(levels):
            out["Kupiec p-value (90% interval)"] = round(interval_backtests(log, 90)["kupiec_p"], 4)
    else:
        out["coverage"] = "n/a (no scored distributions in the log)"
    # A flat forecast (persistence) calls no direction: judge only directional rows, and the
    # up-share on exactly those rows.
    calls = directional(log)
    hits = int(calls["direction_hit"].sum())
    up_share = float((calls["actual_close"] > calls["last_close"]).mean()) if len(calls) else float("nan")
    p_value = binomtest(hits, len(calls), max(up_share, 1e-9), alternative="greater").pvalue if len(calls) else 1.0
    served = log.groupby("target_date")["model_kind"].first().map(served_by).value_counts(normalize=True)
    fallback = (
        log["served_by_fallback"].astype(float).fillna(0.0) == 1.0
        if "served_by_fallback" in log
        else pd.Series(False, index=log.index)
    )
    by_baseline = log[(log["model_kind"].map(served_by) == "baseline") | fallback]
    out["MAE / persistence where a baseline served"] = (
        round(float(by_baseline["abs_error"].mean() / by_baseline["persistence_abs_error"].mean()), 4)
        if len(by_baseline)
        else "n/a (no baseline served)"
    )
    out["sessions the guard served persistence"] = int(log.loc[fallback, "target_date"].nunique())
    return {
        **out,
        "directional accuracy": f"{hits / len(calls):.4f} over {len(calls)} directional forecasts"
        if len(calls)
        else "n/a (flat forecasts call no direction)",
        "up-share on the same rows (always-up accuracy)": round(up_share, 4),
        "p-value (accuracy > up-share)": round(float(p_value), 4),
        **{f"sessions served by {family}": f"{served.get(family, 0.0):.0%}" for family in FAMILIES},
    }
