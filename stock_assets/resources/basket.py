"""The basket: which tickers the system forecasts, and the first session of their history."""

from dagster import ConfigurableResource


class BasketResource(ConfigurableResource):
    """Tickers and the partitions' first session, from settings (`tickers`, `start_date`)."""

    tickers: list[str]
    start_date: str

    def clip(self, first: str) -> str:
        """`first`, or the basket's first session if `first` lies before it."""
        return max(first, self.start_date)
