"""`processed_features` on a real instance and warehouse: range runs, date-anchored identity,
missing lookbacks, and prices that fail the quality rules."""

import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import AssetKey, materialize

from stock_assets import partitions
from stock_assets.defs.features.checks import processed_features_valid
from stock_assets.defs.ingestion.checks import raw_prices_quality
from stock_assets.lib.indicators import FEATURE_COLUMNS, max_window
from stock_assets.lib.sources import SamplePriceSource
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import get_warehouse
from stock_assets_tests.conftest import TEST_SETTINGS
from stock_assets_tests.helpers import materialize_range, sessions_from_start

KEYS = sessions_from_start(280)  # features exist from key feature_lookback - 1 = 219 on
FEATURE_LOOKBACK = TEST_SETTINGS.feature_lookback
PRICE_WINDOW = max_window(FEATURE_LOOKBACK)


def stored(settings, table, first="0000", last="9999"):
    return get_warehouse(settings.warehouse_url).read_range(table, "date", first, last)


@pytest.fixture
def all_assets(raw_prices, processed_features):
    return [raw_prices, raw_prices_quality, processed_features, processed_features_valid]


@pytest.mark.parametrize("chunk_sessions", [500, 25], ids=["one chunk", "twelve chunks"])
def test_range_backfill_of_prices_and_60_sessions_of_features(
    settings, resources, instance, all_assets, raw_prices, processed_features, chunk_sessions, monkeypatch
):
    monkeypatch.setattr(partitions, "CHUNK_SESSIONS", chunk_sessions)
    result = materialize_range(all_assets, KEYS[0], KEYS[-1], resources=resources, instance=instance)
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
    (write,) = [e for e in result.get_asset_materialization_events() if e.asset_key == processed_features.key][:1]
    assert write.materialization.metadata["warehouse_rows_written"].value == 61 * 4

    # A daily run of one session later reproduces exactly what the range run stored.
    before = features[features["date"] == KEYS[250]].reset_index(drop=True)
    materialize(
        [raw_prices, processed_features],
        selection=[processed_features],
        partition_key=KEYS[250],
        resources=resources,
        instance=instance,
    )
    after = stored(settings, "processed_features", KEYS[250], KEYS[250])
    assert after.equals(before)


def test_features_whose_price_lookback_is_missing_name_the_range(resources, instance, raw_prices, processed_features):
    target = sessions_from_start(400)[-1]
    materialize_range([raw_prices], KEYS[0], KEYS[-1], resources=resources, instance=instance)
    result = materialize(
        [raw_prices, processed_features],
        selection=[processed_features],
        partition_key=target,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
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


def test_corrupted_prices_fail_the_check_and_block_features(
    settings, resources, instance, all_assets, raw_prices, processed_features
):
    materialize_range([raw_prices], KEYS[0], KEYS[249], resources=resources, instance=instance)
    corrupted = {**resources, "price_source": CorruptedSource()}
    result = materialize(
        all_assets, partition_key=BAD_DAY, resources=corrupted, instance=instance, raise_on_error=False
    )
    assert not result.success
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == "raw_prices_quality"]
    assert not check.passed
    assert check.metadata["violations: high below open/close"].value == 1
    assert f"{BAD_DAY} IBM" in check.metadata["examples"].value
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {AssetKey("raw_prices")}
    assert stored(settings, "processed_features").empty

    # A later run that selects only the features is refused by the same rules.
    later = materialize(
        [raw_prices, processed_features],
        selection=[processed_features],
        partition_key=BAD_DAY,
        resources=corrupted,
        instance=instance,
        raise_on_error=False,
    )
    assert not later.success
    assert f"high below open/close: 1 ({BAD_DAY} IBM)" in str(
        later.get_step_failure_events()[0].event_specific_data.error
    )


def test_a_chunk_that_fails_leaves_the_stored_features_as_they_were(
    settings, resources, instance, all_assets, raw_prices, processed_features, monkeypatch
):
    """A range run writes its chunks in one transaction: bad prices in the last chunk keep every row
    of the first chunks (and of the earlier materialization) out of the table or unchanged."""
    materialize_range(all_assets, KEYS[0], KEYS[-1], resources=resources, instance=instance)
    engine = sa.create_engine(settings.warehouse_url)
    with engine.begin() as conn:
        # A marker a committed earlier chunk would overwrite, and a stored bar turned impossible.
        conn.execute(sa.text("UPDATE processed_features SET rsi_14 = 42 WHERE date = :d"), {"d": KEYS[230]})
        conn.execute(
            sa.text("UPDATE raw_prices SET high = close * 0.5 WHERE date = :d AND ticker = 'IBM'"), {"d": KEYS[270]}
        )
    engine.dispose()
    before = stored(settings, "processed_features")
    monkeypatch.setattr(partitions, "CHUNK_SESSIONS", 20)  # 61 sessions with rows: chunks of 20, the last one bad
    result = materialize_range(
        [raw_prices, processed_features],
        KEYS[0],
        KEYS[-1],
        selection=[processed_features],
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    message = str(result.get_step_failure_events()[0].event_specific_data.error)
    assert "raw_prices fail quality rules in" in message and f"{KEYS[270]} IBM" in message
    # Bad stored data fails the same way twice: the run says not to retry it (defs/failures.py).
    assert instance.get_run_by_id(result.run_id).tags.get("dagster/retry_on_asset_or_op_failure") == "false"
    after = stored(settings, "processed_features")
    pd.testing.assert_frame_equal(after, before)
    assert len(after) == 61 * 4 and (after.loc[after["date"] == KEYS[230], "rsi_14"] == 42).all()
