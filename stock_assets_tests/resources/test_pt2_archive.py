"""The one shim over MLflow's private pt2 validator: it exists in this MLflow, passes a clean archive
and refuses a pickled record; an MLflow upgrade that moves it fails here, not at serving time."""

import pickle
import zipfile

import pytest
import torch

from stock_assets.resources import pt2_archive
from stock_assets.resources.pt2_archive import Pt2ArchiveError, check_pickle_free


class Tiny(torch.nn.Module):
    def forward(self, x):
        return x * 2


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "model.pt2"
    torch.export.save(torch.export.export(Tiny(), (torch.zeros(2, 3),)), str(path))
    return path


def test_the_private_validator_is_where_the_shim_expects_it():
    assert pt2_archive._validator() is not None, "mlflow.pytorch._validate_pt2_archive_is_pickle_free moved"


def test_a_clean_archive_passes_and_a_pickled_record_or_garbage_does_not(program, tmp_path):
    check_pickle_free(program)
    with zipfile.ZipFile(program) as archive:
        records = {name: archive.read(name) for name in archive.namelist()}
    name = next(n for n in records if n.endswith(".json"))
    records[name] = pickle.dumps({"any": "object"})
    tampered = tmp_path / "tampered.pt2"
    with zipfile.ZipFile(tampered, "w") as archive:
        for record, content in records.items():
            archive.writestr(record, content)
    with pytest.raises(Pt2ArchiveError, match="is not pickle-free"):
        check_pickle_free(tampered)
    (tmp_path / "garbage.pt2").write_bytes(b"not a zip")
    with pytest.raises(Pt2ArchiveError, match="not a pt2"):
        check_pickle_free(tmp_path / "garbage.pt2")


def test_without_the_validator_nothing_loads(program, monkeypatch):
    monkeypatch.setattr(pt2_archive, "_validator", lambda: None)
    with pytest.raises(Pt2ArchiveError, match="no pt2 archive validator"):
        check_pickle_free(program)
