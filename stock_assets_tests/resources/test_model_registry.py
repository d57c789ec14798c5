"""`ModelRegistryResource.load` on a real MLflow store (SQLite + local artifacts): it loads the pt2
program it logged, never unpickles whatever MLFLOW_ALLOW_PICKLE_DESERIALIZATION says, and a
missing or corrupt artifact is an error naming the model, the version and what to run."""

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from stock_assets.resources.model_registry import ModelArtifactError, ModelRef

TICKERS = ["AAPL", "MSFT"]
FIRST, SECOND = "2010-01-04", "2010-02-01"


class Plant:
    """A malicious pickle: unpickling it creates `marker` (any code could run instead)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)
FEATURES = ["a", "b", "c"]


def constant_program(log_returns):
    """A tiny network-like program: the same quantiles (median `log_returns`, +-1%, +-2%) whatever the window."""
    import torch
    from torch import nn

    class ConstantQuantiles(nn.Module):
        def __init__(self):
            super().__init__()
            offsets = torch.tensor([-0.02, -0.01, 0.0, 0.01, 0.02])
            self.register_buffer("q", torch.tensor(log_returns, dtype=torch.float32)[:, None] + offsets)

        def forward(self, x):
            return torch.zeros_like(x[:, -1, :, :1]) + self.q  # (batch, tickers, levels)

    return ConstantQuantiles()


def log_constant(registry, log_returns, partition: str) -> ModelRef:
    """Log and register a network program the way every LSTM is logged, and promote it."""
    from stock_assets.lib.contracts import Preprocessing

    identity = Preprocessing.identity("lstm", TICKERS, FEATURES, partition)
    pre = Preprocessing(**{**identity.__dict__, "levels": LEVELS})
    example = np.zeros((2, 1, len(TICKERS), len(FEATURES)), dtype=np.float32)
    run_id = f"run-{partition}"
    with registry.mlflow_run_for(run_id, partition, "test"):
        ref = registry.log_model(constant_program(log_returns), pre, example, partition, run_id)
    registry.promote(ref.version, partition, run_id)
    return registry.champion_as_of(partition)


@pytest.fixture
def registry(resources):
    return resources["model_registry"]


@pytest.fixture
def champion(registry) -> ModelRef:
    """v1 promoted for FIRST, v2 (the one the tests break) for SECOND."""
    log_constant(registry, [0.001, -0.002], FIRST)
    return log_constant(registry, [0.003, 0.004], SECOND)


def model_dir(registry, ref: ModelRef) -> Path:
    """The model's artifact folder as MLflow wrote it (MLmodel, data/model.pt2, ...)."""
    import mlflow

    registry.configured_mlflow()
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri))


def test_loads_the_exported_program_and_its_preprocessing(registry, champion):
    import torch

    assert (champion.version, champion.partition) == ("2", SECOND)
    root = model_dir(registry, champion)
    assert sorted(str(p.relative_to(root)) for p in (root / "data").rglob("*")) == ["data/model.pt2"]
    forecaster = registry.load(champion)
    pre = forecaster.preprocessing
    out = forecaster.program(torch.zeros((3, 1, len(TICKERS), len(pre.feature_columns))))
    assert out.shape == (3, 2, 5) and np.allclose(out.numpy()[:, :, 2], [0.003, 0.004])
    quantiles = forecaster.forecast(np.zeros((4, 2, 3)), None, [-1])
    assert quantiles.shape == (1, 2, 5) and np.allclose(quantiles[0, :, 2], [0.003, 0.004])
    assert list(pre.tickers) == TICKERS and pre.trained_through == SECOND


def test_a_planted_pickle_never_runs_even_when_mlflow_would_allow_it(registry, champion, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    marker = tmp_path / "pwned"
    data = model_dir(registry, champion) / "data"
    # Where MLflow's pickle loader looks: a model.pth (and its pickle module) beside the program.
    (data / "model.pth").write_bytes(pickle.dumps(Plant(marker)))
    (data / "pickle_module_info.txt").write_text("pickle")

    with pytest.raises(ModelArtifactError) as caught:
        registry.load(champion)
    assert not marker.exists()
    message = str(caught.value)
    assert "model stock_lstm version 2" in message and "data/model.pth" in message and "tampered with" in message

    # The threat is real: MLflow's own loader, with the variable set, runs the planted code.
    import mlflow.pytorch

    with pytest.raises(Exception):  # noqa: B017 - it fails after unpickling: not a torch checkpoint
        mlflow.pytorch.load_model(champion.uri)
    assert marker.exists()


def test_a_pickle_inside_the_program_archive_never_runs(registry, champion, tmp_path, monkeypatch):
    """torch.export.load unpickles the archive's weights and sample inputs: the archive is checked first."""
    import torch

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    marker = tmp_path / "pwned"
    program = model_dir(registry, champion) / "data" / "model.pt2"
    with zipfile.ZipFile(program) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    (sample,) = [name for name in records if name.endswith("sample_inputs/model.pt")]
    records[sample] = pickle.dumps(Plant(marker))
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, content in records.items():
            archive.writestr(name, content)
    program.write_bytes(tampered.read_bytes())

    with pytest.raises(ModelArtifactError, match=r"model stock_lstm version 2 .*data/model\.pt2 is corrupt"):
        registry.load(champion)
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - the control: torch alone runs the payload
        torch.export.load(str(tampered))
    assert marker.exists()


def broken_message(registry, ref: ModelRef) -> str:
    with pytest.raises(ModelArtifactError) as caught:
        registry.load(ref)
    return str(caught.value)


def assert_names_the_fix(message: str) -> None:
    assert "model stock_lstm version 2" in message and f"trained for {SECOND}" in message
    assert f"re-promote an earlier version (earlier champions: v1) for {SECOND}" in message
    assert f"launch retraining_job for partition {SECOND}" in message
    assert "PICKLE" not in message.upper().replace("PICKLE-FREE", "")  # never suggests enabling pickle


def tamper(root: Path, shrinkage=None, scaler_std=None) -> None:
    """Edit the model's preprocessing.json the way an attacker or a bad disk would."""
    path = root / "extra_files" / "preprocessing.json"
    data = json.loads(path.read_text())
    if shrinkage is not None:
        data["shrinkage"] = shrinkage  # json writes Infinity
    if scaler_std is not None:
        data["scaler"]["std"][0][0] = scaler_std
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage, problem",
    [
        (lambda root: (root / "data" / "model.pt2").unlink(), "its program data/model.pt2 is missing"),
        (lambda root: (root / "data" / "model.pt2").write_bytes(b"not a zip archive"), "data/model.pt2 is corrupt"),
        (
            lambda root: (root / "data" / "model.pt2").write_bytes((root / "data" / "model.pt2").read_bytes()[:500]),
            "data/model.pt2 is corrupt",
        ),
        (lambda root: (root / "MLmodel").unlink(), "its MLmodel file is missing or unreadable"),
        (lambda root: tamper(root, shrinkage=float("inf")), "is invalid: shrinkage inf is not a number in [0, 1]"),
        (lambda root: tamper(root, scaler_std=0.0), "is invalid: scaler std has a non-positive value"),
    ],
    ids=["program deleted", "program overwritten", "program truncated", "MLmodel deleted", "shrinkage", "scaler"],
)
def test_a_missing_or_corrupt_champion_names_the_version_and_the_fix(registry, champion, damage, problem):
    damage(model_dir(registry, champion))
    message = broken_message(registry, champion)
    assert problem in message
    assert_names_the_fix(message)


def test_deleted_artifacts_name_the_version_and_the_fix(registry, champion):
    import shutil

    shutil.rmtree(model_dir(registry, champion))
    message = broken_message(registry, champion)
    assert "its artifacts cannot be read" in message
    assert_names_the_fix(message)


def test_the_earlier_version_still_loads(registry, champion):
    (model_dir(registry, champion) / "data" / "model.pt2").unlink()
    assert registry.load(registry.champion_as_of(FIRST)).preprocessing.trained_through == FIRST


@pytest.mark.parametrize(
    "uri, shown",
    [
        ("http://ops:s3cr3t@mlflow:5000", "http://ops:***@mlflow:5000"),
        ("postgresql+psycopg2://app:s3cr3t@db/mlflow", "postgresql+psycopg2://app:***@db/mlflow"),
        ("http://mlflow:5000", "http://mlflow:5000"),
        ("sqlite:////tmp/home/mlflow.db", "sqlite:////tmp/home/mlflow.db"),
    ],
)
def test_tracking_uris_in_messages_and_metadata_hide_passwords(uri, shown):
    from stock_assets.resources.model_registry import masked_uri

    assert masked_uri(uri) == shown


def test_the_experiment_opens_in_the_model_training_view_and_registration_is_quiet(registry, capfd):
    ref = log_constant(registry, [0.0, 0.0], FIRST)
    assert ref.version == "1"
    experiment = registry.client().get_experiment(registry.experiment_id())
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "Successfully registered" not in capfd.readouterr().err


def test_promotions_are_append_only_tags_and_legacy_histories_are_still_read(registry, champion):
    """Each promotion is its own version tag: a second promotion never rewrites the first (no
    read-modify-write), and a home made by an earlier release (one JSON list tag) keeps its history."""
    registry.promote("1", "2010-03-01", "run-a")
    registry.promote("1", "2010-03-01", "run-b")  # a re-run for the same session: both are recorded
    client = registry.client()
    tags = client.get_model_version("stock_lstm", "1").tags
    assert sorted(k for k in tags if k.startswith("promotion/")) == [
        "promotion/2010-01-04/run-2010-01-04",
        "promotion/2010-03-01/run-a",
        "promotion/2010-03-01/run-b",
    ]
    legacy = [{"partition": "2009-12-01", "promoted_at": "2009-12-01T23:00:00+00:00", "dagster_run_id": "old"}]
    client.set_model_version_tag("stock_lstm", "2", "promotion_history", json.dumps(legacy))
    history = [(p.version, p.partition, p.dagster_run_id) for p in registry.promotions()]
    assert history == [
        ("2", "2009-12-01", "old"),
        ("1", "2010-01-04", "run-2010-01-04"),
        ("2", "2010-02-01", "run-2010-02-01"),
        ("1", "2010-03-01", "run-a"),
        ("1", "2010-03-01", "run-b"),
    ]
    assert registry.champion_as_of("2010-03-02").version == "1" and registry.alias("champion").version == "1"


def test_a_logged_model_alone_serves(registry, champion):
    """`models:/<name>/<version>` holds the preprocessing: nothing is read from the run's artifacts."""
    root = model_dir(registry, champion)
    assert (root / "extra_files" / "preprocessing.json").is_file()
    assert "preprocessing.json" not in {a.path for a in registry.client().list_artifacts(champion.run_id)}
    requirements = (root / "requirements.txt").read_text()
    assert "torch==2.13.0" in requirements and "numpy==" in requirements


def test_a_baseline_is_a_registered_model_of_plain_numbers_served_without_torch(registry, tmp_path):
    """Baselines use the `stock_assets_baseline` flavor: JSON numbers, no pickle, and loading and
    forecasting them imports neither torch nor the training stack."""
    import subprocess
    import sys

    from stock_assets.defs.champions import register_baseline
    from stock_assets.lib.forecasters import gaussian_baseline

    baseline = gaussian_baseline("persistence", [0.0, 0.0], TICKERS, LEVELS, 0.94, FIRST)
    with registry.mlflow_run_for("run-b", FIRST, "test"):
        ref = register_baseline(registry, baseline, FIRST, "run-b")
    root = model_dir(registry, ref)
    assert {"MLmodel", "forecaster.json"} <= {p.name for p in root.iterdir()} and not (root / "data").exists()
    assert registry.load(ref) == baseline
    code = (
        "import sys, numpy as np; from stock_assets.resources.model_registry import ModelRegistryResource; "
        "from stock_assets.lib.contracts import ModelRef; "
        f"r = ModelRegistryResource(tracking_uri={registry.resolved_tracking_uri()!r}); "
        f"f = r.load(ModelRef('stock_lstm', {ref.version!r}, {ref.run_id!r})); "
        "q = f.forecast(None, 100 * np.exp(np.cumsum(np.full((60, 2), 0.01), axis=0)), [-1]); "
        "print(q.shape, sorted(m for m in ('torch', 'optuna', 'arch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.strip() == "(1, 2, 5) []"


def test_a_garch_baseline_round_trips_through_the_registry_as_plain_numbers(registry):
    """Fitted at retraining with `arch`, registered, loaded back and served by the numpy recursion:
    the same quantiles, nothing pickled."""
    from stock_assets.defs.champions import register_baseline
    from stock_assets.lib.forecasters import GARCH, fit_baseline

    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.standard_t(6, size=(600, 2)) * 0.01, axis=0))
    garch = fit_baseline(GARCH, close, TICKERS, LEVELS, 0.94, FIRST)
    assert len(garch.garch) == 2 and all(0 < p["alpha"] + p["beta"] < 1 for p in garch.garch)
    with registry.mlflow_run_for("run-g", FIRST, "test"):
        ref = register_baseline(registry, garch, FIRST, "run-g")
    loaded = registry.load(ref)
    assert loaded == garch and ref.kind == "garch"
    q = loaded.forecast(None, close, [-1, -2])
    assert q.shape == (2, 2, 5) and (np.diff(q, axis=-1) > 0).all()
    np.testing.assert_allclose(q, garch.forecast(None, close, [-1, -2]))
    forecaster_file = json.loads((model_dir(registry, ref) / "forecaster.json").read_text())
    assert forecaster_file["kind"] == "garch" and set(forecaster_file["garch"][0]) >= {"omega", "alpha", "beta", "nu"}


def test_a_moved_home_says_so_and_what_to_do(resources, tmp_path):
    """The embedded store keeps absolute artifact paths: a home moved elsewhere is named as such,
    not reported as a missing (tampered-looking) artifact."""
    import shutil

    from stock_assets.defs.champions import register_baseline
    from stock_assets.lib.forecasters import gaussian_baseline
    from stock_assets.resources.model_registry import ModelRegistryResource

    registry = resources["model_registry"]
    with registry.mlflow_run_for("run-m", FIRST, "test"):
        ref = register_baseline(
            registry, gaussian_baseline("persistence", [0.0, 0.0], TICKERS, LEVELS, 0.94, FIRST), FIRST, "run-m"
        )
    home = Path(registry.resolved_tracking_uri().removeprefix("sqlite:///")).parent
    moved = tmp_path / "moved-home"
    shutil.move(str(home), moved)
    elsewhere = ModelRegistryResource(tracking_uri=f"sqlite:///{moved / 'mlflow.db'}")
    with pytest.raises(ModelArtifactError) as error:
        elsewhere.load(ref)
    message = str(error.value)
    assert f"version {ref.version} cannot be read" in message and str(home / "mlartifacts") in message
    assert "the home was probably moved" in message and "make clean" in message


def test_an_mlflow_failure_mid_step_names_the_fix_and_no_password(registry):
    from mlflow.exceptions import MlflowException

    from stock_assets.resources.model_registry import ModelRegistryUnavailableError

    with (
        pytest.raises(ModelRegistryUnavailableError) as error,
        registry.mlflow_run_for("run-x", FIRST, "retraining_job"),
    ):
        raise MlflowException("API request to http://alice:s3cret@mlflow:5000/api/2.0 failed: Connection refused")
    message = str(error.value)
    assert "s3cret" not in message and "failed during the step" in message
    assert f"rerun retraining_job for {FIRST}" in message
    (run,) = registry.client().search_runs([registry.experiment_id()], filter_string="tags.dagster_run_id = 'run-x'")
    assert run.info.status == "FAILED"
    import os

    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"  # no "View run ... at: <url>"
