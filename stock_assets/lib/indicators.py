"""Scale-free technical-indicator features on adjusted prices, with the numbers `ta` 0.11 gives.

A feature row for session D is computed on a window of sessions that depends on D alone: it
starts at the latest *anchor* session at least `lookback` sessions before D, anchors falling
every `block` sessions from the partitions' start (docs/decisions.md, "Date-anchored feature
windows"). So a range backfill and a single daily run give bit-identical rows, later data never
changes earlier rows, and nothing is filled backwards. Rows whose window is shorter than
`lookback` (the first sessions after the start) are warm-up and are dropped.

Calling `ta` once per (ticker, window) costs ~60 ms a pass, so the indicators are re-implemented
here with ta's exact recurrences (its warm-up zeros, seeds and summation order included; the tests
compare both) and evaluated for every window at once: each window is one column of a
(session, window) matrix, padded with NaN after its last session. Every formula is causal, so the
padding never reaches a real row and a window's values do not depend on which others share the matrix.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

FEATURE_BLOCK = 250
# (session, window) cells evaluated at once: ~40 float64 intermediates of this size stay alive, so
# memory is bounded (~150 MB) whatever the basket and the range (docs/architecture.md, "Memory").
WINDOW_BATCH_CELLS = 500_000

FEATURE_COLUMNS = [
    "ret_1", "ret_5", "ret_20", "volatility_20", "rsi_14",
    "macd_rel", "macd_signal_rel", "macd_hist_rel", "bb_pct_b", "bb_bandwidth",
    "atr_rel", "stoch_k", "stoch_d", "williams_r", "cci_20",
    "adx", "adx_pos", "adx_neg", "psar_dist", "roc_12",
    "mfi_14", "cmf_20", "force_index_norm", "obv_change_norm", "vwap_dist",
    "volume_z_20", "ema50_dist", "ema200_dist", "sma50_dist", "donchian_pos", "keltner_pos",
]  # fmt: skip

_PRICE_FIELDS = ["high", "low", "close", "adj_close", "volume"]


def window_start(index: int, lookback: int, block: int = FEATURE_BLOCK) -> int | None:
    """First session index of the window behind session `index`, or None during warm-up."""
    if index < lookback - 1:
        return None
    return ((index - lookback + 1) // block) * block


def max_window(lookback: int, block: int = FEATURE_BLOCK) -> int:
    """Longest window any row needs: the lookback partition mapping must cover this many sessions."""
    return lookback + block - 1


def parabolic_sar(high: np.ndarray, low: np.ndarray, close: np.ndarray, step=0.02, max_step=0.2) -> np.ndarray:
    """`ta.trend.PSARIndicator(...).psar()`, ported (ta indexes pandas element by element, far too slow).

    Time runs along axis 0; a 2-D input runs one independent PSAR per column in the same pass.
    """
    high, low = np.asarray(high, dtype=float), np.asarray(low, dtype=float)
    psar = np.array(close, dtype=float)
    up = np.ones(psar.shape[1:], dtype=bool)
    af = np.full(psar.shape[1:], step)
    trend_high, trend_low = high[0].copy(), low[0].copy()
    for i in range(2, len(psar)):
        prev, hi, lo = psar[i - 1], high[i], low[i]
        candidate = np.where(up, prev + af * (trend_high - prev), prev - af * (prev - trend_low))
        flip_down = up & (lo < candidate)
        flip_up = ~up & (hi > candidate)
        new_high = up & ~flip_down & (hi > trend_high)
        new_low = ~up & ~flip_up & (lo < trend_low)
        # Still trending: the SAR may not enter the previous two sessions' range.
        low_1, low_2, high_1, high_2 = low[i - 1], low[i - 2], high[i - 1], high[i - 2]
        below = np.where(low_2 < candidate, low_2, np.where(low_1 < candidate, low_1, candidate))
        above = np.where(high_2 > candidate, high_2, np.where(high_1 > candidate, high_1, candidate))
        psar[i] = np.where(flip_down, trend_high, np.where(flip_up, trend_low, np.where(up, below, above)))
        af = np.where(flip_down | flip_up, step, np.where(new_high | new_low, np.minimum(af + step, max_step), af))
        trend_high = np.where(flip_up | new_high, hi, trend_high)
        trend_low = np.where(flip_down | new_low, lo, trend_low)
        up = up != (flip_down | flip_up)
    return psar


# --- building blocks on (session, window) matrices -------------------------------------------------------------


def _shift(x: np.ndarray, n: int) -> np.ndarray:
    out = np.full_like(x, np.nan)
    if n < len(x):
        out[n:] = x[: len(x) - n]
    return out


def _rolling(x: np.ndarray, window: int, stat: str, min_periods: int | None = None, **kwargs) -> np.ndarray:
    """pandas' rolling kernel, column by column: the very numbers `ta` gets on one Series."""
    frame = pd.DataFrame(x, copy=False).rolling(window, min_periods=min_periods)
    return getattr(frame, stat)(**kwargs).to_numpy()


def _ewm(x: np.ndarray, min_periods: int, **kwargs) -> np.ndarray:
    """ta's EMAs: pandas `ewm(adjust=False)`, which starts at each column's first non-NaN value."""
    return pd.DataFrame(x, copy=False).ewm(min_periods=min_periods, adjust=False, **kwargs).mean().to_numpy()


def _pairwise_sum(parts: list[np.ndarray]) -> np.ndarray:
    """Elementwise sum of `parts` in the order `np.sum` adds up to 128 contiguous values (eight running
    accumulators), so sums `ta` takes with np.sum/np.mean/Series.sum come out bit for bit."""
    if len(parts) < 8:
        total = np.zeros_like(parts[0])
        for part in parts:
            total = total + part
        return total
    acc = [part.copy() for part in parts[:8]]
    i = 8
    while i < len(parts) - len(parts) % 8:
        for j in range(8):
            acc[j] += parts[i + j]
        i += 8
    total = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
    for part in parts[i:]:
        total = total + part
    return total


def _trailing(x: np.ndarray, window: int) -> list[np.ndarray]:
    """The `window` values ending at each row >= window - 1, as `window` aligned slices."""
    rows = len(x) - window + 1
    return [x[k : k + rows] for k in range(window)]


def _rolling_reduce(x: np.ndarray, window: int, reduce) -> np.ndarray:
    """`reduce(slices)` for every full trailing window, NaN before (ta's rolling(...).apply(raw=True))."""
    out = np.full_like(x, np.nan)
    if len(x) >= window:
        out[window - 1 :] = reduce(_trailing(x, window))
    return out


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den, defined as 0 where den is 0 (e.g. a volume z-score on constant volume)."""
    ratio = np.where(den != 0, num / np.where(den != 0, den, np.nan), 0.0)
    return np.where(np.isnan(num) | np.isnan(den), np.nan, ratio)


def _atr(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray, window: int = 14) -> np.ndarray:
    """ta's AverageTrueRange: 0.0 during warm-up, seeded with the mean of the first `window` true ranges."""
    true_range = np.fmax(np.fmax(high - low, np.abs(high - prev_close)), np.abs(low - prev_close))
    atr = np.zeros_like(true_range)
    if len(atr) >= window:
        atr[window - 1] = _pairwise_sum(list(true_range[:window])) / window
    for i in range(window, len(atr)):
        atr[i] = (atr[i - 1] * (window - 1) + true_range[i]) / float(window)
    return atr


def _adx(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray, window: int = 14):
    """ta's ADXIndicator (adx, adx_pos, adx_neg) with its quirks: sums, not means, seed the smoothed
    ranges, warm-up values are 0.0, and adx_pos/adx_neg stay 0.0 one session longer than the seed allows."""
    n = len(high)
    movement = np.maximum(high, prev_close) - np.minimum(low, prev_close)
    diff_up, diff_down = high - _shift(high, 1), _shift(low, 1) - low
    pos = np.abs(((diff_up > diff_down) & (diff_up > 0)) * diff_up)
    neg = np.abs(((diff_down > diff_up) & (diff_down > 0)) * diff_down)
    zeros = np.zeros_like(high)
    if n < 2 * window:
        return zeros, zeros.copy(), zeros.copy()
    smooth = []
    for series in (movement, pos, neg):
        s = np.zeros((n - window + 1,) + high.shape[1:])
        s[0] = _pairwise_sum(list(series[1 : window + 1]))  # row 0 is NaN: ta drops it before summing
        for i in range(1, len(s) - 1):
            s[i] = s[i - 1] - (s[i - 1] / float(window)) + series[window + i]
        smooth.append(s)
    trs, dip, din = smooth
    di_pos = np.where(trs != 0, 100 * (dip / trs), 0.0)
    di_neg = np.where(trs != 0, 100 * (din / trs), 0.0)
    total = di_pos + di_neg
    dx = np.where(total != 0, 100 * np.abs((di_pos - di_neg) / total), 0.0)
    adx = np.zeros_like(trs)
    adx[window] = _pairwise_sum(list(dx[:window])) / window
    for i in range(window + 1, len(adx)):
        adx[i] = ((adx[i - 1] * (window - 1)) + dx[i - 1]) / float(window)
    adx_pos, adx_neg = zeros.copy(), zeros.copy()
    adx_pos[window + 1 :], adx_neg[window + 1 :] = di_pos[1:-1], di_neg[1:-1]
    return np.concatenate([zeros[: window - 1], adx]), adx_pos, adx_neg


def _indicators(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """All FEATURE_COLUMNS for adjusted (session, window) matrices, as (session, window, feature)."""
    prev_close = _shift(close, 1)
    log_close = np.log(close)
    ret_1 = log_close - _shift(log_close, 1)
    typical = (high + low + close) / 3.0
    vol_mean, vol_std = _rolling(volume, 20, "mean"), _rolling(volume, 20, "std")

    change = close - prev_close  # RSI: Wilder smoothing as ewm(alpha=1/14)
    ema_up = _ewm(np.where(change > 0, change, 0.0), alpha=1 / 14, min_periods=14)
    ema_down = _ewm(-np.where(change < 0, change, 0.0), alpha=1 / 14, min_periods=14)
    rsi = np.where(ema_down == 0, 100, 100 - (100 / (1 + ema_up / ema_down)))

    macd = _ewm(close, span=12, min_periods=12) - _ewm(close, span=26, min_periods=26)
    macd_signal = _ewm(macd, span=9, min_periods=9)

    bb_mid, bb_std = _rolling(close, 20, "mean"), _rolling(close, 20, "std", ddof=0)
    bb_high, bb_low = bb_mid + 2 * bb_std, bb_mid - 2 * bb_std
    bb_width = bb_high - bb_low

    low_14, high_14 = _rolling(low, 14, "min"), _rolling(high, 14, "max")
    stoch_k = 100 * (close - low_14) / (high_14 - low_14)

    def mean_abs_dev(parts):
        mean = _pairwise_sum(parts) / len(parts)
        return _pairwise_sum([np.abs(p - mean) for p in parts]) / len(parts)

    cci = (typical - _rolling(typical, 20, "mean")) / (0.015 * _rolling_reduce(typical, 20, mean_abs_dev))
    adx, adx_pos, adx_neg = _adx(high, low, prev_close)

    prev_typical = _shift(typical, 1)
    flow = typical * volume * np.where(typical > prev_typical, 1, np.where(typical < prev_typical, -1, 0))
    flow_in = _rolling_reduce(np.where(flow >= 0.0, flow, 0.0), 14, _pairwise_sum)
    flow_out = np.abs(_rolling_reduce(np.where(flow < 0.0, flow, 0.0), 14, _pairwise_sum))

    clv = ((close - low) - (high - close)) / (high - low)
    money_volume = np.where(np.isnan(clv), 0.0, clv) * volume
    obv = np.where(close < prev_close, -volume, volume).cumsum(axis=0)
    vwap = _rolling(typical * volume, 14, "sum") / _rolling(volume, 14, "sum")

    don_high, don_low = _rolling(high, 20, "max"), _rolling(low, 20, "min")
    kelt_high = _rolling(((4 * high) - (2 * low) + close) / 3.0, 20, "mean", min_periods=0)
    kelt_low = _rolling(((-2 * high) + (4 * low) + close) / 3.0, 20, "mean", min_periods=0)

    columns = {
        "ret_1": ret_1,
        "ret_5": log_close - _shift(log_close, 5),
        "ret_20": log_close - _shift(log_close, 20),
        "volatility_20": _rolling(ret_1, 20, "std"),
        "rsi_14": rsi / 100,
        "macd_rel": macd / close,
        "macd_signal_rel": macd_signal / close,
        "macd_hist_rel": (macd - macd_signal) / close,
        "bb_pct_b": (close - bb_low) / np.where(bb_high != bb_low, bb_width, np.nan),
        "bb_bandwidth": ((bb_width / bb_mid) * 100) / 100,
        "atr_rel": _atr(high, low, prev_close) / close,
        "stoch_k": stoch_k / 100,
        "stoch_d": _rolling(stoch_k, 3, "mean") / 100,
        "williams_r": (-100 * (high_14 - close) / (high_14 - low_14)) / 100,
        "cci_20": cci / 100,
        "adx": adx / 100,
        "adx_pos": adx_pos / 100,
        "adx_neg": adx_neg / 100,
        "psar_dist": (close - parabolic_sar(high, low, close)) / close,
        "roc_12": (((close - _shift(close, 12)) / _shift(close, 12)) * 100) / 100,
        "mfi_14": (100 - (100 / (1 + flow_in / flow_out))) / 100,
        "cmf_20": _rolling(money_volume, 20, "sum") / _rolling(volume, 20, "sum"),
        "force_index_norm": _safe_div(_ewm(change * volume, span=13, min_periods=13), close * vol_mean),
        "obv_change_norm": _safe_div(obv - _shift(obv, 20), _rolling(volume, 20, "sum")),
        "vwap_dist": close / vwap - 1,
        "volume_z_20": _safe_div(volume - vol_mean, vol_std),
        "ema50_dist": close / _ewm(close, span=50, min_periods=50) - 1,
        "ema200_dist": close / _ewm(close, span=200, min_periods=200) - 1,
        "sma50_dist": close / _rolling(close, 50, "mean") - 1,
        "donchian_pos": (close - don_low) / (don_high - don_low),
        "keltner_pos": (close - kelt_low) / (kelt_high - kelt_low),
    }
    return np.stack([columns[name] for name in FEATURE_COLUMNS], axis=-1)


def _empty_features() -> pd.DataFrame:
    empty = pd.DataFrame({c: pd.Series(dtype=float) for c in FEATURE_COLUMNS})
    empty.insert(0, "ticker", pd.Series(dtype=object))
    empty.insert(0, "date", pd.Series(dtype=object))
    return empty


def compute_features(
    prices: pd.DataFrame,
    sessions: list[str],
    target_dates: list[str],
    tickers: list[str],
    lookback: int,
    block: int = FEATURE_BLOCK,
) -> pd.DataFrame:
    """Feature rows (date, ticker, FEATURE_COLUMNS) for `target_dates`.

    `sessions` are all sessions from the partitions' start through the last target, in order;
    `prices` must hold every (session, ticker) of the windows involved.
    """
    position = {d: i for i, d in enumerate(sessions)}
    by_anchor: dict[int, list[int]] = defaultdict(list)
    for date in target_dates:
        start = window_start(position[date], lookback, block)
        if start is not None:
            by_anchor[start].append(position[date])
    if not by_anchor or not tickers:
        return _empty_features()
    anchors = sorted(by_anchor)
    ends = [max(by_anchor[a]) + 1 for a in anchors]
    first, span = anchors[0], sessions[anchors[0] : max(ends)]

    # One (session, ticker) matrix per price field over every session any window touches.
    names = list(dict.fromkeys(tickers))
    at = pd.Index(span).get_indexer(prices["date"])
    col = pd.Index(names).get_indexer(prices["ticker"])
    keep = (at >= 0) & (col >= 0)
    at, col = at[keep], col[keep]
    present = np.zeros((len(span), len(names)), dtype=bool)
    present[at, col] = True
    panel = {}
    for field in _PRICE_FIELDS:
        panel[field] = np.full((len(span), len(names)), np.nan)
        panel[field][at, col] = prices[field].to_numpy(dtype=float)[keep]

    windows = [(ticker, anchor, end) for ticker in tickers for anchor, end in zip(anchors, ends)]
    for ticker, anchor, end in windows:
        have = present[anchor - first : end - first, names.index(ticker)]
        if not have.all():
            gap = [d for d, ok in zip(sessions[anchor:end], have) if not ok]
            raise ValueError(f"prices for {ticker} missing on {len(gap)} session(s): {gap[0]}..{gap[-1]}")

    # Window w is column w: session anchor + j in row j, NaN after its last session. Windows are
    # evaluated a batch at a time so memory follows the batch, not the history.
    longest = max(end - anchor for _, anchor, end in windows)
    per_batch = max(1, WINDOW_BATCH_CELLS // longest)
    parts = [
        _evaluate(panel, windows[lo : lo + per_batch], first, by_anchor, names)
        for lo in range(0, len(windows), per_batch)
    ]
    column = np.concatenate([cols for _, cols, _ in parts])
    index = np.concatenate([index for _, _, index in parts])
    rank = np.argsort(np.argsort(np.array(names, dtype=object)))  # rows in (date, ticker) order
    order = np.lexsort((rank[column], index))
    frame = pd.DataFrame(np.concatenate([values for values, _, _ in parts])[order], columns=FEATURE_COLUMNS)
    frame.insert(0, "ticker", np.array(names, dtype=object)[column[order]])
    frame.insert(0, "date", np.array(sessions, dtype=object)[index[order]])
    return frame


def _evaluate(
    panel: dict[str, np.ndarray], windows: list[tuple[str, int, int]], first: int, by_anchor: dict, names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(feature rows, their tickers' positions in `names`, their session indices) for `windows`' targets."""
    length = np.array([end - anchor for _, anchor, end in windows])
    offset = np.array([anchor - first for _, anchor, _ in windows])
    cols = np.array([names.index(ticker) for ticker, _, _ in windows])
    row = np.arange(length.max())[:, None]
    inside = row < length
    rows = np.where(inside, offset + row, 0)
    stacked = {}
    for field in _PRICE_FIELDS:
        stacked[field] = np.where(inside, panel[field][rows, cols], np.nan)
    with np.errstate(all="ignore"):
        scale = stacked["adj_close"] / stacked["close"]
        values = _indicators(stacked["high"] * scale, stacked["low"] * scale, stacked["adj_close"], stacked["volume"])

    picks = [(w, t - anchor) for w, (_, anchor, _) in enumerate(windows) for t in by_anchor[anchor]]
    pick_w, pick_j = np.array(picks).T
    out = values[pick_j, pick_w]
    out[np.isinf(out)] = np.nan
    return out, cols[pick_w], np.array([windows[w][1] + j for w, j in picks])
