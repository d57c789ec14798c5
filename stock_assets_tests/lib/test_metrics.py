import math

import numpy as np
import pytest

from stock_assets.lib.metrics import (
    persistence_forecast,
    pointwise_errors,
    price_forecast_metrics,
    skill_vs_persistence,
)

ACTUAL = np.array([10.0, 20.0, 30.0, 40.0])
PREDICTED = np.array([11.0, 18.0, 30.0, 44.0])
LAST = np.array([10.5, 19.0, 29.0, 41.0])
# errors 1, -2, 0, 4; actual moves -, +, +, -; predicted moves +, -, +, +  -> one hit of four


def test_metrics_on_hand_computed_numbers():
    m = price_forecast_metrics(ACTUAL, PREDICTED, LAST)
    assert m["mae"] == pytest.approx(7 / 4)
    assert m["rmse"] == pytest.approx(math.sqrt(21 / 4))
    assert m["mape"] == pytest.approx((0.1 + 0.1 + 0.0 + 0.1) / 4)  # a fraction, not percent
    assert m["directional_accuracy"] == 0.25
    assert m["n"] == 4


def test_any_shape_is_flattened_and_nan_triples_dropped():
    m2d = price_forecast_metrics(ACTUAL.reshape(2, 2), PREDICTED.reshape(2, 2), LAST.reshape(2, 2))
    assert m2d == price_forecast_metrics(ACTUAL, PREDICTED, LAST)
    with_nan = price_forecast_metrics(np.append(ACTUAL, np.nan), np.append(PREDICTED, 5.0), np.append(LAST, 5.0))
    assert with_nan == m2d
    nan_last = price_forecast_metrics(np.append(ACTUAL, 1.0), np.append(PREDICTED, 5.0), np.append(LAST, np.nan))
    assert nan_last["n"] == 4
    empty = price_forecast_metrics([np.nan], [1.0], [1.0])
    assert empty["n"] == 0 and math.isnan(empty["mae"])
    with pytest.raises(ValueError, match="same number of elements"):
        price_forecast_metrics(ACTUAL, PREDICTED[:3], LAST)


def test_direction_rule_for_flat_sessions():
    last = np.array([50.0, 60.0, 69.0, 80.0])
    actual = np.array([50.0, 60.0, 70.0, 79.0])  # flat, flat, up, down
    predicted = np.array([50.0, 61.0, 69.0, 78.0])  # flat (hit), up (miss), flat (miss), down (hit)
    assert price_forecast_metrics(actual, predicted, last)["directional_accuracy"] == 0.5
    np.testing.assert_array_equal(pointwise_errors(actual, predicted, last)["direction_hit"], [1, 0, 0, 1])


def test_pointwise_errors_match_the_aggregates():
    e = pointwise_errors(np.append(ACTUAL, np.nan), np.append(PREDICTED, 1.0), np.append(LAST, 1.0))
    np.testing.assert_allclose(e["abs_error"][:4], [1, 2, 0, 4])
    np.testing.assert_allclose(e["abs_pct_error"][:4], [0.1, 0.1, 0, 0.1])
    np.testing.assert_allclose(e["squared_error"][:4], [1, 4, 0, 16])
    np.testing.assert_array_equal(e["direction_hit"][:4], [0, 0, 1, 0])
    assert all(np.isnan(v[4]) for v in e.values())


def test_persistence_and_skill():
    baseline = persistence_forecast(LAST)
    np.testing.assert_array_equal(baseline, LAST)
    assert baseline is not LAST
    p = price_forecast_metrics(ACTUAL, baseline, LAST)
    assert p["mae"] == pytest.approx((0.5 + 1 + 1 + 1) / 4)
    assert p["directional_accuracy"] == 0.0  # a flat forecast misses every real move
    model_mae = price_forecast_metrics(ACTUAL, PREDICTED, LAST)["mae"]
    assert skill_vs_persistence(model_mae, p["mae"]) == pytest.approx(1 - 1.75 / 0.875)
    assert skill_vs_persistence(1.0, 2.0) == 0.5
    assert skill_vs_persistence(2.0, 2.0) == 0.0
    assert math.isnan(skill_vs_persistence(1.0, 0.0))
