"""`raw_prices`: one row per (session, ticker) from the configured price source."""


import datetime as dt

import pandas as pd
from dagster import AssetExecutionContext, BackfillPolicy, Config, MetadataValue, asset

from stock_assets.lib import calendar
from stock_assets.lib.prices import PRICE_FRAME_COLUMNS
from stock_assets.lib.sources import PriceSourceError
from stock_assets.partitions import partitions_start, trading_day_partitions
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import WarehouseResource, key_ranges
from stock_assets.settings import get_settings

RAW_PRICES_COLUMNS = [*PRICE_FRAME_COLUMNS, "source", "fetched_at"]


class VendorReadjustmentError(RuntimeError):
    """The source changed prices we already stored (a split or dividend re-based its history)."""


class RawPricesConfig(Config):
    overlap_sessions: int = get_settings().overlap_sessions
    accept_vendor_readjustment: bool = False


def _readjustments(stored: pd.DataFrame, fresh: pd.DataFrame, tolerance: float = 1e-4) -> pd.DataFrame:
    """Overlap rows whose close or adj_close moved since they were stored."""
    if stored.empty:
        return stored
    both = stored.merge(fresh, on=["date", "ticker"], suffixes=("_stored", "_now"))
    moved = pd.Series(False, index=both.index)
    for column in ("close", "adj_close"):
        moved |= (both[f"{column}_now"] / both[f"{column}_stored"] - 1).abs() > tolerance
    return both.loc[moved, ["date", "ticker", "adj_close_stored", "adj_close_now", "close_stored", "close_now"]]


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    group_name="ingestion",
    io_manager_key="table_io_manager",
    metadata={"partition_expr": "date", "primary_key": ["date", "ticker"]},
    kinds={"pandas", "sql"},
    code_version="1",
)
def raw_prices(
    context: AssetExecutionContext,
    config: RawPricesConfig,
    price_source: PriceSourceResource,
    warehouse: WarehouseResource,
) -> pd.DataFrame:
    """Daily OHLCV, adj_close and corporate actions per ticker for each session, as delivered by
    the configured source. A few already-stored sessions are re-fetched and compared, so a vendor
    re-adjustment is reported instead of silently mixing price bases."""
    keys = context.partition_keys
    tickers = list(price_source.tickers)
    first, last = keys[0], keys[-1]
    overlap_first = dt.date.fromisoformat(first)
    if config.overlap_sessions:
        overlap_first = calendar.offset_session(first, -config.overlap_sessions)
    overlap_first = max(overlap_first, partitions_start()).isoformat()
    source = price_source.get()
    fetched = source.fetch(tickers, dt.date.fromisoformat(overlap_first), dt.date.fromisoformat(last))

    if overlap_first < first:
        stored = warehouse.get().read_range("raw_prices", "date", overlap_first, calendar.previous_session(first).isoformat())
        moved = _readjustments(stored, fetched)
        if len(moved):
            message = (
                f"{source.name} changed {len(moved)} stored price(s) in the overlap {overlap_first}..{first} "
                f"(e.g. {moved.iloc[0].to_dict()}): a split or dividend re-based the history. Re-materialize "
                "raw_prices and downstream assets over the full history to keep one price basis, or rerun with "
                "accept_vendor_readjustment=true to store the new basis from here on."
            )
            if not config.accept_vendor_readjustment:
                raise VendorReadjustmentError(message)
            context.log.warning(message)

    frame = fetched[fetched["date"] >= first].copy()
    present = set(zip(frame["date"], frame["ticker"]))
    missing = [(d, t) for d in keys for t in tickers if (d, t) not in present]
    if missing:
        missing_dates = sorted({d for d, _ in missing})
        missing_tickers = sorted({t for _, t in missing})
        raise PriceSourceError(
            f"{source.name}: no prices for {missing_tickers} on {len(missing_dates)} session(s) "
            f"({key_ranges(missing_dates)}). Check the tickers and the source's coverage; nothing was stored."
        )
    frame["source"] = source.name
    frame["fetched_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    frame = frame[RAW_PRICES_COLUMNS].reset_index(drop=True)
    # Dagster copies range-run metadata onto every partition's event: previews only for single sessions.
    preview = {"preview": MetadataValue.md(frame.tail(min(10, len(frame))).to_markdown(index=False))} if len(keys) == 1 else {}
    context.add_output_metadata(
        {
            "rows": len(frame),
            "sessions": len(keys),
            "tickers": MetadataValue.text(", ".join(tickers)),
            "first_session": first,
            "last_session": last,
            "source": source.name,
            **preview,
        }
    )
    return frame

