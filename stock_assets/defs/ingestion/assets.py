"""`raw_prices`: one row per (session, ticker) from the configured price source."""

import datetime as dt

import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, BackfillPolicy, MetadataValue, PartitionsDefinition, asset

from stock_assets.defs.ingestion.config import build_raw_prices_config
from stock_assets.lib import calendar
from stock_assets.lib.prices import PRICE_FRAME_COLUMNS
from stock_assets.lib.sources import PriceSourceError
from stock_assets.partitions import run_partition_keys
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import WarehouseResource, key_ranges
from stock_assets.settings import Settings

RAW_PRICES_COLUMNS = [*PRICE_FRAME_COLUMNS, "source", "fetched_at"]


class VendorReadjustmentError(RuntimeError):
    """The source changed prices we already stored (a split or dividend re-based its history)."""


def readjustments(stored: pd.DataFrame, fresh: pd.DataFrame, tolerance: float = 1e-4) -> pd.DataFrame:
    """Overlap rows whose close or adj_close moved since they were stored."""
    if stored.empty:
        return stored
    both = stored.merge(fresh, on=["date", "ticker"], suffixes=("_stored", "_now"))
    moved = pd.Series(False, index=both.index)
    for column in ("close", "adj_close"):
        moved |= (both[f"{column}_now"] / both[f"{column}_stored"] - 1).abs() > tolerance
    return both.loc[moved, ["date", "ticker", "adj_close_stored", "adj_close_now", "close_stored", "close_now"]]


def build_raw_prices(settings: Settings, partitions: PartitionsDefinition) -> AssetsDefinition:
    RawPricesConfig = build_raw_prices_config(settings)

    @asset(
        partitions_def=partitions,
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
        basket: BasketResource,
        price_source: PriceSourceResource,
        warehouse: WarehouseResource,
    ) -> pd.DataFrame:
        """Daily OHLCV, adj_close and corporate actions per ticker for each session, as delivered by
        the configured source. A few already-stored sessions are re-fetched and compared, so a vendor
        re-adjustment is reported instead of silently mixing price bases."""
        keys = run_partition_keys(context)
        return fetch_raw_prices(context, keys, basket, price_source.get(), warehouse, config)

    return raw_prices


def fetch_raw_prices(
    context, keys, basket: BasketResource, source, warehouse: WarehouseResource, config
) -> pd.DataFrame:
    tickers = list(basket.tickers)
    first, last = keys[0], keys[-1]
    overlap_first = first
    if config.overlap_sessions:
        overlap_first = basket.clip(calendar.offset_session(first, -config.overlap_sessions).isoformat())
    fetched = source.fetch(tickers, dt.date.fromisoformat(overlap_first), dt.date.fromisoformat(last))

    if overlap_first < first:
        stored = warehouse.get().read_range(
            "raw_prices", "date", overlap_first, calendar.previous_session(first).isoformat()
        )
        moved = readjustments(stored, fetched)
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
    present = set(zip(frame["date"], frame["ticker"], strict=True))
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
    preview = {}
    if len(keys) == 1:
        preview = {"preview": MetadataValue.md(frame.tail(min(10, len(frame))).to_markdown(index=False))}
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
