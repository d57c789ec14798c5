"""Retraining end to end on the real stack: Dagster instance, MLflow (SQLite + local artifacts),
Optuna (SQLite), torch. Tiny budgets from conftest."""

import json
from pathlib import Path

import pytest
from dagster import AssetKey

from stock_assets.defs import build_definitions
from stock_assets.run_config import QUIET

D1 = "2006-02-22"
D2 = "2006-03-22"


def retrain(defs, instance, partition, resources=None, selection=None):
    job = defs.resolve_job_def("retraining_job")
    return job.execute_in_process(
        instance=instance,
        partition_key=partition,
        run_config=QUIET,
        raise_on_error=False,
        resources=resources,
        asset_selection=selection,
    )


@pytest.fixture
def defs(history):
    return build_definitions(history)


@pytest.fixture
def registry(defs):
    return defs.resources["model_registry"]


def gate(result):
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == "promotion_gate")


def materialized(result):
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.mark.slow
def test_retraining_tracks_everything_and_the_gate_judges_the_first_candidate(defs, registry, instance, history):
    result = retrain(defs, instance, D1)
    assert result.success  # a rejection by the gate is an outcome, not a failure
    check = gate(result)
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["partition"] == D1 and meta["candidate_version"] == "1" and meta["champion"] == "none yet"
    assert check.partition == D1  # partitioned like candidate_model: the UI shows the session
    assert {"candidate_pinball", "champion_pinball", "baseline_pinball", "candidate_mae", "persistence_mae"} <= set(
        meta
    )
    assert {"dm_statistic", "p_value", "point_p_value", "n_sessions", "baseline"} <= set(meta)
    assert meta["fallback_kind"] in ("persistence", "garch")
    assert 0.0 <= meta["p_value"] <= 1.0 and meta["n_sessions"] >= 15
    expected = {"scalers", "scaled_sets", "best_params", "candidate_model"}
    assert materialized(result) == expected | ({"production_model"} if check.passed else set())
    assert check.description.startswith("promoted" if check.passed else "rejected")
    # The verdict is on the version and its MLflow run; `challenger` names only an undecided or passed candidate.
    verdict = "promoted" if check.passed else "rejected"
    version = registry.client().get_model_version("stock_lstm", "1")
    assert version.tags["gate_verdict"] == verdict and version.tags["gate_partition"] == D1
    assert version.tags["gate_reason"] == check.description
    assert registry.client().get_run(version.run_id).data.tags["gate_verdict"] == verdict
    assert float(version.tags["gate_p_value"]) == pytest.approx(meta["p_value"], rel=1e-3)
    challenger = registry.alias("challenger")
    assert (challenger.version == "1") if check.passed else challenger is None
    assert (registry.alias("champion") is not None) == check.passed
    decision = instance.get_run_by_id(result.run_id).tags["stock_assets/decision"]
    assert decision == ("promoted" if check.passed else "rejected")

    client = registry.client()
    (run,) = client.search_runs([registry.experiment_id()], filter_string=f"tags.dagster_run_id = '{result.run_id}'")
    assert run.info.status == "FINISHED"
    assert run.data.tags["dagster_partition"] == D1
    metrics = set(run.data.metrics)
    assert {"holdout_mae", "persistence_mae", "best_epoch", "val_loss", "shrinkage"} <= metrics
    assert "persistence_directional_accuracy" not in metrics  # a flat forecast has no direction
    assert 0.0 <= run.data.metrics["shrinkage"] <= 1.0
    epochs = client.get_metric_history(run.info.run_id, "epoch_val_loss")
    assert 1 <= len(epochs) <= 3
    assert run.data.metrics["val_loss"] == min(m.value for m in epochs)  # the restored best epoch's loss
    parent = f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    trials = client.search_runs([registry.experiment_id()], filter_string=parent)
    assert len(trials) == 3 and {t.data.tags["optuna_state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    assert not [r for r in client.search_runs([registry.experiment_id()]) if r.info.status == "RUNNING"]

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "loss_curve.png" in artifacts and "preprocessing.json" not in artifacts  # it lives with the model
    import mlflow

    challenger = defs.resources["object_io_manager"].read("candidate_model", D1).ref
    model_files = Path(mlflow.artifacts.download_artifacts(artifact_uri=challenger.uri))
    preprocessing = json.loads((model_files / "extra_files" / "preprocessing.json").read_text())
    assert preprocessing["tickers"] == ["AAPL", "MSFT", "IBM", "GOOG"]
    assert preprocessing["trained_through"] == D1 and preprocessing["sequence_length"] in (5, 10)
    assert preprocessing["shrinkage"] == pytest.approx(run.data.metrics["shrinkage"])
    # The holdout scores are logged against the model itself, not only the run.
    source = client.get_model_version("stock_lstm", challenger.version).source  # models:/<model id>
    logged = mlflow.get_logged_model(source.rsplit("/", 1)[-1])
    assert {m.key for m in logged.metrics} >= {"holdout_mae", "persistence_mae"}

    # The registered model loads with pickle deserialization disabled (conftest sets it) and predicts.
    import numpy as np
    import torch

    forecaster = registry.load(challenger)
    pre = forecaster.preprocessing
    x = np.zeros((3, pre.sequence_length, 4, len(pre.feature_columns)), dtype="float32")
    assert tuple(forecaster.program(torch.from_numpy(x)).shape) == (3, 4, 5)  # (batch, tickers, levels)
    assert pre.levels == (0.05, 0.25, 0.5, 0.75, 0.95)
    candidate = defs.resources["object_io_manager"].read("candidate_model", D1)
    assert candidate.holdout["pinball"] > 0 and candidate.persistence["pinball"] > 0  # the baseline's, same rows

    best = defs.resources["object_io_manager"].read("best_params", D1)
    assert best["summary"]["n_trials"] == 3 and best["summary"]["n_complete"] >= 1
    sets = defs.resources["object_io_manager"].read("scaled_sets", D1)
    assert str(sets["dates"][-1]) == D1 and len(sets["dates"]) == 150
    assert sets["train"].max() + 10 < sets["validation"].min()  # embargo of the longest sequence


@pytest.mark.slow
def test_a_rejection_leaves_the_champion_and_cannot_be_bypassed(defs, registry, instance):
    assert retrain(defs, instance, D1).success
    registry.promote("1", D1, "test")  # make v1 the champion whatever the gate said
    # The same seeds on the same data give the same model: no improvement, so no promotion.
    again = retrain(defs, instance, D1)
    assert again.success
    check = gate(again)
    assert not check.passed and "rejected" in check.description
    assert "pinball not below the champion's" in check.description
    assert f"p={check.metadata['p_value'].value:.3f}" in check.description
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["champion_pinball"] == pytest.approx(meta["candidate_pinball"])
    if meta["champion_pinball"] > meta["baseline_pinball"]:  # v1 lost to the baseline: the baseline serves
        assert meta["fallback_to_persistence"] and "the baseline takes over" in check.description
        assert "production_model" in materialized(again)
        kind = meta["fallback_kind"]
        assert registry.alias("champion").kind == kind and registry.champion_as_of(D1).kind == kind
        return
    assert not meta["fallback_to_persistence"] and "production_model" not in materialized(again)
    assert registry.alias("champion").version == "1"
    assert registry.client().get_model_version("stock_lstm", "2").tags["gate_verdict"] == "rejected"
    challenger = registry.alias("challenger")  # never the rejected v2: v1 if it passed its own gate, else none
    assert challenger is None or challenger.version == "1"
    # A decision, not a failure: the run's tag and an explained skip on production_model.
    assert instance.get_run_by_id(again.run_id).tags["stock_assets/decision"] == "rejected"
    (observation,) = [
        e.asset_observation_data.asset_observation
        for e in again.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.asset_key == AssetKey("production_model") and observation.partition == D1
    assert observation.metadata["summary"].value.startswith(f"decision for {D1}: candidate v2 rejected, champion v1")

    # A later run that selects only production_model cannot promote the rejected candidate.
    later = retrain(defs, instance, D1, selection=[AssetKey("production_model")])
    assert later.success and "production_model" not in materialized(later)
    assert registry.alias("champion").version == "1" and registry.champion_as_of(D1).version == "1"


@pytest.mark.slow
def test_champion_as_of_any_date_across_two_promotions(defs, registry, instance):
    assert retrain(defs, instance, D1).success
    registry.promote("1", D1, "test-run")
    assert retrain(defs, instance, D2).success  # the gate may promote, keep v1 or let persistence take over
    candidate = defs.resources["object_io_manager"].read("candidate_model", D2).version
    registry.promote(candidate, D2, "test-run")  # the latest promotion for a partition wins
    assert registry.champion_as_of("2006-02-21") is None
    assert registry.champion_as_of(D1).version == "1"
    assert registry.champion_as_of("2006-03-21").version == "1"
    assert registry.champion_as_of(D2).version == candidate
    assert registry.champion_as_of("2013-01-02").version == candidate
    history = [(p.version, p.partition) for p in registry.promotions()]
    assert history[0] == ("1", D1) and history[-1] == (candidate, D2)
    assert {partition for _, partition in history[1:]} == {D2}


@pytest.mark.slow
def test_a_champion_worse_than_persistence_is_replaced_even_when_the_candidate_is_rejected(defs, registry, instance):
    from stock_assets.replay import DRILL_KIND, install_drill_champion

    drill = install_drill_champion(defs, D1, bias=0.05)  # every forecast +5%: far worse than persistence
    result = retrain(defs, instance, D1)
    assert result.success
    check = gate(result)
    meta = {k: v.value for k, v in check.metadata.items()}
    assert meta["champion"].startswith(f"{drill.label}, promoted for {D1}")
    assert meta["champion_pinball"] > 1.5 * meta["baseline_pinball"]
    assert "production_model" in materialized(result)
    champion = registry.champion_as_of(D1)
    assert champion.kind != DRILL_KIND and registry.alias("champion").version == champion.version
    if check.passed:  # the candidate beat both significantly: it serves
        assert champion.version == meta["candidate_version"]
    else:
        assert meta["fallback_to_persistence"] and champion.kind == meta["fallback_kind"]
        assert "the baseline takes over" in check.description
