"""The tabular warehouse on SQLite (embedded) or PostgreSQL (deployment), behind one small API.

Writes replace whole partitions inside one transaction (delete the partition range, insert the
new rows, record the partitions in a ledger), serialised per table, so re-materialising never
duplicates or half-writes and concurrent writers cannot interleave. The ledger also records
partitions that legitimately hold zero rows, which is how reads tell "empty" from "missing".
A write may take its rows as chunks computed while it runs (docs/architecture.md, "Memory"), and
reads never wait for a write: on SQLite they use their own connections, which WAL lets read the
last commit while a write is open.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
from dagster import ConfigurableResource, EnvVar

LEDGER = "_stock_assets_partitions"


class _LazySQLAlchemy:
    """`sqlalchemy`, imported on first use: loading it costs about 0.15 s, a sixth of the code
    location's import time, and nothing touches the warehouse while definitions load."""

    def __getattr__(self, name: str):
        import sqlalchemy

        return getattr(sqlalchemy, name)


sa = _LazySQLAlchemy()


def _masked(error: object) -> str:
    """A driver's message without any password it may quote (lib/redaction.py)."""
    from stock_assets.lib.redaction import mask_secrets

    return mask_secrets(str(error))


class MissingPartitionsError(RuntimeError):
    """Upstream partitions were never materialised; the message names the missing ranges."""


class WarehouseError(RuntimeError):
    """The warehouse refused a write or cannot be reached; nothing was changed."""


def key_ranges(keys: Sequence[str]) -> str:
    """'2020-01-02..2020-01-06, 2020-03-02' for human messages (keys given in order)."""
    if not keys:
        return ""
    runs, start, prev = [], keys[0], keys[0]
    for key in keys[1:]:
        if (dt.date.fromisoformat(key) - dt.date.fromisoformat(prev)).days > 4:
            runs.append((start, prev))
            start = key
        prev = key
    runs.append((start, prev))
    return ", ".join(a if a == b else f"{a}..{b}" for a, b in runs)


def _sql_type(dtype) -> sa.types.TypeEngine:
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float(precision=53)
    return sa.Text()


CHUNK_ROWS = 50_000  # rows per INSERT batch: memory stays flat at 500 tickers


def _records(frame: pd.DataFrame) -> list[dict]:
    clean = frame.astype(object).where(frame.notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in clean.to_dict(orient="records")
    ]


class Warehouse:
    """Partitioned tables keyed by a partition column holding 'YYYY-MM-DD' strings."""

    def __init__(self, url: str):
        self.url = url
        database = sa.engine.make_url(url).database
        if url.startswith("sqlite") and database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = sa.create_engine(url, pool_pre_ping=True, future=True)
        self.reader = self.engine
        if self.is_sqlite:
            if database and database != ":memory:":
                self.reader = sa.create_engine(url, pool_pre_ping=True, future=True)
                sa.event.listen(self.reader, "connect", self._sqlite_pragmas)
            sa.event.listen(self.engine, "connect", self._sqlite_pragmas)
            sa.event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @staticmethod
    def _sqlite_pragmas(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" hook issue BEGIN IMMEDIATE itself
        dbapi_conn.execute("PRAGMA journal_mode=WAL")
        dbapi_conn.execute("PRAGMA busy_timeout=30000")

    def _ledger(self, metadata: sa.MetaData) -> sa.Table:
        return sa.Table(
            LEDGER,
            metadata,
            sa.Column("table_name", sa.String(200), primary_key=True),
            sa.Column("partition_key", sa.String(10), primary_key=True),
            sa.Column("row_count", sa.Integer, nullable=False),
            sa.Column("written_at", sa.String(32), nullable=False),
        )

    def _lock(self, conn: sa.Connection, table: str) -> None:
        if self.engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(table.encode())})
        # SQLite: BEGIN IMMEDIATE already holds the database's single write lock.

    def _table(self, conn: sa.Connection, table: str, frame: pd.DataFrame, unique: Sequence[str]) -> sa.Table:
        inspector = sa.inspect(conn)
        if inspector.has_table(table):
            existing = sa.Table(table, sa.MetaData(), autoload_with=conn)
            stored, given = set(existing.columns.keys()), set(frame.columns)
            if stored != given:
                raise WarehouseError(
                    f"table {table}: columns changed (missing {sorted(stored - given)}, new {sorted(given - stored)}): "
                    "the store was made by an earlier release (or other forecast.quantiles). Nothing was written. "
                    "Run `make clean` (removes the local home) or drop the table, then re-materialize"
                )
            return existing
        columns = [sa.Column(name, _sql_type(frame[name].dtype)) for name in frame.columns]
        new = sa.Table(table, sa.MetaData(), *columns)
        if unique:
            sa.Index(f"ux_{table}", *[new.c[c] for c in unique], unique=True)
        new.create(conn, checkfirst=True)
        return new

    def write_partitions(
        self,
        table: str,
        frames: pd.DataFrame | Iterable[pd.DataFrame],
        partition_column: str,
        partition_keys: Sequence[str],
        unique: Sequence[str] = (),
    ) -> int:
        """Replace `partition_keys` (a contiguous range) of `table` with the rows of `frames` atomically.

        `frames` is one frame or chunks of one (an iterator is consumed inside the transaction, so a
        chunk that fails to compute leaves the table as it was)."""
        keys = sorted(partition_keys)
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        counts: Counter = Counter()
        try:
            with self.engine.begin() as conn:
                metadata = sa.MetaData()
                ledger = self._ledger(metadata)
                metadata.create_all(conn, checkfirst=True)
                self._lock(conn, table)
                target = None
                for frame in [frames] if isinstance(frames, pd.DataFrame) else frames:
                    outside = set(frame[partition_column]) - set(keys) if len(frame) else set()
                    if outside:
                        raise WarehouseError(
                            f"table {table}: rows for partitions {sorted(outside)[:3]} outside this write "
                            f"{keys[0]}..{keys[-1]}"
                        )
                    if not len(frame.columns):
                        continue
                    if target is None:
                        target = self._table(conn, table, frame, unique)
                        col = target.c[partition_column]
                        conn.execute(target.delete().where(col >= keys[0], col <= keys[-1]))
                    # Batches inside the one transaction: one list of row dicts for a whole range cost
                    # 1.35 GB at 500 tickers x 2,500 sessions (benchmarks/scale.py).
                    for start in range(0, len(frame), CHUNK_ROWS):
                        conn.execute(target.insert(), _records(frame.iloc[start : start + CHUNK_ROWS]))
                    if len(frame):
                        counts.update(frame[partition_column].value_counts().to_dict())
                conn.execute(
                    ledger.delete().where(
                        ledger.c.table_name == table,
                        ledger.c.partition_key >= keys[0],
                        ledger.c.partition_key <= keys[-1],
                    )
                )
                conn.execute(
                    ledger.insert(),
                    [
                        {"table_name": table, "partition_key": k, "row_count": int(counts.get(k, 0)), "written_at": now}
                        for k in keys
                    ],
                )
        except sa.exc.OperationalError as exc:
            raise WarehouseError(
                f"warehouse {self.safe_url} unreachable or locked while writing {table}: {_masked(exc.orig)}"
            ) from exc
        except sa.exc.IntegrityError as exc:
            raise WarehouseError(f"table {table}: write rejected, previous rows kept ({exc.orig})") from exc
        return sum(counts.values())

    @contextlib.contextmanager
    def _reading(self, table: str) -> Iterator[sa.Connection]:
        """A read connection; an unreachable database becomes an error that says so."""
        try:
            with self.reader.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise WarehouseError(
                f"warehouse {self.safe_url} unreachable while reading {table}: {_masked(exc.orig)}"
            ) from exc

    def stored_partitions(self, table: str, first: str, last: str) -> dict[str, int]:
        """{partition_key: row_count} recorded for `table` between first and last."""
        with self._reading(table) as conn:
            if not sa.inspect(conn).has_table(LEDGER):
                return {}
            ledger = self._ledger(sa.MetaData())
            rows = conn.execute(
                sa.select(ledger.c.partition_key, ledger.c.row_count).where(
                    ledger.c.table_name == table, ledger.c.partition_key >= first, ledger.c.partition_key <= last
                )
            )
            return {k: n for k, n in rows}

    def require_partitions(self, table: str, keys: Sequence[str]) -> None:
        """Raise MissingPartitionsError naming the ranges of `keys` (a contiguous range) never written."""
        keys = sorted(keys)
        stored = self.stored_partitions(table, keys[0], keys[-1]) if keys else {}
        missing = [k for k in keys if k not in stored]
        if missing:
            raise MissingPartitionsError(
                f"{table}: {len(missing)} of {len(keys)} needed partition(s) not materialized: "
                f"{key_ranges(missing)}. Materialize (backfill) {table} for that range first."
            )

    def read_partitions(
        self, table: str, partition_column: str, keys: Sequence[str], require_all: bool = True
    ) -> pd.DataFrame:
        """All rows of `keys` (a contiguous range) in one query; missing partitions are an error."""
        keys = sorted(keys)
        if not keys:
            return pd.DataFrame()
        if require_all:
            self.require_partitions(table, keys)
        return self.read_range(table, partition_column, keys[0], keys[-1])

    def read_range(self, table: str, partition_column: str, first: str, last: str) -> pd.DataFrame:
        with self._reading(table) as conn:
            if not sa.inspect(conn).has_table(table):
                return pd.DataFrame()
            target = sa.Table(table, sa.MetaData(), autoload_with=conn)
            col = target.c[partition_column]
            order = [col] + ([target.c.ticker] if "ticker" in target.c else [])
            query = sa.select(target).where(col >= first, col <= last).order_by(*order)
            return pd.read_sql(query, conn)

    @property
    def safe_url(self) -> str:
        """The URL for messages: passwords in user info and in query parameters masked (lib/redaction.py)."""
        from stock_assets.lib.redaction import masked_url

        return masked_url(self.url)


@lru_cache(maxsize=8)
def get_warehouse(url: str) -> Warehouse:
    """One engine (and connection pool) per URL per process."""
    return Warehouse(url)


class WarehouseResource(ConfigurableResource):
    """The warehouse for assets that read beyond their own inputs (overlap checks, sensors)."""

    database_url: str

    def get(self) -> Warehouse:
        # An `EnvVar` field is resolved by Dagster only for runs; scripts use the resource directly.
        url = self.database_url
        return get_warehouse(url.get_value() if isinstance(url, EnvVar) else url)
