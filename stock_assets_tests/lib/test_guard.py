"""The plausibility guard as pure functions: which forecasts are implausible, and the loss streak."""

import numpy as np
import pytest

from stock_assets.lib.guard import decide, implausible, loss_streak
from stock_assets.settings import GuardSettings

LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
RULE = GuardSettings(max_sigmas=3.0, loss_multiple=3.0, loss_sessions=2)
Z = np.array([-1.645, -0.674, 0.0, 0.674, 1.645])


def gaussian(median, sigma):
    return np.asarray(median, float)[:, None] + np.asarray(sigma, float)[:, None] * Z


def test_a_median_beyond_three_predicted_sigmas_is_implausible_and_names_ticker_move_and_rule():
    sigma = np.array([0.015, 0.015, 0.015])
    served = gaussian([0.05, 0.044, -0.01], sigma)  # +5.13% is 3.33 sd; 4.4% is 2.93 sd; -1% is fine
    reasons = implausible(served, sigma, LEVELS, ["AAPL", "MSFT", "IBM"], RULE)
    assert reasons[0] == ("AAPL: median move +5.13% is 3.3 predicted standard deviations (guard.max_sigmas 3)")
    assert reasons[1:] == ["", ""]


def test_non_finite_forecasts_are_implausible_whatever_the_volatility():
    served = gaussian([0.0, 0.0], [0.01, 0.01])
    served[0, 4] = np.inf
    served[1, 2] = np.nan
    reasons = implausible(served, np.array([np.nan, 0.01]), LEVELS, ["A", "B"], RULE)
    assert reasons == ["A: the champion's forecast is not finite", "B: the champion's forecast is not finite"]


def test_an_honest_forecast_never_trips_the_sigma_rule():
    rng = np.random.default_rng(0)
    sigma = rng.uniform(0.005, 0.04, size=10_000)
    served = gaussian(rng.normal(0, 0.3 * sigma), sigma)  # medians a few tenths of a sd: what models serve
    assert not any(implausible(served, sigma, LEVELS, [str(i) for i in range(10_000)], RULE))


def test_the_loss_streak_needs_every_one_of_the_last_sessions_above_the_multiple():
    baseline = np.array([1.0, 1.0, 1.0, 1.0])
    assert loss_streak(np.array([1.0, 1.0, 3.5, 4.0]), baseline, RULE) == (
        "the champion's pinball loss ran above 3x the baseline's in each of its last 2 scored sessions "
        "(3.5x, 4.0x; guard.loss_multiple, guard.loss_sessions)"
    )
    assert loss_streak(np.array([5.0, 5.0, 2.9, 4.0]), baseline, RULE) is None  # one session below: noise
    assert loss_streak(np.array([9.0]), np.array([1.0]), RULE) is None  # too few sessions yet
    assert loss_streak(np.array([9.0, np.nan]), np.array([1.0, 1.0]), RULE) is None


def test_a_streak_takes_every_ticker_off_an_implausible_forecast_only_its_own():
    sigma = np.array([0.01, 0.01])
    served = gaussian([0.05, 0.0], sigma)
    alone = decide(served, sigma, LEVELS, ["A", "B"], RULE)
    assert alone.fallback.tolist() == [True, False] and alone.reasons[1] == ""
    streak = decide(served, sigma, LEVELS, ["A", "B"], RULE, streak="loss streak")
    assert streak.fallback.tolist() == [True, True]
    assert streak.reasons[0].startswith("A: median move") and streak.reasons[1] == "loss streak"
    assert streak.summary().count("loss streak") == 1 and streak.fired


@pytest.mark.parametrize("sigmas", [1.0, 50.0])
def test_the_rule_follows_the_setting(sigmas):
    sigma = np.array([0.01])
    served = gaussian([0.02], sigma)  # 2 sd
    fired = decide(served, sigma, LEVELS, ["A"], GuardSettings(max_sigmas=sigmas)).fired
    assert fired == (sigmas < 2)
