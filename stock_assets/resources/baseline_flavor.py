"""An MLflow model flavor for the baselines: the forecaster's plain numbers in one JSON file.

`mlflow.models.Model.log(name="model", flavor=baseline_flavor, forecaster=...)` calls `save_model`
below, so a baseline is a logged and registered MLflow model like an LSTM (its own `model_id`,
versions, aliases) but holds no code and no pickle, and serving it needs numpy only
(docs/decisions.md, "Forecasts are distributions").
"""

from __future__ import annotations

import json
import os

FLAVOR_NAME = "stock_assets_baseline"
FORECASTER_FILE = "forecaster.json"


def save_model(path: str, mlflow_model, forecaster: dict, **kwargs) -> None:
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, FORECASTER_FILE), "w") as fh:
        json.dump(forecaster, fh)
    mlflow_model.add_flavor(FLAVOR_NAME, data=FORECASTER_FILE, kind=forecaster["kind"])
    mlflow_model.save(os.path.join(path, "MLmodel"))
