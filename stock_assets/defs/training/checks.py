"""The promotion gate (SPEC §9) and cheap sanity checks on `candidate_model`."""

import numpy as np
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, ResourceParam, asset_check

from stock_assets.defs.training.models import candidate_model
from stock_assets.resources.io_managers import ObjectIOManager
from stock_assets.resources.model_registry import ModelRef, ModelRegistryResource
from stock_assets.resources.promotion_policy import PromotionPolicyResource


def _candidate(model_registry: ModelRegistryResource, candidate: dict):
    return model_registry.load(ModelRef(candidate["name"], candidate["version"], candidate["run_id"]))


@asset_check(
    asset=candidate_model,
    blocking=True,
    description="Re-scores candidate, champion-as-of-D and persistence on D's holdout sessions; passes when the "
    "candidate beats the champion and stays within the skill bound against persistence.",
)
def promotion_gate(
    context: AssetCheckExecutionContext,
    object_io_manager: ResourceParam[ObjectIOManager],
    model_registry: ModelRegistryResource,
    promotion_policy: PromotionPolicyResource,
) -> AssetCheckResult:
    from stock_assets.lib.evaluation import gate_decision, predict_log_returns, score_on_sessions

    partition = context.partition_key
    candidate_model = object_io_manager.read("candidate_model", partition)
    scaled_sets = object_io_manager.read("scaled_sets", partition)
    holdout = scaled_sets["holdout"]
    model, preprocessing = _candidate(model_registry, candidate_model)
    scores = {"candidate": score_on_sessions(predict_log_returns(model, preprocessing, scaled_sets, holdout), scaled_sets, holdout)}
    champion_ref = model_registry.champion_as_of(partition)
    champion_note = "none yet"
    if champion_ref is not None:
        champion_model, champion_pre = model_registry.load(champion_ref)
        try:
            scores["champion"] = score_on_sessions(
                predict_log_returns(champion_model, champion_pre, scaled_sets, holdout), scaled_sets, holdout
            )
            champion_note = f"v{champion_ref.version} (promoted for {champion_ref.partition})"
        except ValueError as exc:  # a different basket or feature set: it cannot serve this data anyway
            champion_note = f"v{champion_ref.version} not comparable: {exc}"
    scores["persistence"] = score_on_sessions(None, scaled_sets, holdout)
    passed, summary = gate_decision(
        scores["candidate"],
        scores.get("champion"),
        scores["persistence"],
        promotion_policy.max_mae_ratio_to_persistence,
        promotion_policy.min_improvement_over_champion,
    )
    table = "| model | MAE | RMSE | MAPE | direction | n |\n|---|---|---|---|---|---|\n" + "\n".join(
        f"| {name} | {s['mae']:.4f} | {s['rmse']:.4f} | {s['mape']:.4%} | {s['directional_accuracy']:.3f} | {s['n']} |"
        for name, s in scores.items()
    )
    return AssetCheckResult(
        passed=passed,
        severity=AssetCheckSeverity.ERROR,
        description=summary,
        metadata={
            "partition": partition,
            "candidate_version": candidate_model["version"],
            "champion": champion_note,
            "summary": summary,
            "comparison": MetadataValue.md(table),
            "holdout_sessions": f"{scaled_sets['dates'][holdout[0] + 1]}..{scaled_sets['dates'][holdout[-1] + 1]}",
            "candidate_mae": scores["candidate"]["mae"],
            "champion_mae": scores["champion"]["mae"] if "champion" in scores else float("nan"),
            "persistence_mae": scores["persistence"]["mae"],
            "max_mae_ratio_to_persistence": promotion_policy.max_mae_ratio_to_persistence,
        },
    )


@asset_check(
    asset=candidate_model,
    blocking=True,
    description="The logged model loads without unpickling, its weights are finite and it predicts one finite "
    "value per ticker for each holdout window.",
)
def candidate_model_sanity(
    context: AssetCheckExecutionContext, object_io_manager: ResourceParam[ObjectIOManager], model_registry: ModelRegistryResource
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
