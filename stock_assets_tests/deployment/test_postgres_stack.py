"""The deployment configuration end to end (docker/README.md): the same definitions with the warehouse, the
Optuna storage, MLflow's backend store (behind a real `mlflow server`) and Dagster's instance
storage (dagster-postgres, configured by the repository's dagster.yaml) all on PostgreSQL."""

import json

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterRunStatus, build_sensor_context
from mlflow import MlflowClient

from stock_assets.lib import trading_calendar
from stock_assets.lib.contracts import MonitorMetadata
from stock_assets.run_config import QUIET
from stock_assets_tests.conftest import TEST_SETTINGS
from stock_assets_tests.deployment.conftest import seed_history
from stock_assets_tests.helpers import range_tags

pytestmark = pytest.mark.postgres

SEEDED = ("2004-08-19", "2006-01-31")  # history stored without Dagster bookkeeping (fast)
BACKFILL = ("2006-02-01", "2006-02-22")  # then one real range run of price_history_job on PostgreSQL
TRAIN_FOR = "2006-02-22"
DAILY = ["2006-02-23", "2006-02-24", "2006-02-27"]
BREACH_AT = "2006-03-01"  # beyond the cooldown after TRAIN_FOR


def materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.mark.slow
def test_backfill_retraining_daily_runs_and_sensor_on_postgres(postgres_stack):
    stack = postgres_stack
    defs, instance, registry = stack.defs, stack.instance, stack.registry
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert stack.settings.warehouse_url.startswith("postgresql+psycopg2://")

    # --- 1. history: seeded rows, then one real single-run backfill on PostgreSQL ------------
    seeded = seed_history(stack.settings, *SEEDED)
    assert seeded == {"raw_prices": 366 * 4, "processed_features": 147 * 4}  # features from 2005-07-01
    backfill = defs.resolve_job_def("price_history_job").execute_in_process(
        instance=instance, run_config=QUIET, tags=range_tags(*BACKFILL)
    )
    assert backfill.success
    keys = [d.isoformat() for d in trading_calendar.sessions_between(*BACKFILL)]
    assert len(keys) == 15
    for table in ("raw_prices", "processed_features"):
        rows = stack.rows(
            "warehouse",
            f"SELECT date, count(*), count(DISTINCT ticker) FROM {table} "
            "WHERE date BETWEEN :a AND :b GROUP BY date ORDER BY date",
            a=keys[0],
            b=keys[-1],
        )
        assert rows == [(k, 4, 4) for k in keys], table
        ledger = stack.rows(
            "warehouse", "SELECT count(*), sum(row_count) FROM _stock_assets_partitions WHERE table_name = :t", t=table
        )
        assert ledger == [(366 + 15, 4 * (366 + 15))] if table == "raw_prices" else [(366 + 15, 4 * (147 + 15))]
        assert instance.get_materialized_partitions(AssetKey(table)) == set(keys)
    checks = {e.check_name: e.passed for e in backfill.get_asset_check_evaluations()}
    assert checks == {"raw_prices_quality": True, "processed_features_valid": True}

    # --- 2. retraining behind the gate: Optuna and MLflow on PostgreSQL ----------------------
    retraining = defs.resolve_job_def("retraining_job").execute_in_process(
        instance=instance, partition_key=TRAIN_FOR, run_config=QUIET, raise_on_error=False
    )
    assert retraining.success  # promoted or rejected, the gate's decision is an outcome
    gate = next(e for e in retraining.get_asset_check_evaluations() if e.check_name == "promotion_gate")
    promoted = {"production_model"} if gate.passed else set()
    assert materialized(retraining) == {"scalers", "scaled_sets", "best_params", "candidate_model"} | promoted
    assert 0.0 <= gate.metadata["p_value"].value <= 1.0
    registry = stack.registry
    if not gate.passed:  # serve the LSTM anyway, so the daily runs below are deterministic
        registry.promote("1", TRAIN_FOR, "test")

    client = MlflowClient(stack.mlflow.url, stack.mlflow.url)
    model = client.get_registered_model(stack.settings.model_name)
    # `challenger` names a candidate only while it is undecided or passed (never a rejected one).
    aliases = {"champion": "1", **({"challenger": "1"} if gate.passed else {})}
    assert model.aliases == aliases
    (version,) = client.search_model_versions(f"name = '{stack.settings.model_name}'")
    assert version.tags["gate_verdict"] == ("promoted" if gate.passed else "rejected")
    assert version.tags["trained_for_partition"] == TRAIN_FOR
    (promotion,) = [key for key in version.tags if key.startswith("promotion/")]  # one tag per promotion
    assert promotion.startswith(f"promotion/{TRAIN_FOR}/")
    assert version.tags["dagster_run_id"] == retraining.run_id
    (run,) = client.search_runs(
        [registry.experiment_id()],
        filter_string=f"tags.dagster_run_id = '{retraining.run_id}' and tags.dagster_partition = '2006-02-22'",
    )
    assert run.info.run_id == version.run_id and run.info.status == "FINISHED"
    assert not [r for r in client.search_runs([registry.experiment_id()]) if r.info.status == "RUNNING"]
    assert registry.champion_as_of(TRAIN_FOR).version == "1" and registry.champion_as_of("2006-02-21") is None
    # ... and those are rows of MLflow's PostgreSQL backend store, not of a local file.
    assert stack.rows("mlflow", "SELECT alias, version FROM registered_model_aliases ORDER BY alias") == sorted(
        (alias, int(v)) for alias, v in aliases.items()
    )
    n_trials = TEST_SETTINGS.training.n_trials
    assert stack.rows("mlflow", "SELECT count(*) FROM runs WHERE status = 'FINISHED'") == [
        (1 + n_trials,)
    ]  # parent + trials
    study = f"{stack.settings.model_name}-{TRAIN_FOR}"
    trials = stack.rows(
        "optuna", "SELECT t.state FROM trials t JOIN studies s USING (study_id) WHERE s.study_name = :s", s=study
    )
    assert len(trials) == n_trials and {state for (state,) in trials} <= {"COMPLETE", "PRUNED"}

    # --- 3. daily runs: predictions by the champion, scored the next session -----------------
    for day in DAILY:
        daily = defs.resolve_job_def("daily_job").execute_in_process(
            instance=instance, partition_key=day, run_config=QUIET, raise_on_error=False
        )
        assert daily.success, day
        assert materialized(daily) == {"raw_prices", "processed_features", "daily_predictions", "performance_log"}
    predictions = stack.rows(
        "warehouse",
        "SELECT prediction_date, target_date, count(*), min(model_version), "
        "max(model_trained_for) FROM daily_predictions GROUP BY 1, 2 ORDER BY 1",
    )
    assert predictions == [(d, trading_calendar.next_session(d).isoformat(), 4, "1", TRAIN_FOR) for d in DAILY]
    # Predictions made on D target the next session; nothing targeted the first daily session.
    scored = stack.rows(
        "warehouse",
        "SELECT partition_key, row_count FROM _stock_assets_partitions WHERE table_name = 'performance_log' ORDER BY 1",
    )
    assert scored == [(DAILY[0], 0), (DAILY[1], 4), (DAILY[2], 4)]
    log = stack.rows(
        "warehouse", "SELECT prediction_date, target_date, abs_pct_error, direction_hit FROM performance_log"
    )
    assert sorted({(p, t) for p, t, _, _ in log}) == [(DAILY[0], DAILY[1]), (DAILY[1], DAILY[2])]

    # Every run is in Dagster's PostgreSQL run storage.
    runs = stack.rows("dagster", "SELECT pipeline_name, status FROM runs ORDER BY create_timestamp")
    assert runs == [("price_history_job", "SUCCESS"), ("retraining_job", "SUCCESS")] + [("daily_job", "SUCCESS")] * 3
    assert [r.status for r in instance.get_runs()] == [DagsterRunStatus.SUCCESS] * 5

    # --- 4. the retraining sensor judges every performance_log materialization ---------------
    sensor = defs.resolve_sensor_def("retraining_sensor")
    tick = sensor.evaluate_tick(build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))
    assert not tick.run_requests  # the detector is still warming up and the champion is young
    meta = (
        instance.fetch_materializations(AssetKey("performance_log"), limit=10).records[0].asset_materialization.metadata
    )
    assert meta["rolling_samples"].value == len(log) == 8 and meta["champion_version"].value == "1"
    assert tick.skip_message.startswith(f"{DAILY[2]}: healthy (CUSUM 0.00 vs threshold 9")

    # A degraded session reported later (outside the cooldown) makes the sensor request a retraining.
    instance.report_runless_asset_event(
        AssetMaterialization(
            asset_key="performance_log",
            partition=BREACH_AT,
            metadata={
                "rows": 4,
                **MonitorMetadata(
                    champion_version="1",
                    champion_kind="lstm",
                    champion_promoted_for=TRAIN_FOR,
                    champion_age_sessions=30,
                    champion_mae_ratio=1.09,
                    detector_statistic=12.5,
                    detector_threshold=9.0,
                    detector_fired=True,
                    detector_reason="CUSUM 12.50 > 9 after 30 sessions: champion MAE 1.09 x persistence",
                ).to_metadata(),
            },
        )
    )
    context = build_sensor_context(instance=instance, definitions=defs, cursor=tick.cursor, resources=defs.resources)
    again = sensor.evaluate_tick(context)
    (request,) = again.run_requests
    assert request.run_key == f"retrain-{BREACH_AT}" and request.partition_key == BREACH_AT
    assert request.tags["stock_assets/reason"].startswith("CUSUM 12.50 > 9")
    assert json.loads(again.cursor)["performance_log"] > json.loads(tick.cursor)["performance_log"]
    # Nothing new: an explicit skip, and the cursor does not go back.
    context = build_sensor_context(instance=instance, definitions=defs, cursor=again.cursor, resources=defs.resources)
    idle = sensor.evaluate_tick(context)
    assert not idle.run_requests
    assert idle.skip_message == "no new performance_log or daily_predictions materializations"
    assert json.loads(idle.cursor) == json.loads(again.cursor)


def test_artifacts_go_through_the_tracking_server(mlflow_server, settings):
    """With a tracking server, models and artifacts must be stored by the server (its
    --artifacts-destination, served to the MLflow UI and to other containers), not written to
    the code location's local disk where neither the server nor the UI can read them."""
    from stock_assets.resources import build_resources

    deployed = settings.model_copy(update={"mlflow_tracking_uri": mlflow_server.url})
    registry = build_resources(deployed)["model_registry"]
    with registry.mlflow_run_for("probe-run", TRAIN_FOR, "retraining_job") as run_id:
        registry.configured_mlflow().log_text("probe", "probe.txt")
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    location = client.get_experiment(registry.experiment_id()).artifact_location
    stored = list(mlflow_server.artifacts.rglob("probe.txt"))
    local = list((deployed.home / "mlartifacts").rglob("probe.txt")) if (deployed.home / "mlartifacts").exists() else []
    assert client.get_run(run_id).info.status == "FINISHED"
    assert location.startswith("mlflow-artifacts:"), location
    assert len(stored) == 1 and not local
