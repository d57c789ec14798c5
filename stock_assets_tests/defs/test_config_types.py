"""Why defs/config_types.py builds on Dagster's private config types, pinned: Dagster 1.13 checks
pydantic constraints only when a step builds its Config (the run exists, earlier steps ran); the
bounded types are checked at launch. A Dagster upgrade that changes either fails here, loudly
(docs/decisions.md, "Run config checked at launch")."""

from typing import Annotated

import annotated_types
import dagster
import pytest
from dagster import Config, DagsterInvalidConfigError, Definitions, asset, define_asset_job, validate_run_config
from pydantic import Field

from stock_assets.defs.config_types import between, list_of, one_of

UPGRADE_HINT = "Dagster changed how run config is checked: re-verify defs/config_types.py and this test"
ran = []


class PublicConfig(Config):
    n_trials: int = Field(12, ge=1, le=1000)
    layers: Annotated[int, annotated_types.Interval(ge=1, le=4)] = 2


class BoundedConfig(Config):
    n_trials: between(1, 1000) = Field(12)
    learning_rate: list_of(between(1e-6, 1.0), min_length=2, max_length=2, ascending=True) = Field([3e-4, 3e-3])
    loss: one_of("mse", "mae", name="Loss") = Field("mse")


@asset
def upstream() -> int:
    ran.append("upstream")
    return 1


@asset
def public(config: PublicConfig, upstream: int) -> int:
    return config.n_trials


@asset
def bounded(config: BoundedConfig, upstream: int) -> int:
    return config.n_trials


def job(name: str):
    target = {"public": public, "bounded": bounded}[name]
    defs = Definitions(assets=[upstream, target], jobs=[define_asset_job(name, selection=[upstream, target])])
    return defs.resolve_job_def(name)


def test_dagster_is_the_version_the_private_types_were_verified_on():
    assert dagster.__version__.startswith("1.13."), UPGRADE_HINT


@pytest.mark.parametrize("config", [{"n_trials": 5000}, {"layers": 9}])
def test_public_pydantic_constraints_are_not_checked_at_launch(config):
    """If this fails, Dagster checks them at launch now: switch to plain `Field(ge=, le=)`."""
    run_config = {"ops": {"public": {"config": config}}}
    assert validate_run_config(job("public"), run_config), UPGRADE_HINT
    ran.clear()
    with dagster.instance_for_test() as instance:
        result = job("public").execute_in_process(run_config=run_config, instance=instance, raise_on_error=False)
        assert not result.success and ran == ["upstream"], UPGRADE_HINT  # the run existed, upstream ran
        assert len(instance.get_runs()) == 1


@pytest.mark.parametrize(
    "config, named",
    [
        ({"n_trials": 5000}, "allowed range 1..1000"),
        ({"learning_rate": [3e-3, 3e-4]}, "ascending order"),
        ({"learning_rate": [3e-3]}, "at least 2 item(s)"),
        ({"loss": "huber"}, "Loss"),
    ],
)
def test_the_bounded_types_are_checked_at_launch_before_any_run_exists(config, named):
    run_config = {"ops": {"bounded": {"config": config}}}
    with pytest.raises(DagsterInvalidConfigError) as caught:
        validate_run_config(job("bounded"), run_config)
    assert named in str(caught.value) and "bounded:config" in str(caught.value), UPGRADE_HINT
    ran.clear()
    with dagster.instance_for_test() as instance:
        with pytest.raises(DagsterInvalidConfigError):
            job("bounded").execute_in_process(run_config=run_config, instance=instance)
        assert instance.get_runs() == [] and ran == []


def test_the_bounded_types_are_pydantic_bounds_too():
    assert BoundedConfig().learning_rate == [3e-4, 3e-3]
    with pytest.raises(ValueError, match="less than or equal to 1000"):
        BoundedConfig(n_trials=5000)
    with pytest.raises(ValueError, match="ascending order"):
        BoundedConfig(learning_rate=[1e-2, 1e-3])
