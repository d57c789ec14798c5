"""Links into the MLflow UI for Dagster metadata (`MetadataValue.url`, markdown links).

The UI's base URL comes from one environment variable, MLFLOW_UI_URL, read here only. Without it:
the tracking server's own URL when tracking goes to an `http(s)://` server (it serves the UI too),
else `make mlflow-ui`'s address, http://127.0.0.1:5000. Passwords never appear in a link.
"""

from __future__ import annotations

import os
import urllib.parse

from stock_assets.lib.redaction import mask_secrets

MLFLOW_UI_URL_ENV = "MLFLOW_UI_URL"
DEFAULT_MLFLOW_UI_URL = "http://127.0.0.1:5000"  # `make mlflow-ui`
KINDS = ("run", "model_version", "artifact", "experiment", "model")
# MLflow 3.17's UI picks its view from the `workflowType` URL parameter, else from the browser's
# local storage, defaulting to the GenAI view (the experiment's mlflow.experimentKind tag does not
# choose it): experiment and run links ask for the model-training view.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def mlflow_ui_base(tracking_uri: str | None = None) -> str:
    """The MLflow UI's base URL (no trailing slash)."""
    explicit = os.environ.get(MLFLOW_UI_URL_ENV, "").strip()
    if explicit:
        return explicit.rstrip("/")
    if tracking_uri and tracking_uri.startswith(("http://", "https://")):
        parts = urllib.parse.urlsplit(tracking_uri)
        host = parts.hostname or ""
        netloc = host + (f":{parts.port}" if parts.port else "")  # no user, no password
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return DEFAULT_MLFLOW_UI_URL


def mlflow_ui_url(
    kind: str,
    id: str,
    *,
    experiment_id: str | None = None,
    model_name: str | None = None,
    path: str | None = None,
    tracking_uri: str | None = None,
) -> str:
    """A clickable URL in the MLflow UI.

    kind "run": `id` is the run id (`experiment_id` required: the UI's run page lives under it);
    "model_version": `id` is the version of `model_name`; "model": `id` is the registered model's
    name; "experiment": `id` is the experiment id; "artifact": `id` is the run id and `path` the
    artifact's path in it (served as the file itself, e.g. a PNG an <img> can show)."""
    base = mlflow_ui_base(tracking_uri)
    quote = urllib.parse.quote
    if kind == "run":
        if not experiment_id:
            raise ValueError("mlflow_ui_url('run', ...) needs experiment_id")
        url = f"{base}/#/experiments/{quote(str(experiment_id))}/runs/{quote(str(id))}?{MODEL_TRAINING_VIEW}"
    elif kind == "model_version":
        if not model_name:
            raise ValueError("mlflow_ui_url('model_version', ...) needs model_name")
        url = f"{base}/#/models/{quote(model_name)}/versions/{quote(str(id))}"
    elif kind == "model":
        url = f"{base}/#/models/{quote(str(id))}"
    elif kind == "experiment":
        url = f"{base}/#/experiments/{quote(str(id))}?{MODEL_TRAINING_VIEW}"
    elif kind == "artifact":
        if not path:
            raise ValueError("mlflow_ui_url('artifact', ...) needs path")
        url = f"{base}/get-artifact?" + urllib.parse.urlencode({"path": path, "run_uuid": id})
    else:
        raise ValueError(f"unknown MLflow link kind {kind!r}; one of {KINDS}")
    return mask_secrets(url)
