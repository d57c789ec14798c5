from dagster import Definitions

from stock_assets.defs.training.checks import candidate_model_sanity, promotion_gate
from stock_assets.defs.training.datasets import scaled_sets, scalers
from stock_assets.defs.training.jobs import retraining_job
from stock_assets.defs.training.models import candidate_model, production_model
from stock_assets.defs.training.search import best_params

defs = Definitions(
    assets=[scalers, scaled_sets, best_params, candidate_model, production_model],
    asset_checks=[promotion_gate, candidate_model_sanity],
    jobs=[retraining_job],
)
