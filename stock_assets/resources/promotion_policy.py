"""The promotion gate's bound, from settings (`training.max_mae_ratio_to_persistence`)."""

from dagster import ConfigurableResource
from pydantic import Field


class PromotionPolicyResource(ConfigurableResource):
    """A candidate must beat the champion and keep MAE <= ratio x persistence MAE."""

    max_mae_ratio_to_persistence: float = Field(1.05, gt=0, le=10)
