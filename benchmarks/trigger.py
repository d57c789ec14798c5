"""Retraining-trigger benchmark: the degradation detector measured like a detector (no timing).

    python benchmarks/trigger.py [--streams 4000] [--seed N] [--grid]

Streams carry the noise of the bundled sample: whole sessions of real daily returns of AAPL, MSFT,
IBM and GOOG (2004-08-19..2013-03-01, all four tickers together) are drawn in circular blocks of 20
sessions (fat tails, cross-ticker correlation, volatility clustering, regime switches), and each
stream compounds them from the real prices of a random session. Losses are what the project
scores: per session, the mean over tickers of |predicted - actual close| in price units.

Champions (predicted move m per ticker, prediction = last_close x (1 + m)):
- LSTM-like: m = mu + beta x r + 0.1 sd x N(0, 1): the ticker's drift plus noise 10x smaller than
  the realised moves (what the real LSTMs here look like), and the tiny skill beta that exactly pays
  for that noise, so the expected loss equals persistence's. Calibrated per ticker, exactly in the
  noise (folded-normal mean) over the sample's returns, so parity holds whatever the weights.
- noisy: the same with noise 0.5 sd and a larger beta, again at exact parity (a bolder model).

"x% worse" from the change point on, each calibrated per ticker to an expected loss of exactly
(1 + x) x persistence (the printed "measured MAE ratio" checks it on the streams):
- errors x (1 + x): the champion's absolute errors scaled. The purest mean shift: same sessions
  hard, same noise pattern; not a forecaster, so the old rule's direction is unchanged.
- noisier predictions: the LSTM-like noise raised (0.1 -> 0.27 / 0.37 sd): a stale model.
- biased predictions: a constant upward bias added (0.22-0.36 sd): a model stuck on a regime.
The three are equally "x% worse" in expected MAE, but not equally detectable: the last two also
make the differential several times noisier, so their mean shift is small against the noise.

Measures. False alarms per 250 sessions: alarms / monitored sessions x 250 on parity streams of
1,000 sessions, each monitored from its promotion until its first alarm (after which a new champion
would be promoted and monitoring restarts). Delay: sessions of degraded data seen up to the first
alarm, median over streams (">250" when fewer than half are found), with the share found within
250 sessions. The new rule's delay is conditional on no alarm before the change (a retrain would
have happened); the old rule looks at its last 10 sessions only, so its delay is simply its first
alarm at or after the change. "+10% at promotion": worse from the first session on (delay counts
the warm-up). "5x noisier, still parity": the LSTM-like champion switches to the noisy one at
session 60 (no change in expected loss); its FA column counts alarms per 250 sessions after that.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize, stats

from stock_assets.lib.degradation import DetectorConfig, degradation_statistic

ROOT = Path(__file__).resolve().parents[1]

SAMPLE = ROOT / "stock_assets" / "data" / "sample_prices.csv.gz"
TICKERS = ["AAPL", "MSFT", "IBM", "GOOG"]
HORIZON = 250  # sessions after the change point within which a detection counts
CHANGE_AT = 60  # change point, sessions after promotion (the detector is past its warm-up)
PREDICTION_NOISE = 0.1  # LSTM-like: predicted moves ~10x smaller than realised ones
NOISE_JUMP = 0.5  # a parity champion whose predictions turn 5x noisier (with the skill to pay for it)


def load_sample() -> tuple[np.ndarray, np.ndarray]:
    """Simple daily returns (sessions, tickers) and the adjusted close before each return."""
    frame = pd.read_csv(SAMPLE, usecols=["date", "ticker", "adj_close"])
    close = frame.pivot(index="date", columns="ticker", values="adj_close")[TICKERS].dropna()
    prices = close.to_numpy()
    return prices[1:] / prices[:-1] - 1.0, prices[:-1]


# ---------------------------------------------------------------------------------------------
# Synthetic streams with the sample's noise
# ---------------------------------------------------------------------------------------------


def bootstrap(rng, returns, prices, n_streams: int, n_sessions: int, block: int = 20):
    """Circular block bootstrap of whole sessions (all tickers together): fat tails, cross-ticker
    correlation and volatility clustering within a block. Each stream starts at the real prices of
    a random session and compounds the drawn returns. Returns (moves, last_close), (streams, sessions, tickers).
    """
    total = returns.shape[0]
    n_blocks = -(-n_sessions // block)
    starts = rng.integers(0, total, size=(n_streams, n_blocks))
    index = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_streams, -1)[:, :n_sessions] % total
    moves = returns[index]
    start = prices[rng.integers(0, total, size=n_streams)]
    growth = np.cumprod(1.0 + moves, axis=1)
    last = start[:, None, :] * np.concatenate([np.ones_like(growth[:, :1]), growth[:, :-1]], axis=1)
    return moves, last


def expected_abs(a: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """E|a - scale * N(0, 1)|, elementwise (the folded-normal mean)."""
    scale = np.maximum(scale, 1e-300)
    u = a / scale
    return a * (2.0 * stats.norm.cdf(u) - 1.0) + 2.0 * scale * stats.norm.pdf(u)


@dataclass(frozen=True)
class Forecaster:
    """Predicted move m = mu + beta * r + bias + noise * N(0, 1), per ticker (arrays of 4)."""

    mu: np.ndarray
    beta: np.ndarray
    noise: np.ndarray
    bias: np.ndarray

    def loss_ratio(self, returns: np.ndarray) -> np.ndarray:
        """Expected |m - r| / E|r| per ticker over the sample's sessions (exact in the noise)."""
        a = (1.0 - self.beta) * returns - self.mu - self.bias
        return expected_abs(a, self.noise).mean(axis=0) / np.abs(returns).mean(axis=0)

    def predict(self, rng, moves: np.ndarray) -> np.ndarray:
        return self.mu + self.beta * moves + self.bias + self.noise * rng.standard_normal(moves.shape)


def _solve(fun, lo: float, hi: float) -> float:
    return float(optimize.brentq(fun, lo, hi, xtol=1e-12))


def calibrate(returns: np.ndarray) -> dict[str, Forecaster]:
    """Per-ticker forecasters whose expected absolute error is exactly 1.00 / 1.05 / 1.10 x persistence.

    parity: drift mu plus noise of 0.1 x the move's sd (what the project's LSTMs look like), with
    just enough skill beta to pay for that noise. Worse by x, from the change point on:
    - noisier: the same forecaster with its prediction noise raised until the loss is (1 + x) x;
    - biased: the parity forecaster plus a constant upward bias until the loss is (1 + x) x;
    - (loss x (1 + x) needs no forecaster: the champion's absolute errors are scaled.)
    """
    sd, mu = returns.std(axis=0), returns.mean(axis=0)
    zeros = np.zeros_like(sd)
    noise = PREDICTION_NOISE * sd
    beta = np.array(
        [
            _solve(lambda b, i=i: Forecaster(mu, zeros + b, noise, zeros).loss_ratio(returns)[i] - 1.0, -0.5, 0.5)
            for i in range(len(sd))
        ]
    )
    parity = Forecaster(mu, beta, noise, zeros)
    jump_noise = NOISE_JUMP * sd
    jump_beta = np.array(
        [
            _solve(lambda b, i=i: Forecaster(mu, zeros + b, jump_noise, zeros).loss_ratio(returns)[i] - 1.0, -0.9, 0.9)
            for i in range(len(sd))
        ]
    )
    out = {"parity": parity, "noisy": Forecaster(mu, jump_beta, jump_noise, zeros)}
    for worse in (0.05, 0.10):
        noisier = [
            _solve(
                lambda u, i=i, w=worse: Forecaster(mu, beta, zeros + u, zeros).loss_ratio(returns)[i] - 1 - w,
                noise[i],
                10 * sd[i],
            )
            for i in range(len(sd))
        ]
        biased = [
            _solve(
                lambda b, i=i, w=worse: Forecaster(mu, beta, noise, zeros + b).loss_ratio(returns)[i] - 1 - w,
                0.0,
                10 * sd[i],
            )
            for i in range(len(sd))
        ]
        out[f"noisier{worse:.2f}"] = replace(parity, noise=np.array(noisier))
        out[f"biased{worse:.2f}"] = replace(parity, bias=np.array(biased))
    return out


@dataclass
class Streams:
    """Per-session losses of one scenario: (streams, sessions)."""

    champion: np.ndarray  # mean over tickers of |predicted - actual| (price units)
    persistence: np.ndarray
    mape: np.ndarray  # sum over tickers of |predicted - actual| / actual (for the old rule)
    hits: np.ndarray  # sum over tickers of direction hits
    n_tickers: int

    def mae_ratio(self, start: int) -> float:
        return float(self.champion[:, start:].sum() / self.persistence[:, start:].sum())


def make_streams(rng, moves, last, before: Forecaster, after: Forecaster | None, change: int, scale: float = 1.0):
    """Champion = `before` until `change`, then `after` (or `before` with its errors x `scale`)."""
    m = before.predict(rng, moves)
    if after is not None:
        m[:, change:] = after.predict(rng, moves[:, change:])
    error = np.abs(m - moves)
    error[:, change:] *= scale
    actual = 1.0 + moves
    return Streams(
        champion=(last * error).mean(axis=2),
        persistence=(last * np.abs(moves)).mean(axis=2),
        mape=(error / actual).sum(axis=2),
        hits=(np.sign(m) == np.sign(moves)).sum(axis=2).astype(float),
        n_tickers=moves.shape[2],
    )


# ---------------------------------------------------------------------------------------------
# The two rules: alarms per session, (streams, sessions) booleans
# ---------------------------------------------------------------------------------------------


def old_rule_alarms(
    s: Streams, window: int = 10, min_samples: int = 20, mape_max: float = 0.07, direction_min: float = 0.53
) -> np.ndarray:
    """The absolute rule: rolling window of the last `window` sessions (all tickers), fire when
    n >= min_samples and (MAPE > mape_max or directional accuracy < direction_min)."""

    def rolling(a):
        c = np.cumsum(a, axis=1)
        c[:, window:] = c[:, window:] - c[:, :-window].copy()
        return c

    sessions = np.minimum(np.arange(1, s.mape.shape[1] + 1), window)
    n = sessions * s.n_tickers
    mape, accuracy = rolling(s.mape) / n, rolling(s.hits) / n
    return (n >= min_samples) & ((mape > mape_max) | (accuracy < direction_min))


def new_rule_alarms(s: Streams, config: DetectorConfig) -> np.ndarray:
    return degradation_statistic(s.champion, s.persistence, config) > config.threshold


def first_true(alarms: np.ndarray, start: int = 0) -> np.ndarray:
    """Index of the first alarm at or after `start` per stream, or -1."""
    window = alarms[:, start:]
    hit = window.any(axis=1)
    return np.where(hit, window.argmax(axis=1) + start, -1)


def false_alarms_per_250(alarms: np.ndarray) -> float:
    """Alarm rate of a renewal process from first alarms: alarms / monitored sessions x 250
    (after an alarm the champion is replaced, so monitoring restarts from scratch)."""
    first = first_true(alarms)
    exposure = np.where(first >= 0, first + 1, alarms.shape[1])
    return 250.0 * float((first >= 0).sum()) / float(exposure.sum())


def jump_alarms_per_250(alarms: np.ndarray, conditional: bool = True) -> float:
    """False alarms per 250 sessions after the parity noise jump (`conditional`: in streams quiet before it)."""
    keep = ~alarms[:, :CHANGE_AT].any(axis=1) if conditional else np.ones(alarms.shape[0], dtype=bool)
    return false_alarms_per_250(alarms[keep, CHANGE_AT:])


def delays(alarms: np.ndarray, change: int, conditional: bool) -> tuple[float, float]:
    """Median delay (degraded sessions seen up to the alarm, inf if undetected) and the share
    detected within HORIZON sessions. `conditional`: streams that fired before the change are
    left out (a retrain happened already), the usual conditional expected delay."""
    keep = ~alarms[:, :change].any(axis=1) if conditional else np.ones(alarms.shape[0], dtype=bool)
    if not keep.any():
        return float("nan"), float("nan")
    first = first_true(alarms[keep, : change + HORIZON], change)
    delay = np.where(first >= 0, first - change + 1, np.inf).astype(float)
    return float(np.median(delay)), float(np.mean(np.isfinite(delay)))


# ---------------------------------------------------------------------------------------------


def _cell(median: float, share: float) -> list[str]:
    if np.isnan(share):
        return ["n/a", "n/a"]
    return [f"{median:.0f}" if np.isfinite(median) else f">{HORIZON}", f"{share:.0%}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4000, help="streams per scenario")
    parser.add_argument("--parity-sessions", type=int, default=1000, help="length of each parity stream")
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--grid", action="store_true", help="also print the calibration grid over (drift, threshold)")
    args = parser.parse_args()
    started = time.perf_counter()
    returns, prices = load_sample()
    forecasters = calibrate(returns)
    parity, noisy = forecasters["parity"], forecasters["noisy"]
    rng = np.random.default_rng(args.seed)
    print(f"sample: {returns.shape[0]} sessions x {returns.shape[1]} tickers {TICKERS}")
    for name, f in forecasters.items():
        print(
            f"  {name:12s} expected loss ratio {f.loss_ratio(returns).round(4).tolist()}, beta "
            f"{f.beta.round(4).tolist()}, noise/sd {(f.noise / returns.std(axis=0)).round(3).tolist()}, "
            f"bias/sd {(f.bias / returns.std(axis=0)).round(3).tolist()}"
        )

    moves, last = bootstrap(rng, returns, prices, args.streams, args.parity_sessions)
    quiet = {
        "lstm": make_streams(rng, moves, last, parity, None, args.parity_sessions),
        "noisy": make_streams(rng, moves, last, noisy, None, args.parity_sessions),
    }
    n = CHANGE_AT + HORIZON
    moves, last = bootstrap(rng, returns, prices, args.streams, n)
    jump = make_streams(rng, moves, last, parity, noisy, CHANGE_AT)
    worse, fresh = {}, {}
    for x in (0.05, 0.10):
        for change, out in ((CHANGE_AT, worse), (0, fresh)):
            out[("lstm", "errors", x)] = make_streams(rng, moves, last, parity, None, change, 1.0 + x)
            out[("lstm", "noisier", x)] = make_streams(rng, moves, last, parity, forecasters[f"noisier{x:.2f}"], change)
            out[("lstm", "biased", x)] = make_streams(rng, moves, last, parity, forecasters[f"biased{x:.2f}"], change)
            out[("noisy", "errors", x)] = make_streams(rng, moves, last, noisy, None, change, 1.0 + x)
    print(
        "measured MAE ratio, champion / persistence: parity "
        + ", ".join(f"{k} {s.mae_ratio(0):.4f}" for k, s in quiet.items())
        + f"; after the noise jump {jump.mae_ratio(CHANGE_AT):.4f}"
    )
    print(
        "  after the change: "
        + ", ".join(f"{k[0]}/{k[1]} +{k[2]:.0%} {s.mae_ratio(CHANGE_AT):.4f}" for k, s in worse.items())
    )

    default = DetectorConfig()
    if args.grid:
        print(
            "\ncalibration grid (new rule, other settings default): FA/250 at LSTM-like parity, noisy parity, after "
            f"the noise jump; median delays at +5% then +10% for errors / noisier / biased (change at {CHANGE_AT}), "
            "then +10% noisier / biased from promotion"
        )
        for drift in (0.25, 0.5, 0.75):
            for threshold in (4.0, 5.0, 6.0, 8.0, 9.0, 10.0, 12.0):
                cfg = replace(default, drift=drift, threshold=threshold)
                fa = [false_alarms_per_250(new_rule_alarms(q, cfg)) for q in quiet.values()]
                fa.append(jump_alarms_per_250(new_rule_alarms(jump, cfg)))
                cells = [
                    delays(new_rule_alarms(s, cfg), CHANGE_AT, True)[0] for k, s in worse.items() if k[0] == "lstm"
                ]
                cells += [
                    delays(new_rule_alarms(fresh[("lstm", kind, 0.10)], cfg), 0, True)[0]
                    for kind in ("noisier", "biased")
                ]
                print(
                    f"  k={drift:4.2f} h={threshold:4.1f}  FA "
                    + " ".join(f"{v:5.2f}" for v in fa)
                    + "  delays "
                    + " ".join(f"{v:5.0f}" for v in cells)
                )

    rules = [
        ("new: CUSUM (default)", lambda s: new_rule_alarms(s, default), True),
        ("old: MAPE/direction", old_rule_alarms, False),
    ]
    champions = {"lstm": "LSTM-like", "noisy": "noisy (0.5 sd)"}
    kinds = {"errors": "errors x (1+x)", "noisier": "noisier predictions", "biased": "biased predictions"}
    rows = []
    for rule, alarms_of, conditional in rules:
        fa = {k: false_alarms_per_250(alarms_of(q)) for k, q in quiet.items()}
        for champion, kind in (("lstm", "errors"), ("lstm", "noisier"), ("lstm", "biased"), ("noisy", "errors")):
            cells = []
            for x in (0.05, 0.10):
                cells += _cell(*delays(alarms_of(worse[(champion, kind, x)]), CHANGE_AT, conditional))
            cells += _cell(*delays(alarms_of(fresh[(champion, kind, 0.10)]), 0, conditional))
            rows.append([rule, f"{champions[champion]} -> {kinds[kind]}", f"{fa[champion]:.2f}", *cells])
        jump_fa = jump_alarms_per_250(alarms_of(jump), conditional)
        rows.append([rule, "LSTM-like -> 5x noisier, still parity", f"{jump_fa:.2f}", *["-"] * 6])
    header = [
        "rule",
        "champion -> from the change on",
        "FA/250",
        "+5% delay",
        "found",
        "+10% delay",
        "found",
        "+10% at promotion",
        "found",
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(
        f"\n{args.streams} streams per scenario, change at session {CHANGE_AT}, detection window {HORIZON} sessions, "
        f"{time.perf_counter() - started:.0f} s"
    )
    for row in [header, *rows]:
        cells = [
            str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells))


if __name__ == "__main__":
    main()
