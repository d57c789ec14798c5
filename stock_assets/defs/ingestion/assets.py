"""`raw_prices`: one row per (session, ticker) from the configured price source."""

import dataclasses
import datetime as dt

import pandas as pd
from dagster import AssetExecutionContext, AssetsDefinition, BackfillPolicy, MetadataValue, PartitionsDefinition, asset

from stock_assets.defs.failures import reported_as_failure
from stock_assets.defs.ingestion.config import build_raw_prices_config
from stock_assets.lib import trading_calendar
from stock_assets.lib.prices import PRICE_FRAME_COLUMNS
from stock_assets.lib.sources import PriceSourceError
from stock_assets.partitions import chunked, run_partition_keys
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.io_managers import FrameChunks
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
    rules = settings.sanity.rules()  # what vendors get wrong (lib/prices.SanityRules), refused before storage

    @asset(
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
        group_name="data",
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
    ):
        """Daily OHLCV, adj_close and corporate actions per ticker for each session, as delivered by
        the configured source. A few already-stored sessions are re-fetched and compared, so a vendor
        re-adjustment is reported instead of silently mixing price bases."""
        with reported_as_failure(context):  # a key that is not a session: refused, never retried
            keys = run_partition_keys(context)
        source = dataclasses.replace(price_source.get(), rules=rules)
        return fetch_raw_prices(context, keys, basket, source, warehouse, config)

    return raw_prices


def fetch_raw_prices(
    context, keys, basket: BasketResource, source, warehouse: WarehouseResource, config
) -> pd.DataFrame | FrameChunks:
    """One frame for a daily run; for a range, `FrameChunks` fetched `CHUNK_SESSIONS` sessions at a
    time while the IO manager writes them in one transaction (docs/architecture.md, "Memory")."""
    tickers = list(basket.tickers)
    fetched_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    context.add_output_metadata(
        {
            "sessions": len(keys),
            "tickers": MetadataValue.text(", ".join(tickers)),
            "first_session": keys[0],
            "last_session": keys[-1],
            "source": source.name,
        }
    )

    @reported_as_failure(context, VendorReadjustmentError)
    def fetch(chunk: list[str]) -> pd.DataFrame:
        first, last = chunk[0], chunk[-1]
        if first == keys[0]:
            begin = _overlap_start(first, basket, config)
        else:  # the session before the chunk, so the source validates the move into it
            begin = trading_calendar.previous_session(first).isoformat()
        fetched = source.fetch(tickers, dt.date.fromisoformat(begin), dt.date.fromisoformat(last))
        if first == keys[0] and begin < first:
            _refuse_readjustments(context, fetched, begin, first, source, warehouse, config)
        frame = fetched[fetched["date"] >= first].copy()
        present = set(zip(frame["date"], frame["ticker"], strict=True))
        missing = [(d, t) for d in chunk for t in tickers if (d, t) not in present]
        if missing:
            missing_dates = sorted({d for d, _ in missing})
            missing_tickers = sorted({t for _, t in missing})
            raise PriceSourceError(
                f"{source.name}: no prices for {missing_tickers} on {len(missing_dates)} session(s) "
                f"({key_ranges(missing_dates)}). Check the tickers and the source's coverage; nothing was stored.",
                transient=source.name == "yfinance",  # a vendor may publish a session's bar late; files do not change
            )
        frame["source"] = source.name
        frame["fetched_at"] = fetched_at
        return frame[RAW_PRICES_COLUMNS].reset_index(drop=True)

    if len(keys) > 1:  # Dagster copies range-run metadata onto every partition's event: no preview
        return FrameChunks(fetch(chunk) for chunk in chunked(keys))
    frame = fetch(keys)
    context.add_output_metadata(
        {"rows": len(frame), "preview": MetadataValue.md(frame.tail(min(10, len(frame))).to_markdown(index=False))}
    )
    return frame


def _overlap_start(first: str, basket: BasketResource, config) -> str:
    """The first session to fetch: `overlap_sessions` already-stored sessions before `first`."""
    if not config.overlap_sessions:
        return first
    return basket.clip(trading_calendar.offset_session(first, -config.overlap_sessions).isoformat())


def _refuse_readjustments(context, fetched, begin: str, first: str, source, warehouse, config) -> None:
    stored = warehouse.get().read_range(
        "raw_prices", "date", begin, trading_calendar.previous_session(first).isoformat()
    )
    moved = readjustments(stored, fetched)
    if len(moved):
        message = (
            f"{source.name} changed {len(moved)} stored price(s) in the overlap {begin}..{first} "
            f"(e.g. {moved.iloc[0].to_dict()}): a split or dividend re-based the history. Re-materialize "
            "raw_prices and downstream assets over the full history to keep one price basis, or rerun with "
            "accept_vendor_readjustment=true to store the new basis from here on."
        )
        if not config.accept_vendor_readjustment:
            raise VendorReadjustmentError(message)
        context.log.warning(message)
