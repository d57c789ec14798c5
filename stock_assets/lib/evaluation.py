"""Scoring any forecaster on the same holdout sessions, and the promotion gate's decision.

The gate re-scores candidate, champion and the persistence-EWMA baseline on identical target
sessions, each through its own forecaster (an LSTM's scaler, window and shrinkage; a baseline's
volatility recursion and shape), by the mean pinball loss of their quantiles, and promotes only a
significant improvement whose median is not significantly worse than persistence's
(docs/decisions.md, "The promotion gate").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stock_assets.lib.distributions import pinball_loss
from stock_assets.lib.metrics import log_returns, persistence_errors, pointwise_errors, price_forecast_metrics
from stock_assets.lib.significance import diebold_mariano, session_loss_differential


def forecaster_tickers(forecaster) -> tuple[str, ...]:
    preprocessing = getattr(forecaster, "preprocessing", None)
    return tuple(preprocessing.tickers) if preprocessing is not None else tuple(forecaster.tickers)


def forecast_quantiles(forecaster, arrays: dict[str, np.ndarray], ends) -> np.ndarray:
    """(len(ends), tickers, levels) log-return quantiles of `forecaster` for the sessions after
    `ends` of a training set, refusing a forecaster built for other tickers or features."""
    tickers = tuple(str(t) for t in arrays["tickers"])
    preprocessing = getattr(forecaster, "preprocessing", None)
    columns = [str(c) for c in arrays["feature_columns"]]
    if forecaster_tickers(forecaster) != tickers or (
        preprocessing is not None and list(preprocessing.feature_columns) != columns
    ):
        raise ValueError(
            f"model expects tickers {list(forecaster_tickers(forecaster))}"
            + (f" and {len(preprocessing.feature_columns)} features" if preprocessing is not None else "")
            + f"; the dataset has {list(tickers)} and {len(columns)} features"
        )
    return forecaster.forecast(arrays["features"], arrays["close"], ends)


def median_index(levels) -> int:
    return list(levels).index(0.5)


@dataclass(frozen=True)
class SessionScores:
    """Per (session, ticker): the pinball loss of the quantiles (log-return units, averaged over the
    levels) and the absolute price error of the median."""

    pinball: np.ndarray
    abs_error: np.ndarray


def score_quantiles(quantiles: np.ndarray, arrays: dict[str, np.ndarray], ends, levels) -> SessionScores:
    """Scores of log-return `quantiles` for the targets at ends + 1."""
    ends = np.asarray(ends)
    close = arrays["close"]
    realised = log_returns(close)[ends]
    last, actual = close[ends], close[ends + 1]
    median_close = last * np.exp(quantiles[..., median_index(levels)])
    return SessionScores(
        pinball=pinball_loss(realised, quantiles, levels),
        abs_error=pointwise_errors(actual, median_close, last)["abs_error"],
    )


def point_metrics(quantiles: np.ndarray | None, arrays: dict[str, np.ndarray], ends, levels) -> dict:
    """MAE, RMSE, MAPE and direction of the median's price forecast (None = persistence)."""
    ends = np.asarray(ends)
    close = arrays["close"]
    last, actual = close[ends], close[ends + 1]
    forecast = last if quantiles is None else last * np.exp(quantiles[..., median_index(levels)])
    return price_forecast_metrics(actual, forecast, last)


def persistence_abs_errors(arrays: dict[str, np.ndarray], ends) -> np.ndarray:
    close = arrays["close"]
    ends = np.asarray(ends)
    return persistence_errors(close[ends + 1], close[ends])["abs_error"]


def better_baseline(scores: dict[str, SessionScores], alpha: float, reference: str = "persistence") -> tuple[str, str]:
    """(the baseline a model must beat, why): `reference` (persistence-EWMA) unless another baseline's
    mean pinball loss is significantly lower on the same sessions (one-sided DM at `alpha`)."""
    best, notes = reference, []
    for kind, score in scores.items():
        if kind == reference:
            continue
        test = diebold_mariano(session_loss_differential(score.pinball, scores[reference].pinball))
        lower = float(np.nanmean(score.pinball)) < float(np.nanmean(scores[reference].pinball))
        notes.append(f"{kind} vs {reference}: DM {test.statistic:+.2f}, p={test.p_value:.3f}")
        if lower and test.p_value < alpha and best == reference:
            best = kind
    return best, f"{best} ({'; '.join(notes) or 'the only baseline'})"


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    verdict: str  # one line: each comparison once, its p-value, and the outcome
    candidate_pinball: float
    champion_pinball: float  # NaN when there is no champion to compare with
    baseline_pinball: float  # the persistence-EWMA baseline on the same sessions
    candidate_mae: float
    persistence_mae: float
    dm_statistic: float  # pinball, against the stronger of champion and baseline
    p_value: float
    point_p_value: float  # one-sided: the candidate's median worse than persistence's
    n_sessions: int
    champion_worse_than_baseline: bool = False  # the baseline's pinball loss beat the champion's


def gate_decision(
    candidate: SessionScores,
    champion: SessionScores | None,
    baseline: SessionScores,
    persistence_abs_error: np.ndarray,
    alpha: float,
) -> GateVerdict:
    """Promote only when the candidate's mean pinball loss is below the champion's and the baseline's
    and a one-sided Diebold–Mariano test (per-session means) rejects equal accuracy against each at
    `alpha`, and its median is not significantly worse than persistence's (the same test on MAE)."""
    pinball = {"candidate": float(np.nanmean(candidate.pinball)), "baseline": float(np.nanmean(baseline.pinball))}
    rivals = {"baseline": baseline.pinball}
    # A champion that is the baseline (the first champion) is one rival, named once.
    same = champion is not None and np.allclose(champion.pinball, baseline.pinball, equal_nan=True)
    if champion is not None:
        pinball["champion"] = float(np.nanmean(champion.pinball))
        if not same:
            rivals["champion"] = champion.pinball
    tests = {name: diebold_mariano(session_loss_differential(candidate.pinball, loss)) for name, loss in rivals.items()}
    worse = diebold_mariano(session_loss_differential(persistence_abs_error, candidate.abs_error))
    reasons = []
    if not np.isfinite(pinball["candidate"]):
        reasons.append("candidate loss is not finite")
    for name, test in tests.items():
        if not pinball["candidate"] < pinball[name]:
            reasons.append(f"pinball not below the {name}'s")
        elif not test.p_value < alpha:
            reasons.append(f"improvement over the {name} not significant")
    if worse.p_value < alpha:
        reasons.append("median significantly worse than persistence's")
    strongest = max(tests, key=lambda name: tests[name].p_value)  # the rival the candidate must beat last
    champion_lost = champion is not None and pinball["champion"] > pinball["baseline"]
    passed = not reasons
    if not passed and champion_lost:
        reasons.append("the champion's pinball loss is above the baseline's, so the baseline takes over")
    candidate_mae, persistence_mae = float(np.nanmean(candidate.abs_error)), float(np.nanmean(persistence_abs_error))
    compared = "; ".join(
        f"{name} {pinball[name]:.5f} (DM {tests[name].statistic:+.2f}, p={tests[name].p_value:.3f})" for name in tests
    ) + (" (the champion is this baseline)" if same else "")
    verdict = (
        ("promoted" if passed else "rejected: " + "; ".join(reasons))
        + f" | pinball candidate {pinball['candidate']:.5f} vs {compared}"
        + f" | median MAE {candidate_mae:.4f} vs persistence {persistence_mae:.4f} (worse: p={worse.p_value:.3f})"
        + f" | {tests[strongest].n_sessions} sessions"
    )
    return GateVerdict(
        passed=passed,
        verdict=verdict,
        candidate_pinball=pinball["candidate"],
        champion_pinball=pinball.get("champion", float("nan")),
        baseline_pinball=pinball["baseline"],
        candidate_mae=candidate_mae,
        persistence_mae=persistence_mae,
        dm_statistic=float(tests[strongest].statistic),
        p_value=float(tests[strongest].p_value),
        point_p_value=float(worse.p_value),
        n_sessions=int(tests[strongest].n_sessions),
        champion_worse_than_baseline=champion_lost,
    )
