from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
import ta

from stock_assets.lib import indicators, trading_calendar
from stock_assets.lib.indicators import FEATURE_BLOCK, FEATURE_COLUMNS, compute_features, parabolic_sar, window_start
from stock_assets.lib.sources import load_sample_prices

TICKERS = ["AAPL", "MSFT"]
LOOKBACK = 260
SAMPLE_FIRST, SAMPLE_LAST = "2004-08-19", "2013-03-01"
TOLERANCE = 1e-9


# --- the reference: one `ta` pass per (ticker, window), the implementation compute_features replaced ----------


def _reference_safe_div(num: pd.Series, den: pd.Series) -> pd.Series:
    return (num / den.where(den != 0)).where(den != 0, 0.0).where(num.notna() & den.notna())


def reference_indicator_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """All indicators for one ticker's consecutive sessions (RangeIndex), straight from `ta`."""
    scale = bars["adj_close"] / bars["close"]
    high, low, close = bars["high"] * scale, bars["low"] * scale, bars["adj_close"]
    volume = bars["volume"].astype(float)
    log_close = np.log(close)
    ret_1 = log_close.diff()
    macd = ta.trend.MACD(close)
    bb = ta.volatility.BollingerBands(close, window=20, window_dev=2)
    stoch = ta.momentum.StochasticOscillator(high, low, close, window=14, smooth_window=3)
    adx = ta.trend.ADXIndicator(high, low, close, window=14)
    psar = ta.trend.PSARIndicator(high, low, close).psar()
    vol_mean, vol_std = volume.rolling(20).mean(), volume.rolling(20).std()
    force = ta.volume.ForceIndexIndicator(close, volume, window=13).force_index()
    obv = ta.volume.OnBalanceVolumeIndicator(close, volume).on_balance_volume()
    vwap = ta.volume.VolumeWeightedAveragePrice(high, low, close, volume, window=14).volume_weighted_average_price()
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
        "psar_dist": (close - psar) / close,
        "roc_12": ta.momentum.ROCIndicator(close, window=12).roc() / 100,
        "mfi_14": ta.volume.MFIIndicator(high, low, close, volume, window=14).money_flow_index() / 100,
        "cmf_20": ta.volume.ChaikinMoneyFlowIndicator(high, low, close, volume, window=20).chaikin_money_flow(),
        "force_index_norm": _reference_safe_div(force, close * vol_mean),
        "obv_change_norm": _reference_safe_div(obv.diff(20), volume.rolling(20).sum()),
        "vwap_dist": close / vwap - 1,
        "volume_z_20": _reference_safe_div(volume - vol_mean, vol_std),
        "ema50_dist": close / ta.trend.EMAIndicator(close, window=50).ema_indicator() - 1,
        "ema200_dist": close / ta.trend.EMAIndicator(close, window=200).ema_indicator() - 1,
        "sma50_dist": close / ta.trend.SMAIndicator(close, window=50).sma_indicator() - 1,
        "donchian_pos": ta.volatility.DonchianChannel(high, low, close, window=20).donchian_channel_pband(),
        "keltner_pos": ta.volatility.KeltnerChannel(high, low, close, window=20).keltner_channel_pband(),
    }
    return pd.DataFrame(out)[FEATURE_COLUMNS].replace([np.inf, -np.inf], np.nan)


def reference_features(prices, sessions, target_dates, tickers, lookback, block=FEATURE_BLOCK) -> pd.DataFrame:
    """compute_features as one `ta` pass per (ticker, anchor window); same rows, same order."""
    position = {d: i for i, d in enumerate(sessions)}
    by_anchor = defaultdict(list)
    for date in target_dates:
        start = window_start(position[date], lookback, block)
        if start is not None:
            by_anchor[start].append(position[date])
    indexed = prices.set_index(["ticker", "date"]).sort_index()
    rows = []
    for ticker in tickers:
        for anchor, targets in sorted(by_anchor.items()):
            bars = indexed.loc[ticker].loc[sessions[anchor : max(targets) + 1]].reset_index()
            feats = reference_indicator_frame(bars).iloc[[t - anchor for t in targets]]
            feats.insert(0, "ticker", ticker)
            feats.insert(0, "date", [sessions[t] for t in targets])
            rows.append(feats)
    return pd.concat(rows, ignore_index=True).sort_values(["date", "ticker"]).reset_index(drop=True)


def max_abs_difference(ours: pd.DataFrame, reference: pd.DataFrame) -> float:
    """Largest |ours - reference| over all features, after checking rows and NaN pattern agree."""
    pd.testing.assert_frame_equal(ours[["date", "ticker"]], reference[["date", "ticker"]])
    a, b = ours[FEATURE_COLUMNS].to_numpy(), reference[FEATURE_COLUMNS].to_numpy()
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    return float(np.nanmax(np.abs(a - b), initial=0.0))


# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prices():
    data = load_sample_prices()
    return data[(data["date"] >= "2004-08-19") & (data["date"] <= "2006-06-30") & data["ticker"].isin(TICKERS)]


@pytest.fixture(scope="module")
def sessions():
    return [d.isoformat() for d in trading_calendar.sessions_between("2004-08-19", "2006-06-30")]


@pytest.fixture(scope="module")
def sample():
    data = load_sample_prices()
    sessions = [d.isoformat() for d in trading_calendar.sessions_between(SAMPLE_FIRST, SAMPLE_LAST)]
    return data, sessions, sorted(data["ticker"].unique())


@pytest.fixture(scope="module")
def sample_reference(sample):
    data, sessions, tickers = sample
    return reference_features(data, sessions, sessions, tickers, LOOKBACK)


# --- equivalence with ta ---------------------------------------------------------------------------------------


def test_a_range_run_matches_ta_on_the_whole_sample(sample, sample_reference):
    data, sessions, tickers = sample
    ours = compute_features(data, sessions, sessions, tickers, LOOKBACK)
    assert len(ours) == (len(sessions) - LOOKBACK + 1) * len(tickers) == len(sample_reference)
    assert max_abs_difference(ours, sample_reference) <= TOLERANCE


# The first row, both sides of the first anchor change (259 + 250), a mid-sample and the last session.
@pytest.mark.parametrize("position", [LOOKBACK - 1, LOOKBACK + 248, LOOKBACK + 249, 1500, -1])
def test_single_day_runs_match_ta_and_the_range_run(sample, sample_reference, position):
    data, sessions, tickers = sample
    position %= len(sessions)
    day = sessions[position]
    one = compute_features(data, sessions[: position + 1], [day], tickers, LOOKBACK)
    expected = sample_reference[sample_reference["date"] == day].reset_index(drop=True)
    assert len(one) == len(tickers)
    assert max_abs_difference(one, expected) <= TOLERANCE
    full = compute_features(data, sessions, sessions, tickers, LOOKBACK)
    pd.testing.assert_frame_equal(full[full["date"] == day].reset_index(drop=True), one, check_exact=True)


def test_warm_up_quirks_match_ta_on_short_windows(sample):
    # Lookback 28 (the shortest ta's ADX accepts) puts rows right on ta's seeds: ADX's mean of the first
    # 14 DX values, the ATR and ADX sums, Keltner's min_periods=0, EMAs still warming up.
    data, sessions, tickers = sample
    span = sessions[:160]
    ours = compute_features(data, span, span, tickers[:2], 28, block=20)
    reference = reference_features(data, span, span, tickers[:2], 28, block=20)
    assert ours[FEATURE_COLUMNS].isna().any().any()  # the comparison covers NaN warm-up rows too
    assert max_abs_difference(ours, reference) <= TOLERANCE


def test_psar_port_matches_ta(prices):
    bars = prices[prices["ticker"] == "AAPL"].reset_index(drop=True)
    expected = ta.trend.PSARIndicator(bars["high"], bars["low"], bars["close"]).psar().to_numpy()
    np.testing.assert_array_equal(parabolic_sar(bars["high"], bars["low"], bars["close"]), expected)


def test_psar_on_columns_equals_psar_per_column(prices):
    wide = {f: prices.pivot(index="date", columns="ticker", values=f).to_numpy() for f in ["high", "low", "close"]}
    together = parabolic_sar(wide["high"], wide["low"], wide["close"])
    for k in range(together.shape[1]):
        alone = parabolic_sar(wide["high"][:, k], wide["low"][:, k], wide["close"][:, k])
        np.testing.assert_array_equal(together[:, k], alone)


# --- window semantics ----------------------------------------------------------------------------------------------


def test_warm_up_rows_are_dropped_not_filled(prices, sessions):
    features = compute_features(prices, sessions, sessions, TICKERS, LOOKBACK)
    assert features["date"].min() == sessions[LOOKBACK - 1]  # the first session with a full window
    assert len(features) == (len(sessions) - LOOKBACK + 1) * len(TICKERS)
    assert np.isfinite(features[FEATURE_COLUMNS].to_numpy()).all()
    assert list(features.columns) == ["date", "ticker", *FEATURE_COLUMNS]


def test_later_data_never_changes_earlier_rows(prices, sessions):
    cut = sessions.index("2006-01-03")
    head = sessions[: cut + 1]
    early = compute_features(prices[prices["date"] <= sessions[cut]], head, head, TICKERS, LOOKBACK)
    # Append the rest, and make the future wild: earlier rows must not move.
    shocked = prices.copy()
    future = shocked["date"] > sessions[cut]
    shocked.loc[future, ["open", "high", "low", "close", "adj_close"]] *= 3.0
    full = compute_features(shocked, sessions, sessions, TICKERS, LOOKBACK)
    pd.testing.assert_frame_equal(full[full["date"] <= sessions[cut]].reset_index(drop=True), early, check_exact=True)


def test_a_range_and_a_single_day_give_identical_rows(prices, sessions):
    full = compute_features(prices, sessions, sessions, TICKERS, LOOKBACK)
    for day in [sessions[LOOKBACK - 1], "2005-12-30", "2006-06-30"]:
        position = sessions.index(day)
        one = compute_features(prices, sessions[: position + 1], [day], TICKERS, LOOKBACK)
        pd.testing.assert_frame_equal(full[full["date"] == day].reset_index(drop=True), one, check_exact=True)


def test_rows_do_not_depend_on_how_windows_are_batched(prices, sessions, monkeypatch):
    """Memory is bounded by evaluating windows in batches; one window per batch gives the same rows."""
    unbatched = compute_features(prices, sessions, sessions, ["MSFT", "AAPL"], LOOKBACK)
    monkeypatch.setattr(indicators, "WINDOW_BATCH_CELLS", 1)
    batched = compute_features(prices, sessions, sessions, ["MSFT", "AAPL"], LOOKBACK)
    assert len(batched) == (len(sessions) - LOOKBACK + 1) * 2
    assert batched["ticker"].tolist()[:4] == ["AAPL", "MSFT", "AAPL", "MSFT"]  # (date, ticker) order
    pd.testing.assert_frame_equal(batched, unbatched, check_exact=True)


def test_warm_up_day_gives_an_empty_typed_frame(prices, sessions):
    empty = compute_features(prices, sessions, [sessions[LOOKBACK - 2]], TICKERS, LOOKBACK)
    assert empty.empty and list(empty.columns) == ["date", "ticker", *FEATURE_COLUMNS]
    assert all(dtype == np.float64 for dtype in empty[FEATURE_COLUMNS].dtypes)


def test_window_depends_on_the_date_only():
    assert window_start(258, 260) is None
    assert window_start(259, 260) == 0
    assert window_start(259 + 249, 260) == 0 and window_start(259 + 250, 260) == 250
    assert all(i - window_start(i, 260) + 1 >= 260 for i in range(259, 3000))


def test_missing_prices_are_named(prices, sessions):
    holed = prices[~((prices["ticker"] == "MSFT") & (prices["date"] == "2005-03-01"))]
    with pytest.raises(ValueError, match="prices for MSFT missing on 1 session"):
        compute_features(holed, sessions, sessions[-5:], TICKERS, LOOKBACK)


def test_an_unknown_ticker_is_named(prices, sessions):
    with pytest.raises(ValueError, match=r"prices for NOPE missing on 260 session\(s\)"):
        compute_features(prices, sessions, [sessions[LOOKBACK - 1]], ["AAPL", "NOPE"], LOOKBACK)


def test_features_are_scale_free(prices, sessions):
    scaled = prices.copy()
    scaled[["open", "high", "low", "close", "adj_close"]] *= 100.0
    a = compute_features(prices, sessions, sessions[-20:], TICKERS, LOOKBACK)
    b = compute_features(scaled, sessions, sessions[-20:], TICKERS, LOOKBACK)
    np.testing.assert_allclose(a[FEATURE_COLUMNS].to_numpy(), b[FEATURE_COLUMNS].to_numpy(), rtol=1e-7, atol=1e-9)
