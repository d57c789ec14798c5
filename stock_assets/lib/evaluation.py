"""Scoring any model on the same holdout sessions, and the promotion gate's decision.

The gate re-scores candidate, champion and persistence on identical target sessions, each model
through its own preprocessing (scaler numbers, sequence length, shrinkage), and promotes only a
significant improvement (docs/decisions.md, "The promotion gate").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stock_assets.lib.contracts import Preprocessing
from stock_assets.lib.datasets import apply_scaler, cut_windows, predicted_close, unscale_predictions
from stock_assets.lib.metrics import persistence_forecast, pointwise_errors, price_forecast_metrics
from stock_assets.lib.significance import diebold_mariano, session_loss_differential


def forecast_log_returns(model, preprocessing: Preprocessing, features: np.ndarray, ends) -> np.ndarray:
    """Log-return forecasts for the sessions after `ends` of an unscaled (sessions, tickers, features)
    panel, through the model's own scaler, window length and shrinkage: the one path from a stored
    model to a forecast, used by the gate, serving and the walk-forward alike."""
    from stock_assets.lib.fitting import predict

    scaled = apply_scaler(features, preprocessing.scaler)
    x = cut_windows(scaled, ends, int(preprocessing.sequence_length))
    raw = unscale_predictions(predict(model, x), preprocessing.scaler)
    return raw * float(preprocessing.shrinkage)


def predict_log_returns(
    model, preprocessing: Preprocessing, arrays: dict[str, np.ndarray], ends: np.ndarray
) -> np.ndarray:
    """`forecast_log_returns` on a training set, refusing a model built for other tickers or features."""
    tickers = [str(t) for t in arrays["tickers"]]
    columns = [str(c) for c in arrays["feature_columns"]]
    if list(preprocessing.tickers) != tickers or list(preprocessing.feature_columns) != columns:
        raise ValueError(
            f"model expects tickers {list(preprocessing.tickers)} and {len(preprocessing.feature_columns)} features; "
            f"the dataset has {tickers} and {len(columns)}"
        )
    return forecast_log_returns(model, preprocessing, arrays["features"], ends)


def _prices(log_returns: np.ndarray | None, arrays: dict[str, np.ndarray], ends: np.ndarray):
    """(actual, forecast, last) closes for targets at ends+1; None forecasts persistence."""
    close = arrays["close"]
    last, actual = close[ends], close[ends + 1]
    forecast = persistence_forecast(last) if log_returns is None else predicted_close(last, log_returns)
    return actual, forecast, last


def score_on_sessions(log_returns: np.ndarray | None, arrays: dict[str, np.ndarray], ends: np.ndarray) -> dict:
    """Price metrics of a forecast (None = persistence) for targets at ends+1."""
    return price_forecast_metrics(*_prices(log_returns, arrays, ends))


def session_losses(log_returns: np.ndarray | None, arrays: dict[str, np.ndarray], ends: np.ndarray) -> np.ndarray:
    """Absolute price errors (sessions, tickers) of a forecast (None = persistence) for targets at ends+1."""
    return pointwise_errors(*_prices(log_returns, arrays, ends))["abs_error"]


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    verdict: str  # one line: what was compared, the p-values and the outcome
    candidate_mae: float
    champion_mae: float  # NaN when there is no champion to compare with
    persistence_mae: float
    dm_statistic: float  # against the stronger of champion and persistence
    p_value: float
    n_sessions: int
    champion_worse_than_persistence: bool = False  # the naive forecast beat the champion on these sessions


def gate_decision(
    candidate: np.ndarray, champion: np.ndarray | None, persistence: np.ndarray, alpha: float
) -> GateVerdict:
    """Promote only when the candidate's loss is below the champion's and persistence's on the same
    sessions and a one-sided Diebold–Mariano test rejects equal accuracy against each at `alpha`.
    Inputs are per-forecast losses (sessions, tickers); tests run on the per-session means."""
    maes = {"candidate": float(np.nanmean(candidate)), "persistence": float(np.nanmean(persistence))}
    rivals = {"persistence": persistence}
    if champion is not None:
        maes["champion"] = float(np.nanmean(champion))
        rivals["champion"] = champion
    tests = {name: diebold_mariano(session_loss_differential(candidate, loss)) for name, loss in rivals.items()}
    reasons = []
    if not np.isfinite(maes["candidate"]):
        reasons.append("candidate loss is not finite")
    for name, test in tests.items():
        if not maes["candidate"] < maes[name]:
            reasons.append(f"MAE not below {name}'s")
        elif not test.p_value < alpha:
            reasons.append(f"improvement over {name} not significant (p={test.p_value:.3f} >= alpha {alpha:g})")
    # Report the test against the stronger rival: the one the candidate must beat last.
    strongest = max(tests, key=lambda name: tests[name].p_value)
    test = tests[strongest]
    compared = ", ".join(f"{name} {mae:.4f}" for name, mae in maes.items())
    passed = not reasons
    champion_lost = champion is not None and maes["champion"] > maes["persistence"]
    if not passed and champion_lost:
        reasons.append("the champion's MAE is above persistence's, so persistence takes over")
    outcome = "promoted" if passed else "rejected: " + "; ".join(reasons)
    verdict = (
        f"{outcome} (MAE {compared}; DM vs {strongest} {test.statistic:+.2f}, p={test.p_value:.3f}, "
        f"{test.n_sessions} sessions)"
    )
    return GateVerdict(
        passed=passed,
        verdict=verdict,
        candidate_mae=maes["candidate"],
        champion_mae=maes.get("champion", float("nan")),
        persistence_mae=maes["persistence"],
        dm_statistic=float(test.statistic),
        p_value=float(test.p_value),
        n_sessions=int(test.n_sessions),
        champion_worse_than_persistence=champion_lost,
    )
