"""Errors a user can act on (bad or missing prices, missing upstream partitions) reach the UI as
Dagster `Failure`s: their message is the step's error, not the cause under Dagster's "Error occurred
while executing op" or, in a range run whose chunks the IO manager writes, "Error occurred while
handling output" (docs/decisions.md, "Input validation")."""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Failure

from stock_assets.lib.calendar import CalendarRangeError
from stock_assets.lib.prices import PriceDataError
from stock_assets.lib.sources import PriceSourceError
from stock_assets.resources.warehouse import MissingPartitionsError

ACTIONABLE_ERRORS: tuple[type[Exception], ...] = (
    PriceSourceError,
    PriceDataError,
    MissingPartitionsError,
    CalendarRangeError,
)


@contextmanager
def reported_as_failure(*extra: type[Exception]) -> Iterator[None]:
    """Re-raise `ACTIONABLE_ERRORS` (and `extra`) as `Failure(message)`, the original kept as its
    cause. A context manager, and a decorator for the functions that compute a range's chunks."""
    try:
        yield
    except (*ACTIONABLE_ERRORS, *extra) as exc:
        raise Failure(description=str(exc)) from exc
