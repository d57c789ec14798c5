import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey, materialize

from stock_assets.defs.features.assets import FEATURE_LOOKBACK, PRICE_WINDOW, processed_features
from stock_assets.defs.features.checks import processed_features_valid
from stock_assets.defs.ingestion.assets import raw_prices
from stock_assets.defs.ingestion.checks import raw_prices_quality
from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.lib.sources import SamplePriceSource
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import get_warehouse
from stock_assets_tests.helpers import materialize_range, sessions_from_start

ASSETS = [raw_prices, raw_prices_quality, processed_features, processed_features_valid]
KEYS = sessions_from_start(280)  # features exist from key FEATURE_LOOKBACK - 1 = 219 on


def stored(settings, table, first="0000", last="9999"):
    return get_warehouse(settings.warehouse_url).read_range(table, "date", first, last)


def test_one_partition_of_prices(settings, resources, instance):
    result = materialize([raw_prices, raw_prices_quality], partition_key="2012-10-31", resources=resources, instance=instance)
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


def test_range_backfill_of_prices_and_60_sessions_of_features(settings, resources, instance):
    result = materialize_range(ASSETS, KEYS[0], KEYS[-1], resources=resources, instance=instance)
    assert result.success
    prices = stored(settings, "raw_prices")
    assert len(prices) == 280 * 4 and prices["date"].min() == KEYS[0] and prices["date"].max() == KEYS[-1]
    features = stored(settings, "processed_features")
    assert features["date"].min() == KEYS[FEATURE_LOOKBACK - 1] == "2005-07-01" and features["date"].max() == KEYS[-1]
    assert len(features) == 61 * 4  # 61 sessions with a full lookback, 4 tickers
    assert list(features.columns) == ["date", "ticker", *FEATURE_COLUMNS]
    # Both assets recorded every partition of the range in Dagster, in one run.
    for key in (raw_prices.key, processed_features.key):
        assert len(instance.get_materialized_partitions(key)) == 280
    assert len(instance.get_runs()) == 1

    # A daily run of one session later reproduces exactly what the range run stored.
    before = features[features["date"] == KEYS[250]].reset_index(drop=True)
    materialize([raw_prices, processed_features], selection=[processed_features], partition_key=KEYS[250],
                resources=resources, instance=instance)  # fmt: skip
    after = stored(settings, "processed_features", KEYS[250], KEYS[250])
    assert after.equals(before)


def test_features_whose_price_lookback_is_missing_name_the_range(resources, instance):
    target = sessions_from_start(400)[-1]
    materialize_range([raw_prices], KEYS[0], KEYS[-1], resources=resources, instance=instance)
    result = materialize([raw_prices, processed_features], selection=[processed_features], partition_key=target,
                         resources=resources, instance=instance, raise_on_error=False)  # fmt: skip
    assert not result.success
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    keys = sessions_from_start(400)
    assert PRICE_WINDOW >= 400  # the whole history since the start is the lookback here
    assert f"120 of 400 needed partition(s) not materialized: {keys[280]}..{keys[399]}" in message


BAD_DAY = KEYS[250]


class CorruptedSource(PriceSourceResource):
    """The sample with one impossible bar: high below close on BAD_DAY for IBM."""

    def get(self):
        class _Source(SamplePriceSource):
            def fetch(self, tickers, start, end):
                frame = super().fetch(tickers, start, end)
                bad = (frame["date"] == BAD_DAY) & (frame["ticker"] == "IBM")
                frame.loc[bad, "high"] = frame.loc[bad, "close"] * 0.9
                return frame

        return _Source()


def test_corrupted_prices_fail_the_check_and_block_features(settings, resources, instance):
    materialize_range([raw_prices], KEYS[0], KEYS[249], resources=resources, instance=instance)
    corrupted = {**resources, "price_source": CorruptedSource(tickers=["AAPL", "GOOG", "IBM", "MSFT"])}
    result = materialize(ASSETS, partition_key=BAD_DAY, resources=corrupted, instance=instance, raise_on_error=False)
    assert not result.success
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "raw_prices_quality"]
    assert not check.passed
    assert check.metadata["violations: high below open/close"].value == 1
    assert f"{BAD_DAY} IBM" in check.metadata["examples"].value
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {AssetKey("raw_prices")}
    assert stored(settings, "processed_features").empty

    # A later run that selects only the features is refused by the same rules.
    later = materialize([raw_prices, processed_features], selection=[processed_features], partition_key=BAD_DAY,
                        resources=corrupted, instance=instance, raise_on_error=False)  # fmt: skip
    assert not later.success
    assert f"high below open/close: 1 ({BAD_DAY} IBM)" in str(later.get_step_failure_events()[0].event_specific_data.error)


def test_missing_ticker_in_source_stores_nothing(settings, resources, instance):
    materialize([raw_prices], partition_key="2012-10-31", resources=resources, instance=instance)
    unknown = {**resources, "price_source": PriceSourceResource(tickers=["AAPL", "TSLA"])}
    result = materialize([raw_prices], partition_key="2012-10-31", resources=unknown, instance=instance, raise_on_error=False)
    assert not result.success
    assert "no data for ['TSLA']" in str(result.get_step_failure_events()[0].event_specific_data.error)
    assert len(stored(settings, "raw_prices")) == 4  # what was stored before is intact


def test_cli_range_materialization(tmp_path):
    """`dagster asset materialize --partition-range` runs the range as one in-process run."""
    env = {"STOCK_ASSETS_HOME": str(tmp_path / "home"), "DAGSTER_HOME": str(tmp_path / "dh"), "PATH": "/usr/bin:/bin"}
    Path(env["DAGSTER_HOME"]).mkdir()
    keys = sessions_from_start(25)
    cmd = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "stock_assets.definitions",
           "--select", "raw_prices", "--partition-range", f"{keys[0]}...{keys[-1]}"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import sqlalchemy as sa

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


def test_vendor_readjustment_is_reported_not_mixed(settings, resources, instance):
    materialize_range([raw_prices], KEYS[0], KEYS[9], resources=resources, instance=instance)
    readjusted = {**resources, "price_source": ReadjustedSource(tickers=["AAPL", "GOOG", "IBM", "MSFT"])}
    result = materialize([raw_prices], partition_key=KEYS[10], resources=readjusted, instance=instance, raise_on_error=False)
    assert not result.success
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "changed 20 stored price(s) in the overlap" in message and "accept_vendor_readjustment" in message
    assert stored(settings, "raw_prices")["date"].max() == KEYS[9]  # nothing new stored
    accepted = materialize([raw_prices], partition_key=KEYS[10], resources=readjusted, instance=instance,
                           run_config={"ops": {"raw_prices": {"config": {"accept_vendor_readjustment": True}}}})  # fmt: skip
    assert accepted.success and stored(settings, "raw_prices")["date"].max() == KEYS[10]


def test_a_partition_key_that_is_not_a_session_is_refused(resources, instance):
    with pytest.raises(Exception, match="2012-10-29"):  # hurricane Sandy: the exchange was closed
        materialize([raw_prices], partition_key="2012-10-29", resources=resources, instance=instance)
