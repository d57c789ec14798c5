"""Decision policies as resources: the promotion gate's and the retraining trigger's rules.

Assets, checks and the sensor take them as parameters, so a deployment (or a test) changes a
decision rule through settings, never by editing module globals.
"""

from dagster import ConfigurableResource
from pydantic import Field


class PromotionPolicyResource(ConfigurableResource):
    """A candidate replaces the champion only with a significant improvement over the champion and
    over persistence (docs/decisions.md, "The promotion gate")."""

    alpha: float = Field(0.10, gt=0, lt=1, description="one-sided Diebold-Mariano significance level")


class MonitoringPolicyResource(ConfigurableResource):
    """When the champion counts as degraded (docs/decisions.md, "Degradation detector")."""

    window_sessions: int = Field(10, ge=1, le=250, description="sessions of the rolling metrics in metadata")
    detector_drift: float = Field(0.25, gt=0, description="CUSUM allowance per session, in noise units")
    detector_threshold: float = Field(9.0, gt=0, description="CUSUM alarm level")
    detector_min_sessions: int = Field(10, ge=2, description="sessions since promotion before the detector judges")
    max_champion_age_sessions: int = Field(63, ge=1, description="retrain a champion older than this")
    cooldown_sessions: int = Field(5, ge=0)
    mape_max: float | None = Field(None, gt=0, le=1, description="optional guard; off by default")
    direction_accuracy_min: float | None = Field(None, ge=0, le=1, description="optional guard; off by default")
    min_samples: int = Field(20, ge=1, description="scored predictions the optional guards need")

    def detector_config(self):
        from stock_assets.lib.degradation import DetectorConfig

        return DetectorConfig(
            drift=self.detector_drift, threshold=self.detector_threshold, min_sessions=self.detector_min_sessions
        )
