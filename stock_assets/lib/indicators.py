"""Scale-free technical-indicator features (SPEC §6), computed with `ta` on adjusted prices.

A feature row for session D is computed on a window of sessions that depends on D alone: it
starts at the latest *anchor* session at least `lookback` sessions before D, anchors falling
every `block` sessions from the partitions' start. So a range backfill (one indicator pass per
block) and a single daily run give bit-identical rows, later data never changes earlier rows,
and nothing is filled backwards. Rows whose window is shorter than `lookback` (the first
sessions after the start) are warm-up and are dropped.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pandas as pd

FEATURE_BLOCK = 250

FEATURE_COLUMNS = [
    "ret_1", "ret_5", "ret_20", "volatility_20", "rsi_14",
    "macd_rel", "macd_signal_rel", "macd_hist_rel", "bb_pct_b", "bb_bandwidth",
    "atr_rel", "stoch_k", "stoch_d", "williams_r", "cci_20",
    "adx", "adx_pos", "adx_neg", "psar_dist", "roc_12",
    "mfi_14", "cmf_20", "force_index_norm", "obv_change_norm", "vwap_dist",
    "volume_z_20", "ema50_dist", "ema200_dist", "sma50_dist", "donchian_pos", "keltner_pos",
]  # fmt: skip


def window_start(index: int, lookback: int, block: int = FEATURE_BLOCK) -> int | None:
    """First session index of the window behind session `index`, or None during warm-up."""
    if index < lookback - 1:
        return None
    return ((index - lookback + 1) // block) * block


def max_window(lookback: int, block: int = FEATURE_BLOCK) -> int:
    """Longest window any row needs: the lookback partition mapping must cover this many sessions."""
    return lookback + block - 1


def parabolic_sar(high: np.ndarray, low: np.ndarray, close: np.ndarray, step=0.02, max_step=0.2) -> np.ndarray:
    """`ta.trend.PSARIndicator(...).psar()` ported to a loop over plain floats: the same numbers
    (a unit test compares them) at a fraction of the cost of ta's per-element pandas indexing."""
    high, low = np.asarray(high, dtype=float), np.asarray(low, dtype=float)
    psar = np.asarray(close, dtype=float).copy()
    up, af, trend_high, trend_low = True, step, high[0], low[0]
    for i in range(2, len(psar)):
        reversal = False
        if up:
            psar[i] = psar[i - 1] + af * (trend_high - psar[i - 1])
            if low[i] < psar[i]:
                reversal, psar[i], trend_low, af = True, trend_high, low[i], step
            else:
                if high[i] > trend_high:
                    trend_high, af = high[i], min(af + step, max_step)
                if low[i - 2] < psar[i]:
                    psar[i] = low[i - 2]
                elif low[i - 1] < psar[i]:
                    psar[i] = low[i - 1]
        else:
            psar[i] = psar[i - 1] - af * (psar[i - 1] - trend_low)
            if high[i] > psar[i]:
                reversal, psar[i], trend_high, af = True, trend_low, high[i], step
            else:
                if low[i] < trend_low:
                    trend_low, af = low[i], min(af + step, max_step)
                if high[i - 2] > psar[i]:
                    psar[i] = high[i - 2]
                elif high[i - 1] > psar[i]:
                    psar[i] = high[i - 1]
        up = up != reversal
    return psar


def _safe_div(num: pd.Series, den: pd.Series) -> pd.Series:
    """num/den, defined as 0 where den is 0 (e.g. a volume z-score on constant volume)."""
    return (num / den.where(den != 0)).where(den != 0, 0.0).where(num.notna() & den.notna())


def _indicator_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """All indicators for one ticker's consecutive sessions (RangeIndex; see LIBRARY-NOTES on PSAR)."""
    import ta

    scale = bars["adj_close"] / bars["close"]
    high, low, close = bars["high"] * scale, bars["low"] * scale, bars["adj_close"]
    volume = bars["volume"].astype(float)
    log_close = np.log(close)
    ret_1 = log_close.diff()
    macd = ta.trend.MACD(close)
    bb = ta.volatility.BollingerBands(close, window=20, window_dev=2)
    stoch = ta.momentum.StochasticOscillator(high, low, close, window=14, smooth_window=3)
    adx = ta.trend.ADXIndicator(high, low, close, window=14)
    vol_mean, vol_std = volume.rolling(20).mean(), volume.rolling(20).std()
    out = {
        "ret_1": ret_1,
        "ret_5": log_close.diff(5),
        "ret_20": log_close.diff(20),
        "volatility_20": ret_1.rolling(20).std(),
        "rsi_14": ta.momentum.RSIIndicator(close, window=14).rsi() / 100,
        "macd_rel": macd.macd() / close,
        "macd_signal_rel": macd.macd_signal() / close,
        "macd_hist_rel": macd.macd_diff() / close,
        "bb_pct_b": bb.bollinger_pband(),
        "bb_bandwidth": bb.bollinger_wband() / 100,
        "atr_rel": ta.volatility.AverageTrueRange(high, low, close, window=14).average_true_range() / close,
        "stoch_k": stoch.stoch() / 100,
        "stoch_d": stoch.stoch_signal() / 100,
        "williams_r": ta.momentum.WilliamsRIndicator(high, low, close, lbp=14).williams_r() / 100,
        "cci_20": ta.trend.CCIIndicator(high, low, close, window=20).cci() / 100,
        "adx": adx.adx() / 100,
        "adx_pos": adx.adx_pos() / 100,
        "adx_neg": adx.adx_neg() / 100,
        "psar_dist": (close - parabolic_sar(high.to_numpy(), low.to_numpy(), close.to_numpy())) / close,
        "roc_12": ta.momentum.ROCIndicator(close, window=12).roc() / 100,
        "mfi_14": ta.volume.MFIIndicator(high, low, close, volume, window=14).money_flow_index() / 100,
        "cmf_20": ta.volume.ChaikinMoneyFlowIndicator(high, low, close, volume, window=20).chaikin_money_flow(),
        "force_index_norm": _safe_div(
            ta.volume.ForceIndexIndicator(close, volume, window=13).force_index(), close * vol_mean
        ),
        "obv_change_norm": _safe_div(
            ta.volume.OnBalanceVolumeIndicator(close, volume).on_balance_volume().diff(20), volume.rolling(20).sum()
        ),
        "vwap_dist": close
        / ta.volume.VolumeWeightedAveragePrice(high, low, close, volume, window=14).volume_weighted_average_price()
        - 1,
        "volume_z_20": _safe_div(volume - vol_mean, vol_std),
        "ema50_dist": close / ta.trend.EMAIndicator(close, window=50).ema_indicator() - 1,
        "ema200_dist": close / ta.trend.EMAIndicator(close, window=200).ema_indicator() - 1,
        "sma50_dist": close / ta.trend.SMAIndicator(close, window=50).sma_indicator() - 1,
        "donchian_pos": ta.volatility.DonchianChannel(high, low, close, window=20).donchian_channel_pband(),
        "keltner_pos": ta.volatility.KeltnerChannel(high, low, close, window=20).keltner_channel_pband(),
    }
    return pd.DataFrame(out)[FEATURE_COLUMNS].replace([np.inf, -np.inf], np.nan)


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
    rows = []
    indexed = prices.set_index(["ticker", "date"]).sort_index()
    for ticker in tickers:
        for anchor, targets in sorted(by_anchor.items()):
            dates = sessions[anchor : max(targets) + 1]
            try:
                bars = indexed.loc[ticker].loc[dates].reset_index()
            except KeyError:
                have = set(indexed.loc[ticker].index) if ticker in indexed.index.get_level_values(0) else set()
                gap = [d for d in dates if d not in have]
                raise ValueError(f"prices for {ticker} missing on {len(gap)} session(s): {gap[0]}..{gap[-1]}") from None
            feats = _indicator_frame(bars).iloc[[t - anchor for t in targets]]
            feats.insert(0, "ticker", ticker)
            feats.insert(0, "date", [sessions[t] for t in targets])
            rows.append(feats)
    if not rows:
        empty = pd.DataFrame({c: pd.Series(dtype=float) for c in FEATURE_COLUMNS})
        empty.insert(0, "ticker", pd.Series(dtype=object))
        empty.insert(0, "date", pd.Series(dtype=object))
        return empty
    return pd.concat(rows, ignore_index=True).sort_values(["date", "ticker"]).reset_index(drop=True)
