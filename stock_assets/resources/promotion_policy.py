"""The promotion gate's bounds, from settings (`training.max_mae_ratio_to_persistence`, `..._over_champion`)."""

from dagster import ConfigurableResource
from pydantic import Field


class PromotionPolicyResource(ConfigurableResource):
    """A candidate must beat the champion by a margin (training nondeterminism is not progress) and
    keep MAE <= ratio x persistence MAE."""

    max_mae_ratio_to_persistence: float = Field(1.10, gt=0, le=10)
    min_improvement_over_champion: float = Field(0.001, ge=0, lt=1)
