"""Feature sanity: the stored vectors are finite and have exactly the expected columns."""

import numpy as np
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.resources.warehouse import WarehouseResource


@asset_check(asset="processed_features", blocking=True, description="no NaN/inf in stored vectors; expected column set")
def processed_features_valid(context: AssetCheckExecutionContext, warehouse: WarehouseResource) -> AssetCheckResult:
    keys = context.partition_keys
    frame = warehouse.get().read_range("processed_features", "date", keys[0], keys[-1])
    expected = {"date", "ticker", *FEATURE_COLUMNS}
    columns_ok = frame.empty or set(frame.columns) == expected
    values = frame[FEATURE_COLUMNS].to_numpy(dtype=float) if columns_ok and len(frame) else np.zeros((0, 0))
    non_finite = int((~np.isfinite(values)).sum())
    return AssetCheckResult(
        passed=columns_ok and non_finite == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows_checked": len(frame),
            "non_finite_values": non_finite,
            "unexpected_columns": ", ".join(sorted(set(frame.columns) - expected)) or "none",
            "missing_columns": ", ".join(sorted(expected - set(frame.columns))) if len(frame) else "none",
        },
    )
