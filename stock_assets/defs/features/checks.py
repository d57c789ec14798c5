"""Feature sanity: the stored vectors are finite and have exactly the expected columns."""

import numpy as np
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.partitions import chunked
from stock_assets.resources.warehouse import WarehouseResource


@asset_check(asset="processed_features", blocking=True, description="no NaN/inf in stored vectors; expected column set")
def processed_features_valid(context: AssetCheckExecutionContext, warehouse: WarehouseResource) -> AssetCheckResult:
    expected = {"date", "ticker", *FEATURE_COLUMNS}
    rows, non_finite, columns = 0, 0, set()
    for chunk in chunked(list(context.partition_keys)):  # a range is read a chunk at a time
        frame = warehouse.get().read_range("processed_features", "date", chunk[0], chunk[-1])
        if frame.empty:
            continue
        columns |= set(frame.columns)
        if set(frame.columns) == expected:
            non_finite += int((~np.isfinite(frame[FEATURE_COLUMNS].to_numpy(dtype=float))).sum())
        rows += len(frame)
    columns_ok = not rows or columns == expected
    return AssetCheckResult(
        passed=columns_ok and non_finite == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows_checked": rows,
            "non_finite_values": non_finite,
            "unexpected_columns": ", ".join(sorted(columns - expected)) or "none",
            "missing_columns": ", ".join(sorted(expected - columns)) if rows else "none",
        },
    )
