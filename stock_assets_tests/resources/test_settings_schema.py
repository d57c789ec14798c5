"""One schema per setting: the policy and price-source resources take their fields, defaults and
bounds from the settings sections; the Launchpad's search space defaults are `SearchSpace`'s."""

import pytest
from pydantic import ValidationError

from stock_assets.defs.training.config import build_training_configs
from stock_assets.lib.study import SearchSpace
from stock_assets.resources import build_resources
from stock_assets.resources.policies import MonitoringPolicyResource, PromotionPolicyResource
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.settings import MonitoringSettings, Settings, TrainingSettings, YFinanceSettings


def same_field(a, b) -> bool:
    return (a.default, a.metadata, a.description) == (b.default, b.metadata, b.description)


def test_the_policies_fields_are_the_settings_fields():
    monitoring = MonitoringSettings.model_fields
    assert set(MonitoringPolicyResource.model_fields) == set(monitoring)
    assert all(same_field(MonitoringPolicyResource.model_fields[k], f) for k, f in monitoring.items())
    assert same_field(PromotionPolicyResource.model_fields["alpha"], TrainingSettings.model_fields["gate_alpha"])
    for name, field in YFinanceSettings.model_fields.items():
        assert same_field(PriceSourceResource.model_fields[f"yfinance_{name}"], field)
    for name in ("source", "max_abs_log_return"):
        assert same_field(PriceSourceResource.model_fields[name], Settings.model_fields[name])


@pytest.mark.parametrize(
    "resource, field, value",
    [
        (MonitoringPolicyResource, "detector_drift", 6.0),  # settings allow at most 5
        (MonitoringPolicyResource, "mape_max", 3.0),
        (PromotionPolicyResource, "alpha", 1.0),
        (PriceSourceResource, "yfinance_timeout_seconds", 0.5),
    ],
)
def test_a_resource_refuses_what_the_settings_refuse(resource, field, value):
    with pytest.raises(ValidationError):
        resource(**{field: value})


def test_the_resources_carry_the_settings_values(tmp_path):
    settings = Settings(
        home=tmp_path,
        monitoring=MonitoringSettings(cooldown_sessions=3, mape_max=0.2),
        training=TrainingSettings(gate_alpha=0.05),
        yfinance=YFinanceSettings(timeout_seconds=12),
        accepted_moves=[["AAPL", "2005-02-28"]],
    )
    resources = build_resources(settings)
    policy = resources["monitoring_policy"]
    assert (policy.cooldown_sessions, policy.mape_max, policy.window_sessions) == (3, 0.2, 10)
    assert policy.detector_config().threshold == settings.monitoring.detector_threshold
    assert resources["promotion_policy"].alpha == 0.05
    source = resources["price_source"]
    assert source.yfinance_timeout_seconds == 12 and source.price_rules["accepted_moves"] == (("AAPL", "2005-02-28"),)


def test_the_launchpads_search_space_defaults_are_search_spaces():
    config = build_training_configs(TrainingSettings(sequence_lengths=(5, 10))).search()
    space = config.space()
    assert space == SearchSpace(sequence_lengths=(5, 10))
