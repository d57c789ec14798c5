"""The plausibility guard on served forecasts (pure): which tickers' forecasts are implausible on
their face, and whether the champion's recent losses take it off serving altogether.

A champion's forecast is replaced by the persistence-EWMA baseline's when its median log return is
not finite or lies beyond `max_sigmas` of the baseline's predicted standard deviation (a move no
honest forecast of a daily return makes), or when its per-session pinball loss ran above
`loss_multiple` x the baseline's in each of its last `loss_sessions` scored sessions
(docs/decisions.md, "A bad champion never serves twice"). `rule` is the `guard` settings section
(max_sigmas, loss_multiple, loss_sessions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class GuardDecision:
    """Per ticker: served by the fallback, and why ("" when the champion's forecast stands)."""

    fallback: np.ndarray  # bool, one per ticker
    reasons: tuple[str, ...]

    @property
    def fired(self) -> bool:
        return bool(self.fallback.any())

    def summary(self) -> str:
        """One line for metadata, the run log and the sensor: each distinct reason once."""
        shown = [r for r in dict.fromkeys(self.reasons) if r]
        return "; ".join(shown)


def implausible(
    log_quantiles: np.ndarray, baseline_sigma: np.ndarray, levels: Sequence[float], tickers: Sequence[str], rule
) -> list[str]:
    """Per ticker, why the champion's (L,) log-return quantiles are implausible ("" when they are not):
    a non-finite value, or a median move beyond `rule.max_sigmas` baseline standard deviations."""
    median = log_quantiles[:, list(levels).index(0.5)]
    reasons = []
    for ticker, row, mid, sigma in zip(tickers, log_quantiles, median, baseline_sigma, strict=True):
        if not np.isfinite(row).all():
            reasons.append(f"{ticker}: the champion's forecast is not finite")
        elif np.isfinite(sigma) and sigma > 0 and abs(mid) > rule.max_sigmas * sigma:
            reasons.append(
                f"{ticker}: median move {100 * np.expm1(mid):+.2f}% is {abs(mid) / sigma:.1f} predicted standard "
                f"deviations (guard.max_sigmas {rule.max_sigmas:g})"
            )
        else:
            reasons.append("")
    return reasons


def loss_streak(champion_losses: np.ndarray, baseline_losses: np.ndarray, rule) -> str | None:
    """Why the champion is off serving, or None: its per-session mean pinball loss (oldest first)
    above `rule.loss_multiple` x the baseline's in each of its last `rule.loss_sessions` sessions."""
    champion_losses, baseline_losses = np.asarray(champion_losses, float), np.asarray(baseline_losses, float)
    n = rule.loss_sessions
    if len(champion_losses) < n:
        return None
    mine, theirs = champion_losses[-n:], baseline_losses[-n:]
    if not (np.isfinite(mine).all() and np.isfinite(theirs).all()):
        return None
    ratios = mine / np.maximum(theirs, 1e-12)
    if (ratios > rule.loss_multiple).all():
        shown = ", ".join(f"{r:.1f}x" for r in ratios)
        return (
            f"the champion's pinball loss ran above {rule.loss_multiple:g}x the baseline's in each of its last {n} "
            f"scored sessions ({shown}; guard.loss_multiple, guard.loss_sessions)"
        )
    return None


def decide(
    log_quantiles: np.ndarray,
    baseline_sigma: np.ndarray,
    levels: Sequence[float],
    tickers: Sequence[str],
    rule,
    streak: str | None = None,
) -> GuardDecision:
    """The guard's decision for one session: a loss streak takes every ticker off the champion, an
    implausible forecast only its own ticker."""
    reasons = implausible(log_quantiles, baseline_sigma, levels, tickers, rule)
    if streak:
        reasons = [r or streak for r in reasons]
    fallback = np.array([bool(r) for r in reasons])
    return GuardDecision(fallback, tuple(reasons))
