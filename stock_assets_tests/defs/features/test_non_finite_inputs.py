"""NaN-producing inputs never reach features (issue 23, item 1): a volume of 1e308 in the stored prices
(e.g. stored before the sanity rules existed) fails `processed_features` naming ticker, session, value
and rule, and no feature row is written; a non-finite feature value is refused the same way."""

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import materialize

from stock_assets.defs.features.assets import finite_features
from stock_assets.lib.indicators import FEATURE_COLUMNS
from stock_assets.lib.prices import VOLUME_BOUND, PriceDataError
from stock_assets_tests.conftest import HISTORY_SESSIONS
from stock_assets_tests.deployment.conftest import error_text
from stock_assets_tests.helpers import sessions_from_start

KEYS = sessions_from_start(HISTORY_SESSIONS)


def test_an_extreme_stored_volume_fails_features_and_writes_nothing(
    history, resources, instance, raw_prices, processed_features
):
    settings = history
    day, bad_day = KEYS[-1], KEYS[-3]
    engine = sa.create_engine(settings.warehouse_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE raw_prices SET volume = 1e308 WHERE date = :d AND ticker = 'MSFT'"), {"d": bad_day}
        )
        before = conn.execute(sa.text("select count(*) from processed_features where date = :d"), {"d": day}).scalar()
        conn.execute(sa.text("DELETE FROM processed_features WHERE date = :d"), {"d": day})
    result = materialize(
        [raw_prices, processed_features],
        selection=[processed_features],
        partition_key=day,
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert before == 4 and not result.success
    message = error_text(result)
    assert VOLUME_BOUND in message and f"{bad_day} MSFT" in message and "no features were written" in message
    with engine.connect() as conn:
        assert (
            conn.execute(sa.text("select count(*) from processed_features where date = :d"), {"d": day}).scalar() == 0
        )
    engine.dispose()
    assert instance.get_run_by_id(result.run_id).tags["dagster/retry_on_asset_or_op_failure"] == "false"


def test_non_finite_feature_values_are_refused_by_name():
    rows = pd.DataFrame({"date": ["2010-01-04", "2010-01-05"], "ticker": ["AAPL", "IBM"]})
    frame = rows.assign(**{c: 0.5 for c in FEATURE_COLUMNS})
    assert finite_features(frame) is frame
    frame.loc[1, FEATURE_COLUMNS[3]] = np.nan
    with pytest.raises(PriceDataError, match=f"1 non-finite feature value.*2010-01-05 IBM {FEATURE_COLUMNS[3]}=nan"):
        finite_features(frame)
