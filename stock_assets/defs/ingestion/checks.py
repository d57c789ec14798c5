"""Quality rules on stored prices. Blocking: failing data stops `processed_features` in the same run
(and `processed_features` re-applies the same rules to its own window, so later runs can't bypass it)."""

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetCheckSeverity, MetadataValue, asset_check

from stock_assets.lib.prices import describe_problems, price_problems
from stock_assets.partitions import chunked
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import WarehouseResource


@asset_check(
    asset="raw_prices",
    blocking=True,
    description="every ticker on every session; finite positive prices; high >= max(open, close); "
    "low <= min(open, close); volume, dividends and splits >= 0; one-day moves within max_abs_log_return; "
    "no duplicate (date, ticker)",
)
def raw_prices_quality(
    context: AssetCheckExecutionContext,
    basket: BasketResource,
    price_source: PriceSourceResource,
    warehouse: WarehouseResource,
) -> AssetCheckResult:
    keys = list(context.partition_keys)
    problems: dict[str, list[str]] = {}
    rows_checked, offset = 0, 0
    for chunk in chunked(keys):  # a range is read a chunk at a time (docs/architecture.md, "Memory")
        # Each chunk after the first starts one session early, so moves across chunks are checked.
        window = keys[max(0, offset - 1) : offset + len(chunk)]
        offset += len(chunk)
        frame = warehouse.get().read_range("raw_prices", "date", window[0], window[-1])
        rows_checked += int((frame["date"] >= chunk[0]).sum()) if len(frame) else 0
        for name, found in price_problems(frame, list(basket.tickers), window, **price_source.price_rules).items():
            problems[name] = list(dict.fromkeys(problems.get(name, []) + found))
    failing = {name: rows for name, rows in problems.items() if rows}
    examples = "\n".join(f"- {n}: {', '.join(r[:5])}" for n, r in failing.items()) or "none"
    return AssetCheckResult(
        passed=not failing,
        severity=AssetCheckSeverity.ERROR,
        description=describe_problems(problems) or f"{rows_checked} rows over {len(keys)} session(s) are clean",
        metadata={
            "rows_checked": rows_checked,
            "sessions_checked": len(keys),
            **{f"violations: {name}": len(rows) for name, rows in problems.items()},
            "examples": MetadataValue.md(examples),
        },
    )
