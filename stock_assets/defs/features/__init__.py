from dagster import Definitions

from stock_assets.defs.features.assets import processed_features
from stock_assets.defs.features.checks import processed_features_valid

defs = Definitions(assets=[processed_features], asset_checks=[processed_features_valid])
