"""Loading a registered model without MLflow's loader and without ever unpickling
(docs/decisions.md, "Never unpickle"): the artifacts must be exactly what the registry's
`log_model` / `log_baseline` wrote, and every failure names the version and the way out."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import stock_assets.resources.baseline_flavor as baseline_flavor
from stock_assets.lib.contracts import ModelRef, Preprocessing
from stock_assets.lib.forecasters import BaselineForecaster
from stock_assets.resources.pt2_archive import Pt2ArchiveError, check_pickle_free

PREPROCESSING_FILE = "preprocessing.json"
# What `mlflow.pytorch.log_model(serialization_format="pt2")` writes under the model's artifacts:
# the MLmodel file and data/model.pt2. Anything else in data/ was not written by this project.
MLMODEL_FILE = "MLmodel"
PROGRAM_FILE = "model.pt2"


class ModelArtifactError(RuntimeError):
    """A registered model's artifacts are missing, corrupt or not a pickle-free pt2 program; the
    message names the model name and version and what to run instead."""


def load_forecaster(registry, ref: ModelRef):
    """The forecaster `models:/<name>/<version>` alone holds: a `BaselineForecaster` (plain numbers,
    numpy only) or a `NetworkForecaster` (the exported pt2 program and its `Preprocessing`);
    never unpickles.

    MLflow's loader is not used: it unpickles a `model.pth` found beside the program, or skips
    its pickle check on the program, whenever MLFLOW_ALLOW_PICKLE_DESERIALIZATION is true. Here
    the artifacts must be exactly what `log_model` wrote, the archive is checked pickle-free
    (`pt2_archive.check_pickle_free`, always run) and only then read by `torch.export.load`,
    which would otherwise unpickle the weights and sample inputs it holds."""
    from mlflow.exceptions import MlflowException

    mlflow = registry.configured_mlflow()
    try:
        root = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri))
    except (MlflowException, OSError) as exc:
        moved = _moved_artifact_root(registry)
        if moved:
            raise ModelArtifactError(f"model {ref.name} version {ref.version} cannot be read: {moved}") from None
        raise artifact_error(registry, ref, f"its artifacts cannot be read ({short(exc)})") from None
    baseline = _baseline(registry, ref, root)
    if baseline is not None:
        return baseline
    program, preprocessing_path = _model_files(registry, ref, root)
    try:
        check_pickle_free(program)
    except Pt2ArchiveError as exc:
        raise artifact_error(registry, ref, f"data/{PROGRAM_FILE} is corrupt ({exc})") from None
    import torch

    try:
        if preprocessing_path is None:  # logged by an earlier release: a run artifact beside the model
            preprocessing_path = registry.client().download_artifacts(ref.run_id, PREPROCESSING_FILE)
        preprocessing = Preprocessing.from_dict(json.loads(Path(preprocessing_path).read_text()))
        model = torch.export.load(str(program)).module()
    except Exception as exc:  # torch raises many kinds on a damaged archive
        raise artifact_error(registry, ref, f"its artifacts are corrupt ({short(exc)})") from None
    if problems := preprocessing.problems():  # validated before anything is served from them
        raise artifact_error(registry, ref, f"its {PREPROCESSING_FILE} is invalid: {'; '.join(problems)}")
    from stock_assets.lib.network_forecaster import NetworkForecaster

    return NetworkForecaster(model, preprocessing)


def _moved_artifact_root(registry) -> str | None:
    """Why artifacts cannot be found when the home was moved: the embedded store keeps the
    absolute artifact location it was created with (None when that location exists)."""
    from mlflow.exceptions import MlflowException

    try:
        location = registry.client().get_experiment(registry.experiment_id()).artifact_location
    except MlflowException:
        return None
    path = Path(location.removeprefix("file://")) if "://" not in location or location.startswith("file:") else None
    if path is None or path.exists():
        return None
    return (
        f"the MLflow artifact store recorded in the tracking store is {path}, which does not exist: the home "
        "was probably moved or copied from there. Move it back (or symlink that path to the new home's "
        "mlartifacts), or start afresh with `make clean` and rerun the demo/backfill and retraining_job."
    )


def _baseline(registry, ref: ModelRef, root: Path) -> BaselineForecaster | None:
    """The baseline forecaster under `root`, or None when the model is not of the baseline flavor."""
    import yaml

    try:
        flavors = yaml.safe_load((root / MLMODEL_FILE).read_text())["flavors"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise artifact_error(
            registry, ref, f"its {MLMODEL_FILE} file is missing or unreadable ({short(exc)})"
        ) from None
    if baseline_flavor.FLAVOR_NAME not in flavors:
        return None
    try:
        data = json.loads((root / flavors[baseline_flavor.FLAVOR_NAME]["data"]).read_text())
        return BaselineForecaster.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise artifact_error(
            registry, ref, f"its {baseline_flavor.FORECASTER_FILE} is corrupt ({short(exc)})"
        ) from None


def _model_files(registry, ref: ModelRef, root: Path) -> tuple[Path, Path | None]:
    """(data/model.pt2, the preprocessing file or None) under the model's artifacts, after
    checking the layout `log_model` writes."""
    import yaml

    try:
        flavor = yaml.safe_load((root / MLMODEL_FILE).read_text())["flavors"]["pytorch"]
        data = root / flavor["model_data"]
        extras = [root / entry["path"] for entry in flavor.get("extra_files", [])]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise artifact_error(
            registry, ref, f"its {MLMODEL_FILE} file is missing or unreadable ({short(exc)})"
        ) from None
    program = data / PROGRAM_FILE
    if not program.is_file():
        raise artifact_error(registry, ref, f"its program {data.name}/{PROGRAM_FILE} is missing")
    stray = sorted(str(p.relative_to(root)) for p in data.rglob("*") if p.is_file() and p != program)
    if stray:
        raise artifact_error(
            registry,
            ref,
            f"its artifacts hold files this project never writes ({', '.join(stray)}); refused, the artifact "
            "store may have been tampered with",
        )
    preprocessing = next((p for p in extras if p.name == PREPROCESSING_FILE), None)
    if preprocessing is not None and not preprocessing.is_file():
        raise artifact_error(registry, ref, f"its {PREPROCESSING_FILE} is missing")
    return program, preprocessing


def artifact_error(registry, ref: ModelRef, problem: str) -> ModelArtifactError:
    """Names the model name and version and the two ways out: re-promote or retrain."""
    trained_for, earlier = None, []
    with contextlib.suppress(Exception):  # best effort: the registry may be what is broken
        tags = registry.client().get_model_version(ref.name, ref.version).tags or {}
        trained_for = tags.get("trained_for_partition") or trained_for
        promoted = [h for h in registry.promotions() if h.version != ref.version]
        until = ref.partition or trained_for
        earlier = [h.version for h in promoted if until is None or h.partition <= until]
    partition = ref.partition or trained_for or "<partition>"
    shown = list(dict.fromkeys(reversed(earlier)))[:3]  # the latest first, each version once
    candidates = f" (earlier champions: {', '.join('v' + v for v in shown)})" if shown else ""
    return ModelArtifactError(
        f"model {ref.name} version {ref.version} (run {ref.run_id}"
        + (f", trained for {trained_for}" if trained_for else "")
        + f"): {problem}. It cannot be served or scored. Fix: re-promote an earlier version{candidates} for "
        f"{partition} (ModelRegistryResource.promote(<version>, '{partition}', <note>)), or retrain: launch "
        f"retraining_job for partition {trained_for or partition}."
    )


def short(exc: BaseException, limit: int = 200) -> str:
    """The error for a message; library texts that advise enabling pickle are left out."""
    text = f"{type(exc).__name__}: {exc}"
    if re.search(r"pickle|weights_only", text, re.IGNORECASE):
        return type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
