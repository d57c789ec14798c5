"""Has the champion's forecast distribution become significantly worse than the baseline's since
its promotion, or do its served intervals miss too often?

Two retraining triggers, both recomputed from every session since the promotion, so the caller
keeps no detector state:

1. `detect_degradation`: a one-sided CUSUM on the per-session loss differential
   d_t = champion_loss_t - baseline_loss_t, where the losses are the mean over tickers of the
   pinball loss (mean over the quantile levels, log-return units) of the champion's served
   distribution and of the persistence-EWMA baseline's on the same rows. (Before forecasts were
   distributions, the losses were absolute price errors against persistence; everything below
   is loss-agnostic and was calibrated on those, and benchmarks/trigger.py re-measures it on
   pinball losses.)
2. `detect_coverage_shortfall`: the coverage alarm. The misses of the champion's served 90%
   interval over its tenure, against a one-sided exact binomial test of "miss rate <= 10%": it
   fires when p < COVERAGE_ALPHA (0.01) with at least COVERAGE_MIN_ROWS (40, e.g. 10 sessions x 4
   tickers) scored rows. This catches what the pinball differential sees only slowly: intervals
   that stay narrow while volatility rises (the baseline widens with its EWMA, so the pinball
   differential grows too, but through the noisy tails). Constants, not settings: the level is
   far out in the tail because the test is repeated every session over a growing tenure and
   misses cluster (same-day misses across tickers, volatility clusters), so the nominal 1% is
   not the false-alarm rate; benchmarks/trigger.py measures that rate on real returns.

The CUSUM, in detail:

Normalisation. Daily loss levels move several-fold with market volatility and with the price
level, and how noisy d is depends on the champion: a model predicting moves ~10x smaller than the
realised ones (what this project's LSTMs do) has a differential bounded by its own small predicted
moves, a bolder model a several times noisier one. So each session is standardised by a robust
running noise estimate of d built from PAST sessions only (EWMA of the absolute deviation around an
EWMA mean, halflife `noise_halflife`, x sqrt(pi/2)), z_t = clip(d_t / noise, +-clip), and
S_t = max(0, S_{t-1} + z_t - drift) fires above `threshold`. This is scale-free (losses x any
constant give the same path) and follows volatility regimes within ~10 sessions. Dividing d by the
persistence loss level first was measured and rejected: it weights calm sessions up, so a champion
at parity in MAE is not at parity in the normalised mean (calibration run with drift 0.5,
threshold 5, noise halflife 20: parity false alarms 0.27 -> 0.40 per 250 sessions, noisy champion
0.76 -> 1.03). The level (mean baseline loss since promotion) only sets `noise_floor` and
`margin`: the noise is never taken below 5% of it, so a near-copy of the baseline is not treated as
infinitely precise (it fires only when consistently more than drift x 5% = 1.25% worse).
Identical losses give d = 0, z = 0: never fire (a baseline champion never fires the CUSUM).
Winsorising the estimates' updates at clip x noise
keeps one wild session from blinding the test.

Defaults were calibrated on absolute price errors against persistence (4,000 block-bootstrapped
streams of the bundled sample: FA 0.20 per 250 sessions at parity for an LSTM-like champion, 0.85
for a 5x noisier one; 10% worse from session 60: median delay 15 sessions). Why drift 0.25 and
threshold 9 rather than the textbook 0.5 / 5: with drift 0.5 the fast detections of noisier or
biased predictions come only from the noise estimate lagging a variance jump, and a parity
champion turning 5x noisier fires 2.8 times per 250 sessions; with drift 0.25 (optimal for a
shift of half the noise) an alarm needs a sustained shift of the mean.

On pinball losses (benchmarks/trigger.py today: 2,000 streams per scenario; FA = false alarms per
250 sessions at parity, delay = median sessions after the volatility doubles while the champion's
intervals do not widen, change at session 60 / at the promotion):
- CUSUM: FA 0.33 (LSTM-like champion), 1.13 (5x noisier at parity); delay 13 / 28 (LSTM-like),
  122 / 145 for the noisy one (its pinball differential is too noisy to show the shift soon);
- coverage alarm: FA 0.31 / 0.45; delay 15 / 10 and 14 / 10;
- either (what the sensor acts on): FA 0.76 / 1.76; delay 10 / 10 and 15 / 10.
Limit: the coverage test is over the tenure, so a shortfall that starts late in a long tenure is
diluted (about 15 sessions at session 60); tests over a recent window or a Bernoulli CUSUM were
faster (4-9 sessions) but fired 1.5-3.4 times per 250 sessions at parity because misses cluster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

_SD_PER_MAD = math.sqrt(math.pi / 2)  # mean absolute deviation -> standard deviation for normal noise


@dataclass(frozen=True)
class DetectorConfig:
    """Tuning of the one-sided CUSUM; the defaults are calibrated by benchmarks/trigger.py."""

    drift: float = 0.35  # k: allowance per session, in noise units (benchmarks/trigger.py grid)
    threshold: float = 9.0  # h: alarm when the CUSUM exceeds this
    min_sessions: int = 10  # warm-up: sessions that only feed the noise estimate
    noise_halflife: float = 10.0  # sessions; EWMA of the differential's mean and absolute deviation
    noise_floor: float = 0.05  # lowest noise, as a fraction of the mean baseline loss
    clip: float = 4.0  # one session moves the CUSUM by at most clip - drift
    margin: float = 0.0  # tolerated excess loss, as a fraction of the baseline level

    def __post_init__(self):
        for name in ("threshold", "noise_halflife", "noise_floor", "clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DetectorConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.drift < 0 or self.margin < 0 or self.min_sessions < 2:
            raise ValueError("DetectorConfig needs drift >= 0, margin >= 0 and min_sessions >= 2")


@dataclass(frozen=True)
class DetectorResult:
    """The detector's state after the last session; `fired` means it crossed at some session."""

    statistic: float  # CUSUM after the last session
    threshold: float
    fired: bool
    n_sessions: int  # sessions with finite losses
    loss_ratio: float  # champion / baseline mean (pinball) loss since promotion
    first_alarm: int | None  # index (into the inputs) of the first session above the threshold
    reason: str
    statistic_series: np.ndarray = field(repr=False)  # one value per input session


def _ewma_step(num: np.ndarray, den: np.ndarray, value: np.ndarray, ok: np.ndarray, decay: float) -> None:
    """In-place bias-corrected EWMA update (num / den is the mean); rows where not ok are unchanged."""
    num[ok] = decay * num[ok] + value[ok]
    den[ok] = decay * den[ok] + 1.0


def degradation_statistic(
    champion_loss: np.ndarray, baseline_loss: np.ndarray, config: DetectorConfig = DetectorConfig()
) -> np.ndarray:
    """CUSUM path for one or many streams: inputs (..., n_sessions), oldest first; same shape out.

    Causal: the value at session t depends only on sessions <= t, so a prefix of the history gives
    a prefix of the path. A session with a non-finite loss leaves every estimate unchanged.
    """
    champion = np.asarray(champion_loss, dtype=np.float64)
    baseline = np.asarray(baseline_loss, dtype=np.float64)
    if champion.shape != baseline.shape or champion.ndim < 1:
        raise ValueError(
            f"loss arrays must have the same shape (..., n_sessions), got {champion.shape}, {baseline.shape}"
        )
    if champion.size == 0:  # no session yet (e.g. right after a retraining answered the last alarm)
        return np.zeros(champion.shape)
    batch = champion.shape[:-1]
    champion = champion.reshape(-1, champion.shape[-1])
    baseline = baseline.reshape(-1, baseline.shape[-1])
    streams, n = champion.shape
    decay = 0.5 ** (1.0 / config.noise_halflife)
    level_sum = np.zeros(streams)
    mean_num, mean_den = np.zeros(streams), np.zeros(streams)
    dev_num, dev_den = np.zeros(streams), np.zeros(streams)
    seen = np.zeros(streams, dtype=np.int64)
    cusum = np.zeros(streams)
    out = np.empty((streams, n))
    for t in range(n):
        c, p = champion[:, t], baseline[:, t]
        ok = np.isfinite(c) & np.isfinite(p)
        d = np.where(ok, c - p, 0.0)
        level = level_sum / np.maximum(seen, 1)
        mean = np.divide(mean_num, mean_den, out=np.zeros(streams), where=mean_den > 0)
        mad = np.divide(dev_num, dev_den, out=np.zeros(streams), where=dev_den > 0)
        noise = np.maximum(_SD_PER_MAD * mad, config.noise_floor * level)
        excess = d - config.margin * level
        # zero noise (no floor without a baseline loss yet): any excess counts in full
        z = np.divide(excess, noise, out=np.sign(excess) * config.clip, where=noise > 0)
        z = np.clip(z, -config.clip, config.clip)
        active = ok & (seen >= config.min_sessions)
        cusum[active] = np.maximum(0.0, cusum[active] + z[active] - config.drift)
        out[:, t] = cusum
        # this session's updates, winsorised at clip x noise so that one wild session cannot blind the test
        has_mean = ok & (mean_den > 0)
        d_w = np.where(has_mean & (noise > 0), np.clip(d, mean - config.clip * noise, mean + config.clip * noise), d)
        _ewma_step(dev_num, dev_den, np.abs(d_w - mean), has_mean, decay)
        _ewma_step(mean_num, mean_den, d_w, ok, decay)
        level_sum[ok] += p[ok]
        seen += ok
    return out.reshape(*batch, n)


def _loss_ratio(champion: np.ndarray, baseline: np.ndarray) -> float:
    ok = np.isfinite(champion) & np.isfinite(baseline)
    if not ok.any():
        return float("nan")
    num, den = float(champion[ok].mean()), float(baseline[ok].mean())
    if den > 0:
        return num / den
    return 1.0 if num == den else float("inf")


def detect_degradation(
    champion_loss: np.ndarray, baseline_loss: np.ndarray, config: DetectorConfig = DetectorConfig()
) -> DetectorResult:
    """The retraining trigger on every session since the champion's promotion, oldest first.

    Inputs are 1-d per-session mean losses (the mean over tickers of the pinball loss) of the
    champion and of the persistence-EWMA baseline on the same sessions; one ticker works the same way.
    """
    champion = np.asarray(champion_loss, dtype=np.float64)
    baseline = np.asarray(baseline_loss, dtype=np.float64)
    if champion.ndim != 1 or champion.shape != baseline.shape:
        raise ValueError(f"expected two 1-d loss arrays of equal length, got {champion.shape}, {baseline.shape}")
    series = degradation_statistic(champion, baseline, config)
    n_sessions = int((np.isfinite(champion) & np.isfinite(baseline)).sum())
    above = np.flatnonzero(series > config.threshold)
    first = int(above[0]) if above.size else None
    statistic = float(series[-1]) if series.size else 0.0
    ratio = _loss_ratio(champion, baseline)
    if n_sessions < config.min_sessions and first is None:
        reason = (
            f"CUSUM warming up ({n_sessions} of {config.min_sessions} sessions), threshold {config.threshold:g}: "
            f"champion pinball {ratio:.2f} x baseline"
        )
    elif first is None:
        reason = (
            f"CUSUM {statistic:.2f} <= {config.threshold:g} after {n_sessions} sessions: "
            f"champion pinball {ratio:.2f} x baseline"
        )
    else:
        seen_then = int((np.isfinite(champion[: first + 1]) & np.isfinite(baseline[: first + 1])).sum())
        reason = (
            f"CUSUM {series[first]:.2f} > {config.threshold:g} after {seen_then} sessions: "
            f"champion pinball {_loss_ratio(champion[: first + 1], baseline[: first + 1]):.2f} x baseline"
        )
        if first < series.size - 1:
            reason += f" (now CUSUM {statistic:.2f} after {n_sessions} sessions, pinball {ratio:.2f} x)"
    return DetectorResult(statistic, config.threshold, first is not None, n_sessions, ratio, first, reason, series)


# --- the coverage alarm --------------------------------------------------------------------------

COVERAGE_NOMINAL = 0.90  # the served interval the alarm watches (its misses: covered_90 == 0)
COVERAGE_ALPHA = 0.01  # one-sided binomial level of "the miss rate exceeds 1 - nominal"
COVERAGE_MIN_ROWS = 40  # fewer scored rows since the promotion: never an alarm


@dataclass(frozen=True)
class CoverageResult:
    """The coverage alarm's verdict over a champion's tenure."""

    fired: bool
    misses: int
    rows: int
    coverage: float  # observed share of rows inside the interval (NaN without rows)
    p_value: float  # one-sided exact binomial P(X >= misses | rows, 1 - nominal); 1.0 without rows
    reason: str


def coverage_p_values(misses: np.ndarray, rows: np.ndarray, nominal: float = COVERAGE_NOMINAL) -> np.ndarray:
    """Cumulative one-sided binomial p-values along the last axis (sessions, oldest first).

    `misses` and `rows` are per-session counts (..., n_sessions); the value at session t tests the
    misses of all sessions <= t against a miss rate of 1 - nominal. Sessions without rows keep the
    previous value (1.0 before the first row)."""
    from scipy import stats

    x = np.cumsum(np.nan_to_num(np.asarray(misses, dtype=np.float64)), axis=-1)
    n = np.cumsum(np.nan_to_num(np.asarray(rows, dtype=np.float64)), axis=-1)
    p = stats.binom.sf(np.rint(x) - 1, np.rint(n).astype(np.int64), 1.0 - nominal)
    return np.where(n > 0, p, 1.0)


def detect_coverage_shortfall(
    misses: np.ndarray,
    rows: np.ndarray,
    nominal: float = COVERAGE_NOMINAL,
    alpha: float = COVERAGE_ALPHA,
    min_rows: int = COVERAGE_MIN_ROWS,
) -> CoverageResult:
    """Do the champion's served intervals miss significantly more often than 1 - nominal since its
    promotion? `misses`, `rows`: per-session counts of misses and scored rows (1-d, oldest first).

    Judged on the whole tenure at its last session (a shortfall that passed and was compensated
    no longer counts). The test treats rows as independent; they are not (a market-wide move makes
    every ticker miss), which is why the level is small (module docstring)."""
    x = int(round(float(np.nansum(misses))))
    n = int(round(float(np.nansum(rows))))
    target = 1.0 - nominal
    if n == 0:
        return CoverageResult(False, 0, 0, float("nan"), 1.0, f"{nominal:.0%} interval: nothing scored yet")
    p = float(coverage_p_values(np.array([x]), np.array([n]), nominal)[0])
    coverage = 1.0 - x / n
    fired = n >= min_rows and p < alpha
    measured = (
        f"{nominal:.0%} interval coverage {coverage:.3f} over {n} rows since promotion "
        f"({x} misses, {target:.0%} expected): one-sided binomial p {p:.2g}"
    )
    if n < min_rows:
        reason = f"{measured}, too few rows for the coverage alarm ({n} < {min_rows})"
    elif fired:
        reason = f"{measured} < {alpha:g}"
    else:
        reason = f"{measured} >= {alpha:g}"
    return CoverageResult(fired, x, n, coverage, p, reason)
