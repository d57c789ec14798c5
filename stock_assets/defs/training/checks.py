"""The promotion gate and cheap sanity checks on `candidate_model` (docs/decisions.md, "The promotion gate")."""

import numpy as np
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    PartitionsDefinition,
    ResourceParam,
    asset_check,
)

from stock_assets.lib.contracts import CandidateModel, GateMetadata
from stock_assets.resources.io_managers import ObjectIOManager
from stock_assets.resources.model_registry import ModelRegistryResource
from stock_assets.resources.policies import PromotionPolicyResource


def _candidate(model_registry: ModelRegistryResource, candidate: CandidateModel):
    return model_registry.load(candidate.ref)


def judge_candidate(
    context: AssetCheckExecutionContext,
    object_io_manager: ResourceParam[ObjectIOManager],
    model_registry: ModelRegistryResource,
    promotion_policy: PromotionPolicyResource,
) -> AssetCheckResult:
    from stock_assets.lib.evaluation import gate_decision, predict_log_returns, session_losses

    partition = context.partition_key
    candidate_model = object_io_manager.read("candidate_model", partition)
    scaled_sets = object_io_manager.read("scaled_sets", partition)
    holdout = scaled_sets["holdout"]
    model, preprocessing = _candidate(model_registry, candidate_model)
    candidate = session_losses(predict_log_returns(model, preprocessing, scaled_sets, holdout), scaled_sets, holdout)
    persistence = session_losses(None, scaled_sets, holdout)
    champion, champion_note = None, "none yet"
    champion_ref = model_registry.champion_as_of(partition)
    if champion_ref is not None:
        champion_model, champion_pre = model_registry.load(champion_ref)
        try:
            forecast = predict_log_returns(champion_model, champion_pre, scaled_sets, holdout)
            champion = session_losses(forecast, scaled_sets, holdout)
            champion_note = f"{champion_ref.label}, promoted for {champion_ref.partition}"
        except ValueError as exc:  # a different basket or feature set: it cannot serve this data anyway
            champion_note = f"{champion_ref.label} not comparable: {exc}"
    gate = gate_decision(candidate, champion, persistence, promotion_policy.alpha)
    # A rejected candidate leaves the champion in place unless the champion itself lost to
    # persistence (or cannot serve this basket): then persistence takes over
    # (docs/decisions.md, "The promotion gate").
    champion_lost = champion is None or gate.champion_worse_than_persistence
    fallback = not gate.passed and champion_ref is not None and champion_lost
    rows = [("candidate", gate.candidate_mae), ("champion", gate.champion_mae), ("persistence", gate.persistence_mae)]
    table = "| model | holdout MAE |\n|---|---|\n" + "\n".join(f"| {n} | {m:.4f} |" for n, m in rows)
    dates = scaled_sets["dates"]
    return AssetCheckResult(
        passed=gate.passed,
        severity=AssetCheckSeverity.WARN,
        description=gate.verdict,
        metadata={
            **GateMetadata(
                partition=partition,
                candidate_version=candidate_model.version,
                verdict=gate.verdict,
                p_value=gate.p_value,
                fallback_to_persistence=fallback,
            ).to_metadata(),
            "champion": champion_note,
            "summary": gate.verdict,
            "comparison": MetadataValue.md(table),
            "holdout_sessions": f"{dates[holdout[0] + 1]}..{dates[holdout[-1] + 1]}",
            "candidate_mae": gate.candidate_mae,
            "champion_mae": gate.champion_mae,
            "persistence_mae": gate.persistence_mae,
            "dm_statistic": gate.dm_statistic,
            "alpha": promotion_policy.alpha,
            "n_sessions": gate.n_sessions,
        },
    )


def check_candidate_sanity(
    context: AssetCheckExecutionContext,
    object_io_manager: ResourceParam[ObjectIOManager],
    model_registry: ModelRegistryResource,
) -> AssetCheckResult:
    from stock_assets.lib.evaluation import predict_log_returns

    candidate_model = object_io_manager.read("candidate_model", context.partition_key)
    scaled_sets = object_io_manager.read("scaled_sets", context.partition_key)

    model, preprocessing = _candidate(model_registry, candidate_model)
    weights = [t.detach().numpy() for t in model.state_dict().values()]
    finite_weights = all(np.isfinite(w).all() for w in weights)
    predictions = predict_log_returns(model, preprocessing, scaled_sets, scaled_sets["holdout"])
    expected = (len(scaled_sets["holdout"]), len(scaled_sets["tickers"]))
    ok_shape, finite_predictions = predictions.shape == expected, bool(np.isfinite(predictions).all())
    return AssetCheckResult(
        passed=finite_weights and ok_shape and finite_predictions,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "finite_weights": finite_weights,
            "parameters": int(sum(w.size for w in weights)),
            "prediction_shape": str(predictions.shape),
            "expected_shape": str(expected),
            "finite_predictions": finite_predictions,
        },
    )


GATE_DESCRIPTION = (
    "Re-scores candidate, champion-as-of-D and persistence on D's holdout sessions; passes only when the "
    "candidate's MAE is below both and a one-sided Diebold-Mariano test (HAC variance, Harvey-Leybourne-Newbold "
    "correction) finds the improvement significant at alpha. A rejection is a normal outcome (WARN): the champion "
    "stays and production_model is not materialized, unless the champion's MAE is above persistence's: then "
    "persistence becomes the champion."
)
SANITY_DESCRIPTION = (
    "The logged model loads without unpickling, its weights are finite and it predicts one finite "
    "value per ticker for each holdout window."
)


def build_training_checks(partitions: PartitionsDefinition) -> list:
    """The checks on `candidate_model`, partitioned like it so that each evaluation shows its session."""

    @asset_check(asset="candidate_model", partitions_def=partitions, blocking=True, description=GATE_DESCRIPTION)
    def promotion_gate(
        context: AssetCheckExecutionContext,
        object_io_manager: ResourceParam[ObjectIOManager],
        model_registry: ModelRegistryResource,
        promotion_policy: PromotionPolicyResource,
    ) -> AssetCheckResult:
        return judge_candidate(context, object_io_manager, model_registry, promotion_policy)

    @asset_check(asset="candidate_model", partitions_def=partitions, blocking=True, description=SANITY_DESCRIPTION)
    def candidate_model_sanity(
        context: AssetCheckExecutionContext,
        object_io_manager: ResourceParam[ObjectIOManager],
        model_registry: ModelRegistryResource,
    ) -> AssetCheckResult:
        return check_candidate_sanity(context, object_io_manager, model_registry)

    return [promotion_gate, candidate_model_sanity]
