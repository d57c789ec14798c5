"""What assets hand each other, as frozen types (docs/architecture.md, "Contracts between assets").

Every value that crosses an asset, check, sensor or script boundary is one of these, never a bare
dict: a renamed field is then an error where it is written *and* where it is read, not a silent
`dict.get` default. Each type has one plain-JSON form (`to_dict` / `from_dict`), which is what the
object IO manager stores and what MLflow holds; `from_dict` names the missing field.

Metadata that another component reads (the gate's verdict read by `production_model` and the
replay, the performance log's monitor read by the retraining sensor) is written and read through
a `MetadataContract` subclass, so the keys users see in the UI stay plain names while the code never
spells them twice.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

TARGET = "next-session log return of adj_close"
CONTRACT_KEY = "__contract__"  # the type name stored beside a contract's JSON form


class ContractError(ValueError):
    """A stored value does not have the fields its contract needs; the message names them."""


def _fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


class Contract:
    """JSON round trip shared by the contracts: tuples as lists, nested contracts as dicts."""

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for name in _fields(type(self)):
            value = getattr(self, name)
            if isinstance(value, Contract):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [v.to_dict() if isinstance(v, Contract) else v for v in value]
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        if not isinstance(data, Mapping):
            raise ContractError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        missing = [
            name
            for name, f in _fields(cls).items()
            if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ContractError(f"{cls.__name__}: missing field(s) {missing}; present: {sorted(data)}")
        kwargs = {}
        for name in _fields(cls):
            if name not in data:
                continue
            kwargs[name] = _coerce(hints[name], data[name])
        return cls(**kwargs)


def _coerce(hint: Any, value: Any) -> Any:
    """JSON value -> the annotated type (nested contracts, tuples); other values pass through."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if isinstance(hint, type) and issubclass(hint, Contract) and isinstance(value, Mapping):
        return hint.from_dict(value)
    if origin is tuple and isinstance(value, list | tuple):
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_coerce(item, v) for v in value)
    return value


@dataclass(frozen=True)
class ModelRef(Contract):
    """One registered model version; `partition` is the session it was promoted (or trained) for."""

    name: str
    version: str
    run_id: str
    partition: str | None = None
    kind: str | None = None  # "persistence", "drift", an LSTM architecture, or a drill's kind

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version} ({self.kind or 'unknown kind'})"

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


@dataclass(frozen=True)
class Preprocessing(Contract):
    """Everything that turns an unscaled feature panel into a model's input and its output into a
    log return: logged *with* the model, so `models:/<name>/<version>` alone can serve."""

    kind: str
    tickers: tuple[str, ...]
    feature_columns: tuple[str, ...]
    sequence_length: int
    scaler: dict  # per-ticker, per-feature mean/std and target mean/std (plain numbers)
    trained_through: str
    shrinkage: float = 1.0
    target: str = TARGET
    levels: tuple[float, ...] = ()  # the quantile levels the network predicts; () for a point model

    @classmethod
    def identity(cls, kind: str, tickers, feature_columns, trained_through: str) -> Self:
        """A baseline's preprocessing: identity scaling, a one-session window."""
        tickers, columns = tuple(str(t) for t in tickers), tuple(str(c) for c in feature_columns)
        scaler = {
            "tickers": list(tickers),
            "feature_columns": list(columns),
            "mean": [[0.0] * len(columns)] * len(tickers),
            "std": [[1.0] * len(columns)] * len(tickers),
            "target_mean": [0.0] * len(tickers),
            "target_std": [1.0] * len(tickers),
        }
        return cls(kind, tickers, columns, 1, scaler, trained_through)

    def with_shrinkage(self, shrinkage: float) -> Self:
        return dataclasses.replace(self, shrinkage=float(shrinkage))

    def problems(self) -> list[str]:
        """What makes these numbers unfit to serve (a tampered or damaged file): each named."""
        import math

        found = []
        if not (isinstance(self.shrinkage, int | float) and 0.0 <= float(self.shrinkage) <= 1.0):
            found.append(f"shrinkage {self.shrinkage!r} is not a number in [0, 1]")
        if not (isinstance(self.sequence_length, int) and 1 <= self.sequence_length <= 1000):
            found.append(f"sequence_length {self.sequence_length!r} is not an integer in [1, 1000]")
        if any(not (isinstance(v, int | float) and 0.0 < float(v) < 1.0) for v in self.levels):
            found.append(f"levels {list(self.levels)} are not all in (0, 1)")
        for key in ("mean", "std", "target_mean", "target_std"):
            values = self.scaler.get(key)
            flat = [v for row in values for v in (row if isinstance(row, list) else [row])] if values else None
            if flat is None or any(not isinstance(v, int | float) or not math.isfinite(v) for v in flat):
                found.append(f"scaler {key} is missing or not all finite numbers")
            elif key.endswith("std") and any(v <= 0 for v in flat):
                found.append(f"scaler {key} has a non-positive value")
        return found


@dataclass(frozen=True)
class CandidateModel(Contract):
    """`candidate_model`'s value: the registered version trained as of `partition` and its holdout scores."""

    ref: ModelRef
    tickers: tuple[str, ...]
    params: dict
    shrinkage: float
    holdout: dict  # price metrics of the candidate on the holdout sessions
    persistence: dict  # the same metrics of persistence on the same sessions
    best_epoch: int

    @property
    def version(self) -> str:
        return self.ref.version

    @property
    def partition(self) -> str:
        return str(self.ref.partition)


@dataclass(frozen=True)
class Promotion(Contract):
    """One promotion: `version` became champion for `partition` (the as-of history is a list of these)."""

    version: str
    run_id: str
    kind: str | None
    partition: str
    promoted_at: str
    dagster_run_id: str

    def ref(self, model_name: str) -> ModelRef:
        return ModelRef(model_name, self.version, self.run_id, self.partition, self.kind)


@dataclass(frozen=True)
class ProductionModel(Contract):
    """`production_model`'s value: the promotion made as of D and the champion it replaced."""

    champion: ModelRef
    promotion: Promotion
    replaced_version: str | None = None


@dataclass(frozen=True)
class PartBounds(Contract):
    """First and last window-end session of a training-set part, and its sample count."""

    first: str
    last: str
    samples: int


@dataclass(frozen=True)
class TrainingSetIndex(Contract):
    """The index of `scaled_sets`: which sessions, tickers and features, and the embargoed parts."""

    first_session: str
    last_session: str
    sessions: int
    tickers: tuple[str, ...]
    feature_columns: tuple[str, ...]
    embargo_sessions: int
    train: PartBounds
    validation: PartBounds
    holdout: PartBounds

    @property
    def parts(self) -> dict[str, PartBounds]:
        return {"train": self.train, "validation": self.validation, "holdout": self.holdout}


# --- metadata read by another component ------------------------------------------------------


def _plain(value: Any) -> Any:
    """A Dagster MetadataValue's inner value (duck-typed: this module stays Dagster-free)."""
    return getattr(value, "value", value) if type(value).__module__.startswith("dagster") else value


class MetadataContract:
    """Base of metadata written by one component and read by another.

    A subclass is a frozen dataclass; `to_metadata()` gives the entries to attach (the field names
    are the keys users see), `from_metadata(entries)` reads them back, and `present(entries)` tells
    whether a materialization carries this contract at all (an older one may not)."""

    REQUIRED: ClassVar[tuple[str, ...]] = ()

    def to_metadata(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _fields(type(self)) if getattr(self, name) is not None}

    @classmethod
    def present(cls, entries: Mapping[str, Any]) -> bool:
        return all(name in entries for name in cls.REQUIRED or tuple(_fields(cls)))

    @classmethod
    def from_metadata(cls, entries: Mapping[str, Any]) -> Self:
        known = _fields(cls)
        values = {name: _plain(entries[name]) for name in known if name in entries}
        missing = [
            n
            for n, f in known.items()
            if n not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ContractError(f"{cls.__name__}: metadata lacks {missing}")
        return cls(**values)


@dataclass(frozen=True)
class GateMetadata(MetadataContract):
    """What `promotion_gate` decided, read by `production_model` and the replay."""

    partition: str
    candidate_version: str
    verdict: str
    p_value: float
    fallback_to_persistence: bool  # the champion lost to the best baseline, which then takes over
    fallback_kind: str = "persistence"  # that baseline: persistence-EWMA, or GARCH when significantly better


@dataclass(frozen=True)
class MonitorMetadata(MetadataContract):
    """What the performance log measured for its session, read by the retraining sensor and the replay."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("detector_statistic", "champion_age_sessions")

    champion_version: str
    champion_kind: str
    champion_promoted_for: str
    champion_age_sessions: int
    champion_mae_ratio: float
    detector_statistic: float
    detector_threshold: float
    detector_fired: bool
    detector_reason: str
    rolling_samples: int = 0
    rolling_mape: float | None = None
    rolling_direction_accuracy: float | None = None
    # Forecasts are distributions (issue 19); defaults so that older materializations still read.
    champion_pinball_ratio: float | None = None  # champion / baseline mean pinball loss since promotion
    rolling_coverage_90: float | None = None  # observed coverage of the served 90% interval, rolling window
    champion_coverage_90: float | None = None  # the same over the champion's tenure
    champion_covered_rows: int = 0  # scored rows behind champion_coverage_90
    coverage_p_value: float | None = None  # one-sided binomial p of "misses <= 10%" over the tenure
    coverage_alarm: bool = False  # the served 90% interval misses significantly more than 10%
    coverage_reason: str = ""


CONTRACTS: dict[str, type[Contract]] = {
    cls.__name__: cls for cls in (ModelRef, Preprocessing, CandidateModel, Promotion, ProductionModel)
}


# daily_predictions metadata the retraining sensor reads: the plausibility guard's verdict for the
# session and the partition the serving champion was promoted for (docs/decisions.md, "A bad champion
# never serves twice").
GUARD_ROWS, GUARD_REASON, SERVED_CHAMPION_PROMOTED_FOR = "guard_fallback_rows", "guard_reason", "champion_promoted_for"
