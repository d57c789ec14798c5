import pandas as pd
import pytest

from stock_assets.resources.warehouse import MissingPartitionsError, Warehouse, WarehouseError

KEYS = ["2024-06-12", "2024-06-13", "2024-06-14", "2024-06-17"]


@pytest.fixture(params=["sqlite", "postgres"])
def warehouse(request, tmp_path):
    if request.param == "sqlite":
        yield Warehouse(f"sqlite:///{tmp_path / 'w.db'}")
    else:
        yield Warehouse(request.getfixturevalue("postgres_url"))


def rows(keys, tickers=("A", "B"), value=1.0):
    return pd.DataFrame([{"date": k, "ticker": t, "close": value, "volume": 10} for k in keys for t in tickers])


def count(warehouse, table="t"):
    return len(warehouse.read_range(table, "date", "0000", "9999"))


def test_rematerializing_a_partition_gives_the_same_rows(warehouse):
    for _ in range(3):
        warehouse.write_partitions("t", rows(KEYS[:1]), "date", KEYS[:1], unique=["date", "ticker"])
    frame = warehouse.read_partitions("t", "date", KEYS[:1])
    assert frame[["date", "ticker"]].values.tolist() == [[KEYS[0], "A"], [KEYS[0], "B"]]


def test_range_write_then_single_rewrite_has_no_duplicates(warehouse):
    warehouse.write_partitions("t", rows(KEYS), "date", KEYS, unique=["date", "ticker"])
    warehouse.write_partitions("t", rows(KEYS[2:3], value=5.0), "date", KEYS[2:3], unique=["date", "ticker"])
    frame = warehouse.read_partitions("t", "date", KEYS)
    assert len(frame) == 8
    assert frame.loc[frame["date"] == KEYS[2], "close"].tolist() == [5.0, 5.0]
    assert frame.loc[frame["date"] != KEYS[2], "close"].unique().tolist() == [1.0]


def test_a_failure_mid_write_keeps_the_previous_rows(warehouse):
    warehouse.write_partitions("t", rows(KEYS), "date", KEYS, unique=["date", "ticker"])
    broken = pd.concat([rows(KEYS, value=9.0), rows(KEYS[-1:], value=9.0)])  # last rows violate the unique key
    with pytest.raises(WarehouseError, match="write rejected, previous rows kept"):
        warehouse.write_partitions("t", broken, "date", KEYS, unique=["date", "ticker"])
    frame = warehouse.read_partitions("t", "date", KEYS)
    assert len(frame) == 8 and frame["close"].unique().tolist() == [1.0]


def test_missing_partitions_are_named_and_empty_ones_are_not_missing(warehouse):
    warehouse.write_partitions("t", rows(KEYS[:2]), "date", KEYS[:2])
    warehouse.write_partitions("t", rows([]).reindex(columns=["date", "ticker", "close", "volume"]), "date", KEYS[3:])
    with pytest.raises(MissingPartitionsError, match=r"1 of 4 needed partition\(s\) not materialized: 2024-06-14"):
        warehouse.read_partitions("t", "date", KEYS)
    assert warehouse.stored_partitions("t", KEYS[0], KEYS[-1]) == {KEYS[0]: 2, KEYS[1]: 2, KEYS[3]: 0}
    assert len(warehouse.read_partitions("t", "date", [KEYS[3]])) == 0


def test_schema_change_is_refused_naming_make_clean(warehouse):
    """A home made by an earlier release (e.g. point forecasts, before the quantile columns) is refused
    with the fix named, and keeps its rows."""
    warehouse.write_partitions("t", rows(KEYS[:1]), "date", KEYS[:1])
    with pytest.raises(WarehouseError, match=r"columns changed \(missing \['volume'\], new \['extra'\]\)") as caught:
        warehouse.write_partitions("t", rows(KEYS[:1]).drop(columns="volume").assign(extra=1), "date", KEYS[:1])
    assert "earlier release" in str(caught.value) and "Run `make clean`" in str(caught.value)
    assert count(warehouse) == 2


def test_rows_outside_the_written_partitions_are_refused(warehouse):
    with pytest.raises(WarehouseError, match="outside this write"):
        warehouse.write_partitions("t", rows(KEYS), "date", KEYS[:2])


def test_an_unreachable_database_is_named_in_the_error():
    closed = Warehouse("postgresql+psycopg2://postgres@127.0.0.1:1/none?connect_timeout=2")
    with pytest.raises(
        WarehouseError, match=r"warehouse postgresql\+psycopg2://postgres@127.0.0.1:1/none.* unreachable"
    ):
        closed.read_partitions("t", "date", KEYS)
    with pytest.raises(WarehouseError, match="unreachable or locked while writing t"):
        closed.write_partitions("t", rows(KEYS), "date", KEYS)


def test_a_write_in_several_batches_is_still_one_transaction(warehouse, monkeypatch):
    import stock_assets.resources.warehouse as module

    monkeypatch.setattr(module, "CHUNK_ROWS", 3)  # 8 rows -> 3 INSERT batches
    warehouse.write_partitions("t", rows(KEYS), "date", KEYS, unique=["date", "ticker"])
    assert count(warehouse) == 8
    duplicate_in_last_batch = pd.concat([rows(KEYS, value=2.0), rows(KEYS[-1:], tickers=("B",))])
    with pytest.raises(WarehouseError, match="previous rows kept"):
        warehouse.write_partitions("t", duplicate_in_last_batch, "date", KEYS, unique=["date", "ticker"])
    frame = warehouse.read_range("t", "date", KEYS[0], KEYS[-1])
    assert len(frame) == 8 and frame["close"].unique().tolist() == [1.0]  # the first batches rolled back
