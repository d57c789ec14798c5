"""`search_workers`: the Optuna search of `best_params` in several worker processes sharing one
study, on the real stack (Dagster instance, MLflow and Optuna on SQLite, torch). Tiny budgets."""

import optuna
import pytest
from dagster import AssetKey, DagsterInvalidConfigError

from stock_assets.defs import build_definitions
from stock_assets.defs.training.config import build_training_configs
from stock_assets.lib.search_workers import WORKER_PID_ATTR
from stock_assets.run_config import QUIET
from stock_assets.settings import TrainingSettings

D1 = "2006-02-22"
SEARCH_ONLY = [AssetKey("scalers"), AssetKey("scaled_sets"), AssetKey("best_params")]


def search(defs, instance, search_config: dict, raise_on_error: bool = False):
    return defs.resolve_job_def("retraining_job").execute_in_process(
        instance=instance,
        partition_key=D1,
        run_config={**QUIET, "ops": {"best_params": {"config": search_config}}},
        asset_selection=SEARCH_ONLY,
        raise_on_error=raise_on_error,
    )


def test_search_workers_defaults_to_the_setting_and_is_bounded():
    assert build_training_configs(TrainingSettings()).search().search_workers == 1
    config = build_training_configs(TrainingSettings(search_workers=3)).search
    assert config().search_workers == 3 and config(search_workers=64).search_workers == 64


@pytest.mark.parametrize("workers", [0, 65])
def test_search_workers_out_of_range_is_refused_at_launch(settings, instance, workers):
    with pytest.raises(DagsterInvalidConfigError) as caught:
        search(build_definitions(settings), instance, {"search_workers": workers})
    message = str(caught.value)
    assert "root:ops:best_params:config:search_workers" in message and "allowed range 1..64" in message
    assert instance.get_runs() == []


@pytest.mark.slow
def test_best_params_with_two_search_workers_logs_every_trial_to_mlflow(history, instance):
    defs = build_definitions(history)
    registry = defs.resources["model_registry"]
    result = search(defs, instance, {"search_workers": 2, "n_trials": 4})
    assert result.success
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == AssetKey("best_params")]
    meta = {k: v.value for k, v in event.materialization.metadata.items()}
    assert meta["search_workers"] == 2 and meta["n_trials"] == 4
    best = defs.resources["object_io_manager"].read("best_params", D1)
    assert best["summary"]["n_trials"] == 4 and best["summary"]["n_complete"] >= 1

    # One study, 4 finished trials, run by 2 worker processes (2 each), none by the run's own process.
    study = optuna.load_study(study_name=meta["study_name"], storage=history.optuna_url)
    assert [t.state.name in ("COMPLETE", "PRUNED") for t in study.trials] == [True] * 4
    pids = [t.user_attrs[WORKER_PID_ATTR] for t in study.trials]
    assert sorted(pids.count(pid) for pid in set(pids)) == [2, 2]

    # MLflow: the same view as an in-process search, one nested run per trial logged by the run.
    client = registry.client()
    (run,) = client.search_runs([registry.experiment_id()], filter_string=f"tags.dagster_run_id = '{result.run_id}'")
    assert run.data.params["search_workers"] == "2" and run.data.params["search_n_trials"] == "4"
    parent = f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    trials = client.search_runs([registry.experiment_id()], filter_string=parent)
    assert sorted(t.info.run_name for t in trials) == [f"trial-{n}" for n in range(4)]
    by_name = {t.info.run_name: t for t in trials}
    for trial in study.trials:
        logged = by_name[f"trial-{trial.number}"]
        assert logged.info.status == "FINISHED"
        assert logged.data.tags["optuna_study"] == study.study_name
        assert logged.data.tags["optuna_state"] == trial.state.name
        assert set(logged.data.params) == set(trial.params)
        assert logged.data.metrics.get("best_val_loss") == (None if trial.value is None else pytest.approx(trial.value))
        history_of = client.get_metric_history(logged.info.run_id, "val_loss")
        assert [m.step for m in history_of] == sorted(trial.intermediate_values)
    assert not [r for r in client.search_runs([registry.experiment_id()]) if r.info.status == "RUNNING"]
