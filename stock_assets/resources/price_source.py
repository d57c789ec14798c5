"""The price-source resource: which source delivers prices. Assets never build sources themselves."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource

from stock_assets.lib.csv_source import CsvPriceSource
from stock_assets.lib.sources import PriceSource, SamplePriceSource, YFinancePriceSource


class PriceSourceResource(ConfigurableResource):
    """Chooses `sample` (bundled, offline), `csv` (your files) or `yfinance` (online)."""

    source: Literal["sample", "csv", "yfinance"] = "sample"
    csv_path: str | None = None
    yfinance_timeout_seconds: float = 30.0
    yfinance_max_retries: int = 3
    yfinance_backoff_seconds: float = 2.0
    max_abs_log_return: float = 1.0
    accepted_moves: list[list[str]] = []

    @property
    def price_rules(self) -> dict:
        """The validation bounds every source and quality check applies (docs/decisions.md, "Input validation")."""
        return {
            "max_abs_log_return": self.max_abs_log_return,
            "accepted_moves": tuple((ticker, day) for ticker, day in self.accepted_moves),
        }

    def get(self) -> PriceSource:
        if self.source == "sample":
            return SamplePriceSource(**self.price_rules)
        if self.source == "csv":
            if not self.csv_path:
                raise ValueError("price source 'csv' needs csv_path")
            return CsvPriceSource(path=self.csv_path, **self.price_rules)
        return YFinancePriceSource(
            timeout_seconds=self.yfinance_timeout_seconds,
            max_retries=self.yfinance_max_retries,
            backoff_seconds=self.yfinance_backoff_seconds,
            **self.price_rules,
        )
