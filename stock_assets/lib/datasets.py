"""Dense panels, the next-session target, embargoed splits, train-only scaling, the one window
cutter, and the training sets as of a date.

A window ending at session t is paired with log(close[t+1] / close[t]) and nothing else; the last
session has no target and is never a sample; scaling numbers come from training rows only and are
plain JSON numbers; windows are cut from one array when asked for, never stored stacked
(docs/decisions.md, "Training data").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from stock_assets.lib.metrics import log_returns

STD_EPSILON = 1e-8  # floor for scaler std: a constant feature scales to 0 instead of dividing by 0


@dataclass(frozen=True)
class Panel:
    """Aligned sessions x tickers arrays; every cell is observed (no filling)."""

    dates: list[str]
    tickers: list[str]
    feature_columns: list[str]
    features: np.ndarray  # (n_sessions, n_tickers, n_features) float32
    close: np.ndarray  # (n_sessions, n_tickers) float64, adj_close

    @property
    def n_sessions(self) -> int:
        return len(self.dates)


def build_panel(
    features: pd.DataFrame, prices: pd.DataFrame, tickers: list[str], feature_columns: list[str], min_sessions: int = 2
) -> Panel:
    """Pivot long frames to dense arrays, keeping only sessions where every ticker is complete.

    A session is kept when every ticker has all features and a finite adj_close there; anything
    else drops the whole session rather than filling a hole with another day's values.
    """
    tickers, feature_columns = list(tickers), list(feature_columns)
    if not tickers or len(set(tickers)) != len(tickers):
        raise ValueError(f"tickers must be a non-empty list without duplicates, got {tickers}")
    f = features.loc[features["ticker"].isin(tickers), ["date", "ticker", *feature_columns]]
    p = prices.loc[prices["ticker"].isin(tickers), ["date", "ticker", "adj_close"]]
    for name, frame in (("features", f), ("prices", p)):
        missing = [t for t in tickers if t not in set(frame["ticker"])]
        if missing:
            raise ValueError(f"ticker(s) {missing} have no rows at all in {name}")
        dup = frame.duplicated(["date", "ticker"])
        if dup.any():
            first = frame.loc[dup, ["date", "ticker"]].iloc[0].tolist()
            raise ValueError(f"{name} has {int(dup.sum())} duplicate (date, ticker) rows, e.g. {first}")
    merged = f.merge(p, on=["date", "ticker"], how="inner")
    complete = merged.loc[np.isfinite(merged[[*feature_columns, "adj_close"]].to_numpy(dtype=np.float64)).all(axis=1)]
    counts = complete.groupby("date")["ticker"].nunique()
    dates = sorted(counts.index[counts == len(tickers)].tolist())
    if len(dates) < min_sessions:
        per_ticker = complete.groupby("ticker")["date"].nunique().reindex(tickers, fill_value=0).to_dict()
        raise ValueError(
            f"only {len(dates)} sessions have features and prices for all of {tickers} "
            f"(need at least {min_sessions}); complete sessions per ticker: {per_ticker}"
        )
    rows = complete.loc[complete["date"].isin(set(dates))]
    if (rows["adj_close"] <= 0).any():
        bad = rows.loc[rows["adj_close"] <= 0, ["date", "ticker"]].iloc[0].tolist()
        raise ValueError(f"non-positive adj_close at {bad}: log returns need positive prices")
    d_idx = pd.Index(dates).get_indexer(rows["date"])
    t_idx = pd.Index(tickers).get_indexer(rows["ticker"])
    feats = np.empty((len(dates), len(tickers), len(feature_columns)), dtype=np.float32)
    close = np.empty((len(dates), len(tickers)), dtype=np.float64)
    feats[d_idx, t_idx] = rows[feature_columns].to_numpy(dtype=np.float32, copy=True)
    close[d_idx, t_idx] = rows["adj_close"].to_numpy(dtype=np.float64, copy=True)
    return Panel([str(d) for d in dates], tickers, feature_columns, feats, close)


def next_session_log_returns(close: np.ndarray) -> np.ndarray:
    """y[t] = log(close[t+1] / close[t]); the last row is NaN (its next close is unknown)."""
    close = np.asarray(close, dtype=np.float64)
    out = np.full_like(close, np.nan)
    out[:-1] = log_returns(close)
    return out


@dataclass(frozen=True)
class Split:
    """Window-END session indices per part; the window ending at t covers rows t-seq_len+1..t."""

    train: np.ndarray
    validation: np.ndarray
    holdout: np.ndarray


def _part_sizes(n_sessions: int, seq: int, vf: float, hf: float, min_samples: int) -> tuple[int, int, int] | None:
    available = n_sessions - seq - 2 * seq  # valid ends (seq-1 .. n-2) minus two embargoes
    val = max(min_samples, round(available * vf))
    hold = max(min_samples, round(available * hf))
    train = available - val - hold
    return (train, val, hold) if train >= min_samples else None


def minimum_sessions(
    sequence_length: int, validation_fraction: float = 0.15, holdout_fraction: float = 0.15, min_samples: int = 5
) -> int:
    """Fewest panel sessions for which `chronological_split` succeeds (for config validation)."""
    n = 3 * sequence_length + 3 * min_samples
    while _part_sizes(n, sequence_length, validation_fraction, holdout_fraction, min_samples) is None:
        n += 1
    return n


def chronological_split(
    n_sessions: int,
    sequence_length: int,
    validation_fraction: float = 0.15,
    holdout_fraction: float = 0.15,
    min_samples: int = 5,
) -> Split:
    """Train, then validation, then holdout (most recent), with `sequence_length` ends skipped
    between parts: the first window of a part starts after the last target of the previous one.
    """
    if sequence_length < 1 or min_samples < 1:
        raise ValueError(f"sequence_length and min_samples must be >= 1, got {sequence_length}, {min_samples}")
    if not (0 < validation_fraction < 1 and 0 < holdout_fraction < 1 and validation_fraction + holdout_fraction < 1):
        raise ValueError(f"fractions must be in (0, 1) with a sum < 1, got {validation_fraction}, {holdout_fraction}")
    sizes = _part_sizes(n_sessions, sequence_length, validation_fraction, holdout_fraction, min_samples)
    if sizes is None:
        need = minimum_sessions(sequence_length, validation_fraction, holdout_fraction, min_samples)
        raise ValueError(
            f"{n_sessions} sessions are too few for sequence_length={sequence_length}: need at least {need} "
            f"(>= {min_samples} samples per part plus two embargoes of {sequence_length} sessions)"
        )
    n_train, n_val, n_hold = sizes
    train_start = sequence_length - 1
    val_start = train_start + n_train + sequence_length
    hold_start = val_start + n_val + sequence_length
    return Split(
        train=np.arange(train_start, train_start + n_train),
        validation=np.arange(val_start, val_start + n_val),
        holdout=np.arange(hold_start, hold_start + n_hold),
    )


def fit_scaler(panel: Panel, split: Split, sequence_length: int) -> dict:
    """Per-ticker, per-feature mean/std over the rows of train windows only, plus target stats.

    Returned as plain lists/floats/strings so it can be stored as JSON beside the model.
    """
    first, last = int(split.train.min()) - sequence_length + 1, int(split.train.max())
    if first < 0:
        raise ValueError(f"train window ending at {int(split.train.min())} starts before session 0")
    rows = panel.features[first : last + 1].astype(np.float64)
    targets = next_session_log_returns(panel.close)[split.train]
    return {
        "tickers": list(panel.tickers),
        "feature_columns": list(panel.feature_columns),
        "mean": rows.mean(axis=0).tolist(),
        "std": np.maximum(rows.std(axis=0), STD_EPSILON).tolist(),
        "target_mean": targets.mean(axis=0).tolist(),
        "target_std": np.maximum(targets.std(axis=0), STD_EPSILON).tolist(),
        "fitted_sessions": {"first": panel.dates[first], "last": panel.dates[last]},
    }


def apply_scaler(features_array: np.ndarray, scaler: dict) -> np.ndarray:
    """Standardise (..., n_tickers, n_features) with the stored numbers; float32 for torch."""
    mean, std = np.asarray(scaler["mean"], dtype=np.float64), np.asarray(scaler["std"], dtype=np.float64)
    if features_array.shape[-2:] != mean.shape:
        raise ValueError(f"features end in shape {features_array.shape[-2:]}, scaler expects {mean.shape}")
    return ((features_array - mean) / std).astype(np.float32)


def scale_targets(targets: np.ndarray, scaler: dict) -> np.ndarray:
    """Standardise log returns per ticker (NaN stays NaN)."""
    mean, std = np.asarray(scaler["target_mean"]), np.asarray(scaler["target_std"])
    return ((np.asarray(targets, dtype=np.float64) - mean) / std).astype(np.float32)


def unscale_predictions(predictions: np.ndarray, scaler: dict) -> np.ndarray:
    """Model outputs back to log returns (float64)."""
    mean, std = np.asarray(scaler["target_mean"]), np.asarray(scaler["target_std"])
    return np.asarray(predictions, dtype=np.float64) * std + mean


def predicted_close(last_close: np.ndarray, log_returns: np.ndarray) -> np.ndarray:
    """close[t] * exp(predicted log return): the price forecast for session t+1."""
    return np.asarray(last_close, dtype=np.float64) * np.exp(np.asarray(log_returns, dtype=np.float64))


def cut_windows(scaled_features: np.ndarray, ends: np.ndarray | list[int], sequence_length: int) -> np.ndarray:
    """The windows ending at `ends` (negative counts from the end), stacked as (len(ends), seq, T, F).

    The only place windows are cut: training batches, scoring and serving all go through here.
    """
    n = len(scaled_features)
    ends = np.asarray(ends, dtype=np.int64)
    ends = np.where(ends < 0, ends + n, ends)
    if ends.size and (ends.min() < sequence_length - 1 or ends.max() >= n):
        raise ValueError(
            f"windows of {sequence_length} sessions must end in [{sequence_length - 1}, {n - 1}], got {ends}"
        )
    offsets = np.arange(-sequence_length + 1, 1)
    return np.ascontiguousarray(scaled_features[ends[:, None] + offsets], dtype=np.float32)


VALIDATION_FRACTION = 0.15
HOLDOUT_FRACTION = 0.15


def build_training_sets(
    features: pd.DataFrame,
    prices: pd.DataFrame,
    tickers: list[str],
    feature_columns: list[str],
    training_window: int,
    max_sequence_length: int,
) -> tuple[dict, dict[str, np.ndarray]]:
    """(scaler, arrays) for the last `training_window` complete sessions, computed once for both
    the `scalers` and the `scaled_sets` assets.

    The split's embargo uses the longest sequence length the search may pick, so a window of any
    searched length stays inside its part. The scaler is fitted on the train part only. Arrays are
    compact: windows are cut on demand.
    """
    panel = build_panel(features, prices, tickers, feature_columns, min_sessions=2)
    if panel.n_sessions > training_window:
        keep = slice(panel.n_sessions - training_window, None)
        panel = Panel(panel.dates[keep], panel.tickers, panel.feature_columns, panel.features[keep], panel.close[keep])
    split = chronological_split(panel.n_sessions, max_sequence_length, VALIDATION_FRACTION, HOLDOUT_FRACTION)
    scaler = fit_scaler(panel, split, max_sequence_length)
    targets = next_session_log_returns(panel.close)
    arrays = {
        "dates": np.asarray(panel.dates),
        "tickers": np.asarray(panel.tickers),
        "feature_columns": np.asarray(panel.feature_columns),
        "features": panel.features,
        "scaled_features": apply_scaler(panel.features, scaler),
        "close": panel.close,
        "scaled_targets": scale_targets(targets, scaler),
        "train": split.train,
        "validation": split.validation,
        "holdout": split.holdout,
    }
    scaler["parts"] = {part: part_dates(arrays, part) for part in ("train", "validation", "holdout")}
    return scaler, arrays


def part_dates(arrays: dict[str, np.ndarray], part: str) -> dict[str, str]:
    """First/last window-end session of a part and its sample count (for metadata)."""
    ends = arrays[part]
    return {"first": str(arrays["dates"][ends[0]]), "last": str(arrays["dates"][ends[-1]]), "samples": int(len(ends))}
