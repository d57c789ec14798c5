"""IO managers: one for tables (the warehouse), one for small non-tabular objects (JSON / npz).

Both are range-aware: a single-run backfill writes all its partitions in one call and a lookback
input is loaded in one query. Neither ever pickles.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import ConfigurableIOManager, Failure, InputContext, OutputContext

from stock_assets.lib.contracts import CONTRACT_KEY, CONTRACTS, Contract
from stock_assets.partitions import NO_RETRY_TAGS, NotASessionError, check_session_tags
from stock_assets.resources.warehouse import MissingPartitionsError, get_warehouse


def table_name(context: InputContext | OutputContext) -> str:
    return "__".join(context.asset_key.path)


def refuse_non_session_run(context: InputContext | OutputContext) -> None:
    """Fail a run launched for a partition key that is not a session before anything is read or
    written, whichever asset it runs (Dagster would map a Saturday to Monday's window), and mark it not
    to be retried. Every asset reads and writes through these IO managers, so this covers every job."""
    try:
        step = context.step_context
    except Exception:  # built outside a run (build_output_context in a test): nothing to check
        return
    try:
        check_session_tags(step.dagster_run.tags)
    except NotASessionError as exc:
        step.instance.add_run_tags(step.run_id, NO_RETRY_TAGS)
        raise Failure(description=str(exc)) from exc


class FrameChunks:
    """An output given as chunks that are computed while the IO manager writes them: a range run's
    memory then follows one chunk (docs/architecture.md, "Memory"). Not a generator: Dagster would
    take a returned generator for a stream of events."""

    def __init__(self, frames: Iterable[pd.DataFrame]) -> None:
        self._frames = frames

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter(self._frames)


class TableIOManager(ConfigurableIOManager):
    """Pandas frames <-> warehouse tables. The asset's definition metadata names the partition
    column (`partition_expr`, holding the partition key) and the row key (`primary_key`). An
    output is a frame or `FrameChunks`; all its rows are written in one transaction either way."""

    database_url: str

    def handle_output(self, context: OutputContext, obj: pd.DataFrame | FrameChunks) -> None:
        refuse_non_session_run(context)
        if obj is None:
            return
        definition = context.definition_metadata or {}
        partition_column = definition.get("partition_expr", "date")
        keys = list(context.asset_partition_keys)
        rows = get_warehouse(self.database_url).write_partitions(
            table_name(context), obj, partition_column, keys, unique=definition.get("primary_key", ())
        )
        context.add_output_metadata({"warehouse_rows_written": rows, "warehouse_table": table_name(context)})
        span = keys[0] if len(keys) == 1 else f"{len(keys)} partitions {keys[0]}..{keys[-1]}"
        context.log.info(f"{table_name(context)}: stored {rows} rows for {span}")  # the run's one-line summary

    def load_input(self, context: InputContext) -> pd.DataFrame:
        refuse_non_session_run(context)
        upstream = context.upstream_output
        definition = (upstream.definition_metadata if upstream else None) or {}
        partition_column = definition.get("partition_expr", "date")
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else []
        # An input declared with metadata {"allow_missing_partitions": True} reads whatever exists.
        require_all = not (context.definition_metadata or {}).get("allow_missing_partitions", False)
        if not keys:
            if require_all:
                raise MissingPartitionsError(f"{table_name(context)}: no upstream partitions to load")
            return pd.DataFrame()
        return get_warehouse(self.database_url).read_partitions(
            table_name(context), partition_column, keys, require_all
        )


class ObjectIOManager(ConfigurableIOManager):
    """One file per (asset, partition): contracts (lib/contracts.py) and dicts as JSON, dicts of
    numpy arrays as .npz (`allow_pickle=False`). A contract is stored with its type's name and read
    back as that type. Files are written to a temp name and renamed, so a partition is
    either the old or the new object, never half of one. Checks read it with `read()`."""

    base_dir: str

    def _path(self, asset: str, key: str, suffix: str) -> Path:
        return Path(self.base_dir) / asset / f"{key}{suffix}"

    def write(self, asset: str, key: str, obj) -> None:
        if isinstance(obj, Contract):
            obj = {CONTRACT_KEY: type(obj).__name__, **obj.to_dict()}
        arrays = isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values())
        path = self._path(asset, key, ".npz" if arrays else ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=path.suffix)
        with os.fdopen(fd, "wb") as fh:
            if arrays:
                np.savez_compressed(fh, **obj)
            else:
                fh.write(json.dumps(obj, indent=1, sort_keys=True, default=str).encode())
        os.replace(tmp, path)
        for stale in {".npz", ".json"} - {path.suffix}:
            self._path(asset, key, stale).unlink(missing_ok=True)

    def read(self, asset: str, key: str):
        npz, js = self._path(asset, key, ".npz"), self._path(asset, key, ".json")
        if npz.exists():
            with np.load(npz, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if js.exists():
            value = json.loads(js.read_text())
            if isinstance(value, dict) and CONTRACT_KEY in value:
                return CONTRACTS[value.pop(CONTRACT_KEY)].from_dict(value)
            return value
        raise MissingPartitionsError(f"{asset}: partition {key} not materialized; materialize it first")

    def handle_output(self, context: OutputContext, obj) -> None:
        refuse_non_session_run(context)
        if obj is None:
            return
        for key in context.asset_partition_keys:
            self.write(table_name(context), key, obj)

    def load_input(self, context: InputContext):
        refuse_non_session_run(context)
        keys = list(context.asset_partition_keys)
        if len(keys) != 1:
            raise ValueError(f"{table_name(context)}: expected exactly one upstream partition, got {len(keys)}")
        return self.read(table_name(context), keys[0])
