"""Decision policies as resources: the promotion gate's and the retraining trigger's rules.

Assets, checks and the sensor take them as parameters, so a deployment (or a test) changes a
decision rule through settings, never by editing module globals. Their fields are the settings'
own (`lib/fields.py`): one default and one bound per rule.
"""

from dagster import ConfigurableResource
from pydantic import create_model

from stock_assets.lib.fields import fields_of
from stock_assets.settings import MonitoringSettings, TrainingSettings


class _PromotionPolicy(ConfigurableResource):
    """A candidate replaces the champion only with a significant improvement over the champion and
    over persistence (docs/decisions.md, "The promotion gate"). `alpha` is `training.gate_alpha`."""


class _MonitoringPolicy(ConfigurableResource):
    """When the champion counts as degraded (docs/decisions.md, "Degradation detector"); the fields
    are those of the `monitoring` settings section."""

    def detector_config(self):
        from stock_assets.lib.degradation import DetectorConfig

        return DetectorConfig(
            drift=self.detector_drift, threshold=self.detector_threshold, min_sessions=self.detector_min_sessions
        )


PromotionPolicyResource = create_model(
    "PromotionPolicyResource",
    __base__=_PromotionPolicy,
    __module__=__name__,
    __doc__=_PromotionPolicy.__doc__,
    **fields_of(TrainingSettings, ("gate_alpha",), rename={"gate_alpha": "alpha"}),
)
MonitoringPolicyResource = create_model(
    "MonitoringPolicyResource",
    __base__=_MonitoringPolicy,
    __module__=__name__,
    __doc__=_MonitoringPolicy.__doc__,
    **fields_of(MonitoringSettings),
)
