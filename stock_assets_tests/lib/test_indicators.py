import numpy as np
import pandas as pd
import pytest
import ta

from stock_assets.lib import calendar
from stock_assets.lib.indicators import FEATURE_COLUMNS, compute_features, parabolic_sar, window_start
from stock_assets.lib.sources import load_sample_prices

TICKERS = ["AAPL", "MSFT"]
LOOKBACK = 260


@pytest.fixture(scope="module")
def prices():
    data = load_sample_prices()
    return data[(data["date"] >= "2004-08-19") & (data["date"] <= "2006-06-30") & data["ticker"].isin(TICKERS)]


@pytest.fixture(scope="module")
def sessions():
    return [d.isoformat() for d in calendar.sessions_between("2004-08-19", "2006-06-30")]


def test_warm_up_rows_are_dropped_not_filled(prices, sessions):
    features = compute_features(prices, sessions, sessions, TICKERS, LOOKBACK)
    assert features["date"].min() == sessions[LOOKBACK - 1]  # the first session with a full window
    assert len(features) == (len(sessions) - LOOKBACK + 1) * len(TICKERS)
    assert np.isfinite(features[FEATURE_COLUMNS].to_numpy()).all()
    assert list(features.columns) == ["date", "ticker", *FEATURE_COLUMNS]


def test_later_data_never_changes_earlier_rows(prices, sessions):
    cut = sessions.index("2006-01-03")
    early = compute_features(prices[prices["date"] <= sessions[cut]], sessions[: cut + 1], sessions[: cut + 1], TICKERS, LOOKBACK)
    # Append the rest, and make the future wild: earlier rows must not move.
    shocked = prices.copy()
    future = shocked["date"] > sessions[cut]
    shocked.loc[future, ["open", "high", "low", "close", "adj_close"]] *= 3.0
    full = compute_features(shocked, sessions, sessions, TICKERS, LOOKBACK)
    pd.testing.assert_frame_equal(full[full["date"] <= sessions[cut]].reset_index(drop=True), early)


def test_a_range_and_a_single_day_give_identical_rows(prices, sessions):
    full = compute_features(prices, sessions, sessions, TICKERS, LOOKBACK)
    for day in [sessions[LOOKBACK - 1], "2005-12-30", "2006-06-30"]:
        position = sessions.index(day)
        one = compute_features(prices, sessions[: position + 1], [day], TICKERS, LOOKBACK)
        pd.testing.assert_frame_equal(full[full["date"] == day].reset_index(drop=True), one)


def test_warm_up_day_gives_an_empty_typed_frame(prices, sessions):
    empty = compute_features(prices, sessions, [sessions[LOOKBACK - 2]], TICKERS, LOOKBACK)
    assert empty.empty and list(empty.columns) == ["date", "ticker", *FEATURE_COLUMNS]
    assert (empty[FEATURE_COLUMNS].dtypes == float).all()


def test_window_depends_on_the_date_only():
    assert window_start(258, 260) is None
    assert window_start(259, 260) == 0
    assert window_start(259 + 249, 260) == 0 and window_start(259 + 250, 260) == 250
    assert all(i - window_start(i, 260) + 1 >= 260 for i in range(259, 3000))


def test_missing_prices_are_named(prices, sessions):
    holed = prices[~((prices["ticker"] == "MSFT") & (prices["date"] == "2005-03-01"))]
    with pytest.raises(ValueError, match="prices for MSFT missing on 1 session"):
        compute_features(holed, sessions, sessions[-5:], TICKERS, LOOKBACK)


def test_psar_port_matches_ta(prices):
    bars = prices[prices["ticker"] == "AAPL"].reset_index(drop=True)
    expected = ta.trend.PSARIndicator(bars["high"], bars["low"], bars["close"]).psar().to_numpy()
    np.testing.assert_array_equal(parabolic_sar(bars["high"], bars["low"], bars["close"]), expected)


def test_features_are_scale_free(prices, sessions):
    scaled = prices.copy()
    scaled[["open", "high", "low", "close", "adj_close"]] *= 100.0
    a = compute_features(prices, sessions, sessions[-20:], TICKERS, LOOKBACK)
    b = compute_features(scaled, sessions, sessions[-20:], TICKERS, LOOKBACK)
    np.testing.assert_allclose(a[FEATURE_COLUMNS].to_numpy(), b[FEATURE_COLUMNS].to_numpy(), rtol=1e-7, atol=1e-9)
