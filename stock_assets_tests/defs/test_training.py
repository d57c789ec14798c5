"""Retraining end to end on the real stack: Dagster instance, MLflow (SQLite + local artifacts),
Optuna (SQLite), torch. Tiny budgets from conftest."""

import json

import pytest
from dagster import AssetKey

from stock_assets.definitions import build_definitions
from stock_assets.resources.promotion_policy import PromotionPolicyResource

D1 = "2006-02-22"
D2 = "2006-03-22"
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def retrain(defs, instance, partition, resources=None, selection=None):
    job = defs.resolve_job_def("retraining_job")
    return job.execute_in_process(
        instance=instance, partition_key=partition, run_config=QUIET, raise_on_error=False,
        resources=resources, asset_selection=selection,
    )  # fmt: skip


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
def test_retraining_promotes_the_first_candidate_and_tracks_everything(defs, registry, instance, history):
    result = retrain(defs, instance, D1)
    assert result.success, [e.description for e in result.get_asset_check_evaluations()]
    assert materialized(result) == {"scalers", "scaled_sets", "best_params", "candidate_model", "production_model"}
    check = gate(result)
    assert check.passed and "no champion yet" in check.description
    assert check.metadata["partition"].value == D1 and check.metadata["candidate_version"].value == "1"
    assert registry.alias("champion").version == "1" and registry.alias("challenger").version == "1"
    assert registry.champion_as_of(D1).version == "1"
    assert registry.champion_as_of("2006-02-21") is None  # never a model trained later

    client = registry.client()
    (run,) = client.search_runs([registry.experiment_id()], filter_string=f"tags.dagster_run_id = '{result.run_id}'")
    assert run.info.status == "FINISHED"
    assert run.data.tags["dagster_partition"] == D1
    assert {"holdout_mae", "holdout_mape", "holdout_directional_accuracy", "persistence_mae", "best_epoch"} <= set(run.data.metrics)
    assert run.data.params["trained_through"] == D1
    history_metrics = client.get_metric_history(run.info.run_id, "val_loss")
    assert 1 <= len(history_metrics) <= 3  # per-epoch validation loss, at most max_epochs
    trials = client.search_runs([registry.experiment_id()], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'")
    assert len(trials) == 3 and {t.data.tags["optuna_state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    every_run = client.search_runs([registry.experiment_id()])
    assert not [r for r in every_run if r.info.status == "RUNNING"]

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"preprocessing.json", "loss_curve.png"} <= artifacts
    preprocessing = json.loads(open(client.download_artifacts(run.info.run_id, "preprocessing.json")).read())
    assert preprocessing["tickers"] == ["AAPL", "MSFT", "IBM", "GOOG"]
    assert preprocessing["trained_through"] == D1 and preprocessing["sequence_length"] in (5, 10)

    # The registered model loads with pickle deserialization disabled (conftest sets it) and predicts.
    import numpy as np

    model, pre = registry.load(registry.alias("champion"))
    x = np.zeros((3, pre["sequence_length"], 4, len(pre["feature_columns"])), dtype="float32")
    import torch

    assert tuple(model(torch.from_numpy(x)).shape) == (3, 4)

    best = defs.resources["object_io_manager"].read("best_params", D1)
    assert best["summary"]["n_trials"] == 3 and best["summary"]["n_complete"] >= 1
    sets = defs.resources["object_io_manager"].read("scaled_sets", D1)
    assert str(sets["dates"][-1]) == D1 and len(sets["dates"]) == 150
    assert sets["train"].max() + 10 < sets["validation"].min()  # embargo of the longest sequence


@pytest.mark.slow
def test_gate_rejects_a_candidate_that_does_not_beat_the_champion(defs, registry, instance):
    assert retrain(defs, instance, D1).success
    # The same seeds on the same data give the same model: not strictly better, so no promotion.
    again = retrain(defs, instance, D1)
    assert not again.success
    check = gate(again)
    assert not check.passed
    assert "is not below champion MAE" in check.description
    assert f"candidate MAE {check.metadata['candidate_mae'].value:.4f}" in check.description
    assert f"champion MAE {check.metadata['champion_mae'].value:.4f}" in check.description
    assert "production_model" not in materialized(again)
    assert registry.alias("champion").version == "1"
    assert registry.alias("challenger").version == "2"

    # A later run that selects only production_model cannot bypass the failed gate.
    later = retrain(defs, instance, D1, selection=[AssetKey("production_model")])
    assert not later.success
    failure = str(later.get_step_failure_events()[0].event_specific_data.error)
    assert "promotion refused" in failure and "did not pass for candidate v2" in failure
    assert registry.alias("champion").version == "1"


@pytest.mark.slow
def test_gate_enforces_the_skill_bound_against_persistence(defs, registry, instance, resources):
    strict = {**resources, "promotion_policy": PromotionPolicyResource(max_mae_ratio_to_persistence=0.5)}
    result = retrain(defs, instance, D1, resources=strict)
    assert not result.success
    check = gate(result)
    assert "exceeds 0.5 x persistence MAE" in check.description
    assert registry.alias("champion") is None and registry.champion_as_of(D1) is None


@pytest.mark.slow
def test_champion_as_of_any_date_across_two_promotions(defs, registry, instance):
    assert retrain(defs, instance, D1).success
    second = retrain(defs, instance, D2)  # registers v2; promote it even if the gate kept v1
    if "production_model" not in materialized(second):
        registry.promote("2", D2, "test-run")
    assert registry.champion_as_of("2006-02-21") is None
    assert registry.champion_as_of(D1).version == "1"
    assert registry.champion_as_of("2006-03-21").version == "1"
    assert registry.champion_as_of(D2).version == "2"
    assert registry.champion_as_of("2013-01-02").version == "2"
    assert [(p["version"], p["partition"]) for p in registry.promotions()] == [("1", D1), ("2", D2)]
