"""Resource fields copied from the settings sections, so each default and bound is declared once.

A resource that mirrors settings (the monitoring and promotion policies, the price source) is built
with pydantic's `create_model` from the section's own fields: `Settings` validates a value when the
code location loads, the resource when it is built or configured, against the same bounds.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel


def fields_of(
    model: type[BaseModel],
    names: tuple[str, ...] | None = None,
    *,
    prefix: str = "",
    rename: dict[str, str] | None = None,
    types: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> dict[str, tuple[Any, Any]]:
    """{field name: (annotation, FieldInfo)} of `model`'s fields `names` (default: all), for
    `pydantic.create_model`. `types`/`defaults` replace a field's type or default where the resource
    needs a Dagster config type (a str for a Path, lists for tuples); keyed by the model's names."""
    out = {}
    for name in names or tuple(model.model_fields):
        field = copy.deepcopy(model.model_fields[name])
        if defaults and name in defaults:
            field.default = defaults[name]
        annotation = (types or {}).get(name, field.annotation)
        out[prefix + (rename or {}).get(name, name)] = (annotation, field)
    return out
