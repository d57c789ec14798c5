"""The price-source resource: which source delivers prices. Assets never build sources themselves.

Its fields are the settings' own (`lib/fields.py`): `source`, `csv_path`, `max_abs_log_return` and
`accepted_moves` from `Settings`, the `yfinance` section as `yfinance_*`; one default and one bound
each. Paths and dates are plain strings here (Dagster config types).
"""

from __future__ import annotations

from dagster import ConfigurableResource
from pydantic import create_model

from stock_assets.lib.csv_source import CsvPriceSource
from stock_assets.lib.fields import fields_of
from stock_assets.lib.sources import PriceSource, SamplePriceSource, YFinancePriceSource
from stock_assets.settings import Settings, YFinanceSettings


class _PriceSource(ConfigurableResource):
    """Chooses `sample` (bundled, offline), `csv` (your files) or `yfinance` (online)."""

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


PriceSourceResource = create_model(
    "PriceSourceResource",
    __base__=_PriceSource,
    __module__=__name__,
    __doc__=_PriceSource.__doc__,
    **fields_of(
        Settings,
        ("source", "csv_path", "max_abs_log_return", "accepted_moves"),
        types={"csv_path": str | None, "accepted_moves": list[list[str]]},
        defaults={"accepted_moves": []},
    ),
    **fields_of(YFinanceSettings, prefix="yfinance_"),
)
