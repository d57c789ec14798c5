"""`raw_prices` and its quality check on a real instance and warehouse: partitions, ranges, sources."""

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import materialize

from stock_assets import partitions
from stock_assets.defs.ingestion.checks import raw_prices_quality
from stock_assets.lib.sources import PriceSourceError, SamplePriceSource
from stock_assets.resources.basket import BasketResource
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import get_warehouse
from stock_assets_tests.helpers import materialize_range, sessions_from_start

KEYS = sessions_from_start(280)


def stored(settings, table, first="0000", last="9999"):
    return get_warehouse(settings.warehouse_url).read_range(table, "date", first, last)


def test_one_partition_of_prices(settings, resources, instance, raw_prices):
    result = materialize(
        [raw_prices, raw_prices_quality], partition_key="2012-10-31", resources=resources, instance=instance
    )
    assert result.success
    frame = stored(settings, "raw_prices")
    assert frame["date"].unique().tolist() == ["2012-10-31"]
    assert sorted(frame["ticker"]) == ["AAPL", "GOOG", "IBM", "MSFT"]
    assert set(frame["source"]) == {"sample"}
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["rows_checked"].value == 4
    # Re-materialising the same partition replaces it: still 4 rows.
    materialize([raw_prices], partition_key="2012-10-31", resources=resources, instance=instance)
    assert len(stored(settings, "raw_prices")) == 4


def test_missing_ticker_in_source_stores_nothing(settings, resources, instance, raw_prices):
    materialize([raw_prices], partition_key="2012-10-31", resources=resources, instance=instance)
    unknown = {
        **resources,
        "basket": BasketResource(tickers=["AAPL", "TSLA"], start_date=settings.start_date.isoformat()),
    }
    result = materialize(
        [raw_prices], partition_key="2012-10-31", resources=unknown, instance=instance, raise_on_error=False
    )
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data
    # The UI shows the source's message as the step's error, not under Dagster's "Error occurred while ...".
    assert failure.error.cls_name == "Failure" and "no data for ['TSLA']" in failure.user_failure_data.description
    assert len(stored(settings, "raw_prices")) == 4  # what was stored before is intact


class StalledSource(PriceSourceResource):
    """An online source that times out: the error says it is transient."""

    def get(self):
        class _Source(SamplePriceSource):
            name = "yfinance"

            def fetch(self, tickers, start, end):
                raise PriceSourceError("yfinance AAPL: no answer within 30 s (network down or stalled)", transient=True)

        return _Source()


@pytest.mark.parametrize(
    "source, will_retry",
    [
        (None, "false"),  # an unknown ticker in the bundled sample fails the same way every time
        (StalledSource(), "true"),  # a stalled download may succeed on the next attempt
    ],
)
def test_run_retries_repeat_only_transient_source_failures(
    tmp_path, settings, resources, raw_prices, source, will_retry
):
    """With run retries on (dagster.yaml), the instance records at the failure whether the daemon will
    retry the run: never for bad input, which would only fail again."""
    from dagster import instance_for_test

    failing = {
        **resources,
        "basket": BasketResource(tickers=["AAPL", "TSLA"], start_date=settings.start_date.isoformat()),
        **({"price_source": source} if source else {}),
    }
    overrides = {"run_retries": {"enabled": True, "max_retries": 1}}
    with instance_for_test(overrides=overrides) as retrying:
        result = materialize(
            [raw_prices], partition_key="2012-10-31", resources=failing, instance=retrying, raise_on_error=False
        )
        assert not result.success
        assert retrying.get_run_by_id(result.run_id).tags["dagster/will_retry"] == will_retry


def test_cli_range_materialization(tmp_path):
    """`dagster asset materialize --partition-range` runs the range as one in-process run."""
    env = {"STOCK_ASSETS_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dh"), "PATH": "/usr/bin:/bin"}
    Path(env["DAGSTER_HOME"]).mkdir()
    keys = sessions_from_start(25)
    cmd = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        "stock_assets.definitions",
        "--select",
        "raw_prices",
        "--partition-range",
        f"{keys[0]}...{keys[-1]}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'home' / 'warehouse.db'}")
    with engine.connect() as conn:
        n, first, last = conn.execute(sa.text("select count(*), min(date), max(date) from raw_prices")).one()
    assert (n, first, last) == (100, keys[0], keys[-1])
    assert dt.date.fromisoformat(last) == dt.date(2004, 9, 23)


class ReadjustedSource(PriceSourceResource):
    """The sample as a vendor would serve it after a 2:1 split re-based the whole history."""

    def get(self):
        class _Source(SamplePriceSource):
            name = "readjusting-vendor"

            def fetch(self, tickers, start, end):
                frame = super().fetch(tickers, start, end)
                frame[["open", "high", "low", "close", "adj_close"]] /= 2
                return frame

        return _Source()


def test_vendor_readjustment_is_reported_not_mixed(settings, resources, instance, raw_prices):
    materialize_range([raw_prices], KEYS[0], KEYS[9], resources=resources, instance=instance)
    readjusted = {**resources, "price_source": ReadjustedSource()}
    result = materialize(
        [raw_prices], partition_key=KEYS[10], resources=readjusted, instance=instance, raise_on_error=False
    )
    assert not result.success
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "changed 20 stored price(s) in the overlap" in message and "accept_vendor_readjustment" in message
    assert stored(settings, "raw_prices")["date"].max() == KEYS[9]  # nothing new stored
    accepted = materialize(
        [raw_prices],
        partition_key=KEYS[10],
        resources=readjusted,
        instance=instance,
        run_config={"ops": {"raw_prices": {"config": {"accept_vendor_readjustment": True}}}},
    )
    assert accepted.success and stored(settings, "raw_prices")["date"].max() == KEYS[10]


def test_a_partition_key_that_is_not_a_session_is_refused(resources, instance, raw_prices):
    with pytest.raises(Exception, match="2012-10-29"):  # hurricane Sandy: the exchange was closed
        materialize([raw_prices], partition_key="2012-10-29", resources=resources, instance=instance)


class RecordingSource(PriceSourceResource):
    """The sample, recording each window asked for; `gap` drops a ticker's row on one session."""

    gap: str = ""

    def get(self):
        outer = self

        class _Source(SamplePriceSource):
            def fetch(self, tickers, start, end):
                outer_calls.append((start.isoformat(), end.isoformat()))
                frame = super().fetch(tickers, start, end)
                return frame[~((frame["date"] == outer.gap) & (frame["ticker"] == "IBM"))]

        return _Source()


outer_calls: list[tuple[str, str]] = []


def test_a_range_is_fetched_and_written_in_chunks_in_one_transaction(
    settings, resources, instance, raw_prices, monkeypatch
):
    keys = KEYS[:30]
    outer_calls.clear()
    chunked = {**resources, "price_source": RecordingSource()}
    materialize_range([raw_prices], keys[0], keys[-1], resources=chunked, instance=instance)
    whole = stored(settings, "raw_prices").drop(columns="fetched_at")
    assert outer_calls == [(keys[0], keys[-1])]  # the partitions' start: no overlap before it

    monkeypatch.setattr(partitions, "CHUNK_SESSIONS", 8)
    outer_calls.clear()
    result = materialize_range(
        [raw_prices, raw_prices_quality], keys[0], keys[-1], resources=chunked, instance=instance
    )
    # Each later chunk starts one session early, so the source checks the move into it.
    assert outer_calls == [(keys[0], keys[7]), (keys[7], keys[15]), (keys[15], keys[23]), (keys[23], keys[29])]
    pd.testing.assert_frame_equal(stored(settings, "raw_prices").drop(columns="fetched_at"), whole)
    (check,) = result.get_asset_check_evaluations()
    assert check.passed and check.metadata["rows_checked"].value == 30 * 4

    # A gap in the last chunk fails the run after three chunks were inserted: the transaction keeps none.
    gapped = {**resources, "price_source": RecordingSource(gap=keys[26])}
    before = stored(settings, "raw_prices")
    failed = materialize_range(
        [raw_prices], keys[0], keys[-1], resources=gapped, instance=instance, raise_on_error=False
    )
    assert not failed.success
    failure = failed.get_step_failure_events()[0].event_specific_data
    # Raised while the IO manager writes the chunks, yet the step's error is the message itself.
    assert failure.error.cls_name == "Failure"
    assert f"no prices for ['IBM'] on 1 session(s) ({keys[26]})" in failure.user_failure_data.description
    pd.testing.assert_frame_equal(stored(settings, "raw_prices"), before)


class JumpingSource(PriceSourceResource):
    """The sample with MSFT's adj_close x 7.5 from `jump` on, past the source's own validation."""

    jump: str

    def get(self):
        jump = self.jump

        class _Source(SamplePriceSource):
            def fetch(self, tickers, start, end):
                frame = super().fetch(tickers, start, end)
                frame.loc[(frame["date"] >= jump) & (frame["ticker"] == "MSFT"), "adj_close"] *= 7.5
                return frame

        return _Source()


def test_the_quality_check_sees_moves_across_chunks(settings, resources, instance, raw_prices, monkeypatch):
    keys = KEYS[:30]
    monkeypatch.setattr(partitions, "CHUNK_SESSIONS", 8)
    jumping = {**resources, "price_source": JumpingSource(jump=keys[8])}  # the second chunk's first session
    result = materialize_range(
        [raw_prices, raw_prices_quality], keys[0], keys[-1], resources=jumping, instance=instance, raise_on_error=False
    )
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["rows_checked"].value == 30 * 4
    moves = {k: v.value for k, v in check.metadata.items() if k.startswith("violations:") and v.value}
    assert len(moves) == 1 and list(moves.values()) == [1] and "move" in next(iter(moves))
    assert f"{keys[8]} MSFT" in check.metadata["examples"].value
