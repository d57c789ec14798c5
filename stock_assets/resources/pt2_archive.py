"""The one place that relies on MLflow's private pt2 validator (docs/decisions.md, "Never unpickle").

`torch.export.load` unpickles the weights and sample inputs a pt2 archive holds, so an archive is
checked pickle-free before it is read. MLflow ships that check as the private
`mlflow.pytorch._validate_pt2_archive_is_pickle_free`; it is imported here only, and a test of this
module fails loudly if an MLflow upgrade moves or changes it. Without it nothing loads (fail closed).
"""

from __future__ import annotations

import re
from pathlib import Path


class Pt2ArchiveError(ValueError):
    """The archive is not a pt2 (zip) archive, holds a pickle, or cannot be checked at all."""


def _validator():
    try:
        from mlflow.pytorch import _validate_pt2_archive_is_pickle_free
    except ImportError:
        return None
    return _validate_pt2_archive_is_pickle_free


def check_pickle_free(program: str | Path) -> None:
    """Raise `Pt2ArchiveError` unless `program` is a pt2 archive with no pickle in any record."""
    from mlflow.exceptions import MlflowException

    validate = _validator()
    if validate is None:
        raise Pt2ArchiveError("this MLflow has no pt2 archive validator, so it is not loaded")
    try:
        validate(str(program))
    except MlflowException as exc:
        found = re.search(r"record '([^']+)'", str(exc))
        record = found.group(1) if found else None
        raise Pt2ArchiveError(
            "not a pt2 (zip) archive"
            if record in (None, Path(program).name)
            else f"its record {record} is not pickle-free"
        ) from None
