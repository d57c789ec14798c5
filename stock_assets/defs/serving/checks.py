"""One finite prediction per configured ticker, for the next session."""

import numpy as np
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, asset_check

from stock_assets.lib import trading_calendar
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.warehouse import WarehouseResource


@asset_check(
    asset="daily_predictions", blocking=True, description="one finite prediction per ticker, targeting the next session"
)
def daily_predictions_complete(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource, basket: BasketResource
) -> AssetCheckResult:
    day = context.partition_key
    frame = warehouse.get().read_range("daily_predictions", "prediction_date", day, day)
    tickers = sorted(basket.tickers)
    finite = bool(len(frame)) and bool(
        np.isfinite(frame[["predicted_close", "predicted_log_return"]].to_numpy(float)).all()
    )
    right_target = bool(len(frame)) and set(frame["target_date"]) == {trading_calendar.next_session(day).isoformat()}
    return AssetCheckResult(
        passed=sorted(frame["ticker"]) == tickers and finite and right_target if len(frame) else False,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows": len(frame),
            "expected_tickers": ", ".join(tickers),
            "finite": finite,
            "targets_next_session": right_target,
        },
    )
