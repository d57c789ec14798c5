"""The price-source resource: which source, which tickers. Assets never build sources themselves."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource

from stock_assets.lib.sources import CsvPriceSource, PriceSource, SamplePriceSource, YFinancePriceSource


class PriceSourceResource(ConfigurableResource):
    """Chooses `sample` (bundled, offline), `csv` (your files) or `yfinance` (online)."""

    source: Literal["sample", "csv", "yfinance"] = "sample"
    tickers: list[str]
    csv_path: str | None = None
    yfinance_timeout_seconds: float = 30.0
    yfinance_max_retries: int = 3
    yfinance_backoff_seconds: float = 2.0

    def get(self) -> PriceSource:
        if self.source == "sample":
            return SamplePriceSource()
        if self.source == "csv":
            if not self.csv_path:
                raise ValueError("price source 'csv' needs csv_path")
            return CsvPriceSource(path=self.csv_path)
        return YFinancePriceSource(
            timeout_seconds=self.yfinance_timeout_seconds,
            max_retries=self.yfinance_max_retries,
            backoff_seconds=self.yfinance_backoff_seconds,
        )
