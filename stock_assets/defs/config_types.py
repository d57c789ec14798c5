"""Bounded run-config fields that Dagster checks when a run is launched, before any step runs.

Dagster validates a run's config against the config schema at launch, but pydantic constraints
(`Field(ge=...)`, validators) only when a step builds its `Config` object, after earlier steps
did their work. The annotations here carry each bound into both places: into the Dagster config
type (its `post_process` check runs with the launch-time validation and names the key and the
allowed range) and into the pydantic schema (the same bound when a `Config` is built in Python).
docs/decisions.md, "Run config".

    class SearchConfig(Config):
        n_trials: between(1, 1000) = Field(12)
        architectures: list_of(one_of("lstm", "pooled_lstm", name="Architecture")) = Field(["lstm"])

Built on Dagster's config types (`ConfigScalar`, `Array`, `Enum`; the private `dagster._config` is
imported here only): Dagster 1.13 has no public way to check a range at launch.
stock_assets_tests/defs/test_config_types.py pins both facts, so an upgrade that changes either fails.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

from dagster import Array, Enum, EnumValue
from dagster._config.config_type import ConfigScalar, ConfigScalarKind
from dagster._config.errors import PostProcessingError
from pydantic_core import core_schema


def _fmt(value: float) -> str:
    return f"{value:g}"


class _Between(ConfigScalar):
    """An int or float within [low, high]."""

    def __init__(self, low: float, high: float):
        self.low, self.high = low, high
        self.python_type = float if isinstance(low, float) or isinstance(high, float) else int
        name = f"{self.python_type.__name__.capitalize()}[{_fmt(low)}..{_fmt(high)}]"
        kind = ConfigScalarKind.FLOAT if self.python_type is float else ConfigScalarKind.INT
        super().__init__(key=name, given_name=name, scalar_kind=kind, description=f"from {low} to {high}")

    def post_process(self, value: Any) -> Any:
        if not self.low <= value <= self.high:
            raise PostProcessingError(f"{value!r} is outside the allowed range {_fmt(self.low)}..{_fmt(self.high)}")
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        if self.python_type is float:
            return core_schema.float_schema(ge=self.low, le=self.high, allow_inf_nan=False)
        return core_schema.int_schema(ge=self.low, le=self.high)


class _OneOf(Enum):
    """One of a few strings."""

    def __init__(self, name: str, choices: tuple[str, ...]):
        self.choices = choices
        super().__init__(name, [EnumValue(choice) for choice in choices])

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return handler.generate_schema(Literal[self.choices])


class _ListOf(Array):
    """A list of `item`s with at least `min_length` (at most `max_length`) items, optionally ascending."""

    def __init__(self, item: Any, min_length: int, max_length: int | None, ascending: bool):
        super().__init__(item)
        self.item, self.min_length, self.max_length, self.ascending = item, min_length, max_length, ascending
        # A key of its own: a plain Array of the same items must not share this one's checks.
        self.key = f"{self.key}[{min_length}..{max_length or ''}{', ascending' if ascending else ''}]"

    def _problem(self, value: list) -> str | None:
        if len(value) < self.min_length:
            return f"needs at least {self.min_length} item(s), got {value}"
        if self.max_length is not None and len(value) > self.max_length:
            return f"allows at most {self.max_length} item(s), got {value}"
        if self.ascending and any(a > b for a, b in zip(value, value[1:])):
            return f"must be in ascending order (low before high), got {value}"
        return None

    def post_process(self, value: Any) -> Any:
        problem = self._problem(value)
        if problem:
            raise PostProcessingError(problem)
        return value

    def _check(self, value: list) -> list:
        problem = self._problem(value)
        if problem:
            raise ValueError(problem)
        return value

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        items = core_schema.list_schema(handler.generate_schema(self.item))
        return core_schema.no_info_after_validator_function(self._check, items)


@functools.cache
def between(low: float, high: float) -> Any:
    """An int field (float if a bound is a float) that must lie in [low, high]."""
    return _Between(low, high)


@functools.cache
def one_of(*choices: str, name: str) -> Any:
    """A string field that must be one of `choices` (shown as `name` in the Launchpad)."""
    return _OneOf(name, choices)


@functools.cache
def list_of(item: Any, min_length: int = 1, max_length: int | None = None, ascending: bool = False) -> Any:
    """A list field of `item`s (a `between` or `one_of`), never shorter than `min_length`."""
    return _ListOf(item, min_length, max_length, ascending)
