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
    ewma_lambda: float,
) -> AssetCheckResult:
    from stock_assets.lib.evaluation import (
        better_baseline,
        forecast_quantiles,
        gate_decision,
        persistence_abs_errors,
        score_quantiles,
    )
    from stock_assets.lib.forecasters import GARCH, PERSISTENCE, fit_baseline

    partition = context.partition_key
    candidate_model = object_io_manager.read("candidate_model", partition)
    scaled_sets = object_io_manager.read("scaled_sets", partition)
    holdout, levels = scaled_sets["holdout"], tuple(float(v) for v in scaled_sets["levels"])

    def scores(forecaster):
        return score_quantiles(forecast_quantiles(forecaster, scaled_sets, holdout), scaled_sets, holdout, levels)

    candidate = scores(_candidate(model_registry, candidate_model))
    # The baselines fitted on the train part: persistence-EWMA, and GARCH(1,1)-t, which replaces it as
    # the bar only when significantly better on these sessions (docs/decisions.md, "The promotion gate").
    train_end = int(scaled_sets["train"].max()) + 1
    tickers = [str(t) for t in scaled_sets["tickers"]]
    fitted = {
        kind: scores(fit_baseline(kind, scaled_sets["close"][: train_end + 1], tickers, levels, ewma_lambda, partition))
        for kind in (PERSISTENCE, GARCH)
    }
    baseline_kind, baseline_note = better_baseline(fitted, promotion_policy.alpha)
    baseline = fitted[baseline_kind]
    champion, champion_note = None, "none yet"
    champion_ref = model_registry.champion_as_of(partition)
    if champion_ref is not None:
        try:
            champion = scores(model_registry.load(champion_ref))
            champion_note = f"{champion_ref.label}, promoted for {champion_ref.partition}"
        except ValueError as exc:  # another basket, feature set or levels: it cannot serve this data anyway
            champion_note = f"{champion_ref.label} not comparable: {exc}"
    gate = gate_decision(
        candidate, champion, baseline, persistence_abs_errors(scaled_sets, holdout), promotion_policy.alpha
    )
    # A rejected candidate leaves the champion in place unless the champion itself lost to the
    # baseline (or cannot serve this basket): then the baseline takes over
    # (docs/decisions.md, "The promotion gate").
    champion_lost = champion is None or gate.champion_worse_than_baseline
    fallback = not gate.passed and champion_ref is not None and champion_lost
    rows = [
        ("candidate", gate.candidate_pinball, gate.candidate_mae),
        ("champion", gate.champion_pinball, float("nan")),
        ("persistence-EWMA baseline", gate.baseline_pinball, gate.persistence_mae),
    ]
    table = "| model | holdout pinball (log return) | median MAE (price) |\n|---|---|---|\n" + "\n".join(
        f"| {n} | {p:.5f} | {m:.4f} |" for n, p, m in rows
    )
    dates = scaled_sets["dates"]
    # The verdict on the version and its MLflow run, where MLflow users look (challenger follows it).
    model_registry.record_verdict(
        candidate_model.version, "promoted" if gate.passed else "rejected", gate.p_value, gate.verdict, partition
    )
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
                fallback_kind=baseline_kind,
            ).to_metadata(),
            "baseline": baseline_note,
            "champion": champion_note,
            "summary": gate.verdict,
            "comparison": MetadataValue.md(table),
            "holdout_sessions": f"{dates[holdout[0] + 1]}..{dates[holdout[-1] + 1]}",
            "candidate_pinball": gate.candidate_pinball,
            "champion_pinball": gate.champion_pinball,
            "baseline_pinball": gate.baseline_pinball,
            "candidate_mae": gate.candidate_mae,
            "persistence_mae": gate.persistence_mae,
            "point_p_value": gate.point_p_value,
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
    from stock_assets.lib.evaluation import forecast_quantiles

    candidate_model = object_io_manager.read("candidate_model", context.partition_key)
    scaled_sets = object_io_manager.read("scaled_sets", context.partition_key)

    forecaster = _candidate(model_registry, candidate_model)
    weights = [t.detach().numpy() for t in forecaster.program.state_dict().values()]
    finite_weights = all(np.isfinite(w).all() for w in weights)
    quantiles = forecast_quantiles(forecaster, scaled_sets, scaled_sets["holdout"])
    expected = (len(scaled_sets["holdout"]), len(scaled_sets["tickers"]), len(scaled_sets["levels"]))
    ok_shape, finite_predictions = quantiles.shape == expected, bool(np.isfinite(quantiles).all())
    monotone = bool(ok_shape and (np.diff(quantiles, axis=-1) >= 0).all())
    return AssetCheckResult(
        passed=finite_weights and ok_shape and finite_predictions and monotone,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "finite_weights": finite_weights,
            "parameters": int(sum(w.size for w in weights)),
            "prediction_shape": str(quantiles.shape),
            "expected_shape": str(expected),
            "finite_predictions": finite_predictions,
            "quantiles_non_decreasing": monotone,
        },
    )


GATE_DESCRIPTION = (
    "Re-scores candidate, champion-as-of-D and the persistence-EWMA baseline on D's holdout sessions by the mean "
    "pinball loss of their quantiles; passes only when the candidate's is below both and a one-sided "
    "Diebold-Mariano test (HAC variance, Harvey-Leybourne-Newbold correction) finds each improvement significant "
    "at alpha, and its median is not significantly worse than persistence's MAE. A rejection is a normal outcome "
    "(WARN): the champion stays and production_model is not materialized, unless the champion's pinball loss is "
    "above the baseline's: then the baseline becomes the champion."
)
SANITY_DESCRIPTION = (
    "The logged model loads without unpickling, its weights are finite and it predicts finite, non-decreasing "
    "quantiles per ticker for each holdout window."
)


def build_training_checks(partitions: PartitionsDefinition, ewma_lambda: float) -> list:
    """The checks on `candidate_model`, partitioned like it so that each evaluation shows its session."""

    @asset_check(asset="candidate_model", partitions_def=partitions, blocking=True, description=GATE_DESCRIPTION)
    def promotion_gate(
        context: AssetCheckExecutionContext,
        object_io_manager: ResourceParam[ObjectIOManager],
        model_registry: ModelRegistryResource,
        promotion_policy: PromotionPolicyResource,
    ) -> AssetCheckResult:
        return judge_candidate(context, object_io_manager, model_registry, promotion_policy, ewma_lambda)

    @asset_check(asset="candidate_model", partitions_def=partitions, blocking=True, description=SANITY_DESCRIPTION)
    def candidate_model_sanity(
        context: AssetCheckExecutionContext,
        object_io_manager: ResourceParam[ObjectIOManager],
        model_registry: ModelRegistryResource,
    ) -> AssetCheckResult:
        return check_candidate_sanity(context, object_io_manager, model_registry)

    return [promotion_gate, candidate_model_sanity]
