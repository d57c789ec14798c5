from dagster import Definitions, PartitionsDefinition

from stock_assets.defs.features.assets import build_processed_features
from stock_assets.defs.features.checks import processed_features_valid
from stock_assets.settings import Settings


def build_defs(settings: Settings, partitions: PartitionsDefinition) -> Definitions:
    return Definitions(assets=[build_processed_features(settings, partitions)], asset_checks=[processed_features_valid])
