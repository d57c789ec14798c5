"""Errors a user can act on (bad or missing prices, missing upstream partitions) reach the UI as
Dagster `Failure`s: their message is the step's error, not the cause under Dagster's "Error occurred
while executing op" or, in a range run whose chunks the IO manager writes, "Error occurred while
handling output". Unless the error is transient, the run is also marked not to be retried by the
instance's run retries: bad data fails the same way twice (docs/decisions.md, "Input validation")."""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import AssetExecutionContext, Failure

from stock_assets.lib.prices import PriceDataError
from stock_assets.lib.redaction import mask_secrets
from stock_assets.lib.sources import PriceSourceError
from stock_assets.lib.trading_calendar import CalendarRangeError
from stock_assets.partitions import NO_RETRY_TAGS, PartitionRangeError
from stock_assets.resources.warehouse import MissingPartitionsError

ACTIONABLE_ERRORS: tuple[type[Exception], ...] = (
    PriceSourceError,
    PriceDataError,
    MissingPartitionsError,
    CalendarRangeError,
    PartitionRangeError,  # a reversed range, or a partition key that is not a session
)
__all__ = ["ACTIONABLE_ERRORS", "NO_RETRY_TAGS", "reported_as_failure"]


@contextmanager
def reported_as_failure(context: AssetExecutionContext, *extra: type[Exception]) -> Iterator[None]:
    """Re-raise `ACTIONABLE_ERRORS` (and `extra`) as `Failure(message)`, the original kept as its
    cause; tag the run not to be retried unless the error says it is transient. A context manager,
    and a decorator for the functions that compute a range's chunks."""
    try:
        yield
    except (*ACTIONABLE_ERRORS, *extra) as exc:
        if not getattr(exc, "transient", False):
            context.instance.add_run_tags(context.run_id, NO_RETRY_TAGS)
        raise Failure(description=mask_secrets(str(exc))) from exc
