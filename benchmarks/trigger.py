"""Retraining-trigger benchmark for distribution forecasts: the two triggers measured like detectors.

    python benchmarks/trigger.py [--streams 2000] [--parity-sessions 1000] [--seed N]

Triggers (stock_assets/lib/degradation.py), exactly as performance_log and retraining_sensor apply
them, recomputed over each champion's tenure:
- pinball CUSUM: `degradation_statistic` on the per-session mean over tickers of the pinball loss
  (mean over the levels 5/25/50/75/95%, log-return units) of the champion against the
  persistence-EWMA baseline, default `DetectorConfig`;
- coverage alarm: one-sided binomial test of the champion's served 90% interval misses over its
  tenure, p < COVERAGE_ALPHA with at least COVERAGE_MIN_ROWS rows;
- either: what the sensor acts on.

Streams carry the noise of the bundled sample: whole sessions of real daily log returns of AAPL,
MSFT, IBM and GOOG (2004-08-19..2013-03-01, all four tickers together) drawn in circular blocks of
20 sessions (fat tails, cross-ticker correlation, volatility clustering, regime switches), plus a
60-session warm-up before the promotion for the EWMA volatilities.

Forecasters (quantiles of the next log return, median + sigma x shape):
- baseline, persistence-EWMA: median 0, sigma the RiskMetrics EWMA (lambda 0.94) of the returns
  before the session, shape the sample's empirical quantiles of r / sigma per ticker (centred) —
  what serving computes; calibrated on the sample by construction.
- champion "LSTM-like": the same spread, median mu + beta r + 0.1 sd N(0, 1) (drift plus a noisy
  move ~10x smaller than the realised ones, with the small skill beta that exactly pays for that
  noise in expected pinball loss, solved per ticker on the sample with common random numbers):
  as good as the baseline.
- champion "noisy": the same with noise 0.5 sd and a larger beta, again at parity (a bolder model).

Measures. False alarms per 250 sessions: alarms / monitored sessions x 250 on parity streams,
each monitored from its promotion until its first alarm (a new champion would then be promoted and
monitoring restarts). Delay, "volatility x2": from the change on, every return is doubled; the
baseline's EWMA widens its intervals, the champion's intervals do not (its sigma is the EWMA of
the undoubled returns): sessions of doubled volatility seen up to the first alarm, median over
streams (">250" when fewer than half are found), with the share found within 250 sessions,
conditional on no alarm before the change (a retrain would have happened already). The change
comes at session 60 after the promotion (past every warm-up) and, separately, at the promotion.
Nothing outside the repository is used (the sample ships with the package).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize

from stock_assets.lib.degradation import (
    COVERAGE_ALPHA,
    COVERAGE_MIN_ROWS,
    DetectorConfig,
    coverage_p_values,
    degradation_statistic,
)
from stock_assets.lib.distributions import (
    DEFAULT_LEVELS,
    ewma_variance,
    pinball_per_level,
    standardized_quantiles,
)

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = ROOT / "stock_assets" / "data" / "sample_prices.csv.gz"
TICKERS = ["AAPL", "MSFT", "IBM", "GOOG"]
LEVELS = np.array(DEFAULT_LEVELS)
LOW, HIGH = 0, len(DEFAULT_LEVELS) - 1  # the 90% interval: q05, q95
LAMBDA = 0.94
WARM = 60  # sessions before the promotion: the EWMA volatilities are past their warm-up
HORIZON = 250  # sessions after the change point within which a detection counts
CHANGE_AT = 60  # change point, sessions after promotion (every trigger is past its warm-up)
PREDICTION_NOISE = 0.1  # LSTM-like: predicted moves ~10x smaller than realised ones
NOISY = 0.5  # a bolder parity champion
CRN = 8  # common random draws per sample session when solving for parity
CHUNK = 250  # streams per chunk (memory)


def load_sample() -> np.ndarray:
    """Daily log returns (sessions, tickers) of the bundled sample."""
    frame = pd.read_csv(SAMPLE, usecols=["date", "ticker", "adj_close"])
    close = frame.pivot(index="date", columns="ticker", values="adj_close")[TICKERS].dropna().to_numpy()
    return np.log(close[1:] / close[:-1])


def sigma_before(returns: np.ndarray) -> np.ndarray:
    """EWMA volatility forecast made before each session's return, along axis -2 (sessions).

    returns: (..., sessions, tickers); row t uses returns up to t - 1 (NaN at t = 0)."""
    moved = np.moveaxis(returns, -2, 0)
    var = ewma_variance(moved, lam=LAMBDA)
    sigma = np.concatenate([np.full_like(var[:1], np.nan), np.sqrt(var[:-1])], axis=0)
    return np.moveaxis(sigma, 0, -2)


def bootstrap(rng, returns: np.ndarray, n_streams: int, n_sessions: int, block: int = 20) -> np.ndarray:
    """Circular block bootstrap of whole sessions (all tickers together): (streams, sessions, tickers)."""
    total = returns.shape[0]
    n_blocks = -(-n_sessions // block)
    starts = rng.integers(0, total, size=(n_streams, n_blocks))
    index = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_streams, -1)[:, :n_sessions] % total
    return returns[index]


@dataclass(frozen=True)
class Champion:
    """Median m = mu + beta * r + noise * N(0, 1) per ticker; spread of the baseline's shape."""

    mu: np.ndarray
    beta: np.ndarray
    noise: np.ndarray


def _pinball(r: np.ndarray, median: np.ndarray, sigma: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Mean pinball loss over the levels, elementwise over (..., tickers)."""
    q = median[..., None] + sigma[..., None] * shape
    return pinball_per_level(r, q, LEVELS).mean(axis=-1)


def calibrate(returns: np.ndarray, sigma: np.ndarray, shape: np.ndarray, rng) -> dict[str, Champion]:
    """Per-ticker beta for which the champion's expected pinball loss equals the baseline's on the
    sample (exact in the sample, common random numbers for the noise)."""
    ok = np.isfinite(sigma).all(axis=1)
    r, s = returns[ok], sigma[ok]
    eps = rng.standard_normal((CRN, *r.shape))
    base = _pinball(r, np.zeros_like(r), s, shape).mean(axis=0)
    sd, mu = r.std(axis=0), r.mean(axis=0)
    out = {}
    for name, noise in (("LSTM-like", PREDICTION_NOISE), ("noisy", NOISY)):
        beta = []
        for i in range(r.shape[1]):

            def excess(b, i=i, noise=noise):
                m = mu[i] + b * r[:, i] + noise * sd[i] * eps[:, :, i]
                return float(_pinball(r[:, i], m, s[:, i], shape[i]).mean() / base[i] - 1.0)

            beta.append(optimize.brentq(excess, 0.0, 0.95, xtol=1e-10))
        out[name] = Champion(mu, np.array(beta), noise * sd)
    return out


@dataclass
class Streams:
    """Per-session series of one scenario, (streams, sessions) after the promotion."""

    champion: np.ndarray  # mean over tickers of the champion's pinball loss
    baseline: np.ndarray  # the same for the persistence-EWMA baseline
    misses: np.ndarray  # misses of the champion's 90% interval (count over tickers)
    rows: np.ndarray  # scored rows (tickers)
    baseline_misses: np.ndarray

    def ratio(self, start: int = 0) -> float:
        return float(self.champion[:, start:].sum() / self.baseline[:, start:].sum())

    def coverage(self, start: int = 0, baseline: bool = False) -> float:
        misses = self.baseline_misses if baseline else self.misses
        return 1.0 - float(misses[:, start:].sum() / self.rows[:, start:].sum())


def make_streams(rng, returns, n_streams, n_sessions, champion: Champion, shape, change: int | None = None) -> Streams:
    """Bootstrapped streams; from `change` on (sessions after the promotion) every return is doubled
    and only the baseline's volatility sees it."""
    parts = []
    for start in range(0, n_streams, CHUNK):
        r = bootstrap(rng, returns, min(CHUNK, n_streams - start), WARM + n_sessions)
        sigma_champion = sigma_before(r)
        original = r[:, WARM:]
        if change is not None:
            r = r.copy()
            r[:, WARM + change :] *= 2.0
        sigma_baseline = sigma_before(r) if change is not None else sigma_champion
        r, sc, sb = r[:, WARM:], sigma_champion[:, WARM:], sigma_baseline[:, WARM:]
        # The champion does not adapt: its median's "skill" follows the undoubled move.
        median = champion.mu + champion.beta * original + champion.noise * rng.standard_normal(r.shape)
        lo, hi = median + sc * shape[:, LOW], median + sc * shape[:, HIGH]
        parts.append(
            Streams(
                champion=_pinball(r, median, sc, shape).mean(axis=-1),
                baseline=_pinball(r, np.zeros_like(r), sb, shape).mean(axis=-1),
                misses=((r < lo) | (r > hi)).sum(axis=-1).astype(float),
                rows=np.full(r.shape[:2], float(r.shape[-1])),
                baseline_misses=((r < sb * shape[:, LOW]) | (r > sb * shape[:, HIGH])).sum(axis=-1).astype(float),
            )
        )
    return Streams(*(np.concatenate([getattr(p, f) for p in parts]) for f in Streams.__dataclass_fields__))


def cusum_alarms(s: Streams, config: DetectorConfig = DetectorConfig()) -> np.ndarray:
    return degradation_statistic(s.champion, s.baseline, config) > config.threshold


def coverage_alarms(s: Streams, alpha: float = COVERAGE_ALPHA, min_rows: int = COVERAGE_MIN_ROWS) -> np.ndarray:
    return (coverage_p_values(s.misses, s.rows) < alpha) & (np.cumsum(s.rows, axis=1) >= min_rows)


def first_true(alarms: np.ndarray, start: int = 0) -> np.ndarray:
    """Index of the first alarm at or after `start` per stream, or -1."""
    window = alarms[:, start:]
    hit = window.any(axis=1)
    return np.where(hit, window.argmax(axis=1) + start, -1)


def false_alarms_per_250(alarms: np.ndarray) -> float:
    """Alarm rate of a renewal process from first alarms: alarms / monitored sessions x 250."""
    first = first_true(alarms)
    exposure = np.where(first >= 0, first + 1, alarms.shape[1])
    return 250.0 * float((first >= 0).sum()) / float(exposure.sum())


def delays(alarms: np.ndarray, change: int) -> tuple[float, float]:
    """Median delay (changed sessions seen up to the alarm, inf if undetected) and the share found
    within HORIZON sessions, over streams without an alarm before the change."""
    keep = ~alarms[:, :change].any(axis=1)
    if not keep.any():
        return float("nan"), float("nan")
    first = first_true(alarms[keep, : change + HORIZON], change)
    delay = np.where(first >= 0, first - change + 1, np.inf).astype(float)
    return float(np.median(delay)), float(np.mean(np.isfinite(delay)))


def _cell(median: float, share: float) -> list[str]:
    if np.isnan(share):
        return ["n/a", "n/a"]
    return [f"{median:.0f}" if np.isfinite(median) else f">{HORIZON}", f"{share:.0%}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2000, help="streams per scenario")
    parser.add_argument("--parity-sessions", type=int, default=1000, help="length of each parity stream")
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument(
        "--drift", type=float, default=DetectorConfig.drift, help="CUSUM drift (monitoring.detector_drift)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DetectorConfig.threshold,
        help="CUSUM threshold (monitoring.detector_threshold)",
    )
    args = parser.parse_args()
    config = DetectorConfig(drift=args.drift, threshold=args.threshold)
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    returns = load_sample()
    sigma = sigma_before(returns)
    shape = standardized_quantiles(returns, sigma, LEVELS)  # (tickers, levels), centred
    champions = calibrate(returns, sigma, shape, rng)
    print(f"sample: {returns.shape[0]} sessions x {returns.shape[1]} tickers {TICKERS}")
    for name, c in champions.items():
        print(
            f"  {name:9s} beta {c.beta.round(4).tolist()}, noise/sd {(c.noise / returns.std(axis=0)).round(3).tolist()}"
        )

    parity = {
        name: make_streams(rng, returns, args.streams, args.parity_sessions, c, shape) for name, c in champions.items()
    }
    n = CHANGE_AT + HORIZON
    jump = {
        (name, change): make_streams(rng, returns, args.streams, n, c, shape, change)
        for name, c in champions.items()
        for change in (CHANGE_AT, 0)
    }
    for name, s in parity.items():
        print(
            f"  parity {name}: pinball ratio {s.ratio():.4f}, 90% coverage champion {s.coverage():.4f}, "
            f"baseline {s.coverage(baseline=True):.4f}"
        )
    for (name, change), s in jump.items():
        print(
            f"  volatility x2 at session {change}, {name}: after it pinball ratio {s.ratio(change):.4f}, 90% coverage "
            f"champion {s.coverage(change):.4f}, baseline {s.coverage(change, baseline=True):.4f}"
        )

    rules = {
        f"pinball CUSUM (drift {config.drift:g}, threshold {config.threshold:g})": lambda s: cusum_alarms(s, config),
        f"coverage alarm (p < {COVERAGE_ALPHA:g}, >= {COVERAGE_MIN_ROWS} rows)": coverage_alarms,
        "either (the sensor)": lambda s: cusum_alarms(s, config) | coverage_alarms(s),
    }
    header = [
        "trigger",
        "champion",
        "FA/250 at parity",
        f"vol x2 at {CHANGE_AT}: delay",
        "found",
        "at promotion: delay",
        "found",
    ]
    rows = []
    for rule, alarms_of in rules.items():
        for name in champions:
            rows.append(
                [
                    rule,
                    name,
                    f"{false_alarms_per_250(alarms_of(parity[name])):.2f}",
                    *_cell(*delays(alarms_of(jump[(name, CHANGE_AT)]), CHANGE_AT)),
                    *_cell(*delays(alarms_of(jump[(name, 0)]), 0)),
                ]
            )
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(
        f"\n{args.streams} streams per scenario, parity streams of {args.parity_sessions} sessions, detection window "
        f"{HORIZON} sessions, {time.perf_counter() - started:.0f} s (targets: FA/250 <= 1, delay <= 10)"
    )
    for row in [header, *rows]:
        cells = [
            str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))


if __name__ == "__main__":
    main()
