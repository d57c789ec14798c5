"""The typed contracts between assets: one JSON form each, a missing field named, metadata read back."""

import json

import pytest
from dagster import MetadataValue

from stock_assets.lib.contracts import (
    CandidateModel,
    ContractError,
    GateMetadata,
    ModelRef,
    MonitorMetadata,
    Preprocessing,
    ProductionModel,
    Promotion,
)

REF = ModelRef("stock_lstm", "3", "run-3", "2010-01-04", "lstm")


def test_every_contract_survives_its_json_form():
    pre = Preprocessing.identity("persistence", ["AAPL", "MSFT"], ["rsi", "macd"], "2010-01-04")
    promotion = Promotion("3", "run-3", "lstm", "2010-01-04", "2010-01-05T00:00:00+00:00", "dagster-1")
    candidate = CandidateModel(REF, ("AAPL", "MSFT"), {"architecture": "lstm"}, 0.4, {"mae": 1.0}, {"mae": 1.1}, 7)
    for value in (REF, pre, promotion, candidate, ProductionModel(REF, promotion, "2")):
        again = type(value).from_dict(json.loads(json.dumps(value.to_dict())))
        assert again == value
    assert pre.scaler["std"] == [[1.0, 1.0], [1.0, 1.0]] and pre.sequence_length == 1
    assert candidate.version == "3" and candidate.partition == "2010-01-04"
    assert pre.with_shrinkage(0.25).shrinkage == 0.25 and pre.shrinkage == 1.0


def test_a_missing_field_is_named_not_defaulted():
    stored = Preprocessing.identity("drift", ["AAPL"], ["rsi"], "2010-01-04").to_dict()
    del stored["kind"]  # earlier code silently served such a model as "lstm"
    with pytest.raises(ContractError, match=r"Preprocessing: missing field\(s\) \['kind'\]"):
        Preprocessing.from_dict(stored)


def test_metadata_contracts_read_back_what_was_written_through_dagster_values():
    gate = GateMetadata("2010-01-04", "3", "rejected: ...", 0.41, True)
    entries = {key: MetadataValue.text(v) if isinstance(v, str) else v for key, v in gate.to_metadata().items()}
    entries["p_value"] = MetadataValue.float(0.41)
    entries["fallback_to_persistence"] = MetadataValue.bool(True)
    assert GateMetadata.present(entries) and GateMetadata.from_metadata(entries) == gate
    assert not MonitorMetadata.present({"rows": 0, "rolling_samples": 3})
    with pytest.raises(ContractError, match="metadata lacks"):
        MonitorMetadata.from_metadata({"detector_statistic": 1.0, "champion_age_sessions": 2})
