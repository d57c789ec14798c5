"""Bad input at the Dagster level (issue 11): every bad price file, partition range, run config and
setting is refused with a message that names what to fix, and nothing already stored changes.

The price files are the cases of `lib/test_prices.py` (which checks each message in detail against
the source alone) plus a few more; here each goes through a real `raw_prices` materialization on a
real instance and warehouse that already hold a good history.
"""

import datetime as dt

import pytest
import sqlalchemy as sa
from dagster import DagsterInvalidConfigError, instance_for_test, materialize

from stock_assets.lib.prices import MOVE_RULE
from stock_assets.resources import build_resources
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import LEDGER, get_warehouse
from stock_assets.settings import SettingsError, load_settings
from stock_assets_tests.conftest import TEST_SETTINGS
from stock_assets_tests.deployment.conftest import error_text
from stock_assets_tests.helpers import assets_of, range_tags
from stock_assets_tests.lib.test_prices import BAD_INPUTS, GOOD, HEADER, SESSIONS, R, csv, write_folder

STORED = (SESSIONS[0], SESSIONS[-2])  # the good history stored first
BAD_DAY = SESSIONS[-1]  # the session each bad input tries to add


def case(name, files, *fragments, first=BAD_DAY, last=BAD_DAY, marks=()):
    return pytest.param(files, (first, last), fragments, id=name, marks=marks)


def all_prices(row: str, value: str) -> str:
    """`row` with open, high, low, close and adj_close all set to `value`."""
    date, ticker, *_, volume = row.split(",")
    return ",".join([date, ticker, *[value] * 5, volume])


DAGSTER_CASES = [
    case(
        "price of 1e12",
        {"ACME.csv": csv(R[:-1] + [all_prices(R[-1], "1e12")])},
        MOVE_RULE,
        f"{BAD_DAY} ACME (previous_adj_close=10.4, adj_close=1e+12",
        f"accepted_moves: [[ACME, {BAD_DAY}]]",
        "max_abs_log_return",
    ),
    case(
        "split ratio as text",
        {"ACME.csv": csv([r + ",0" for r in R[:-1]] + [R[-1] + ",2:1"], HEADER + ",Stock Splits")},
        "ACME.csv",
        "non-numeric stock_splits",
        f"{BAD_DAY} ACME (stock_splits='2:1')",
        "plain numbers",
    ),
    case(
        "price of 1e12 on the first row, fetched alone",
        {"ACME.csv": csv([all_prices(R[0], "1e12"), *R[1:]])},
        MOVE_RULE,
        f"{SESSIONS[1]} ACME (previous_adj_close=1e+12, adj_close=10.4",
        first=SESSIONS[0],
        last=SESSIONS[0],
    ),
    case(
        "reversed partition range",
        {"ACME.csv": GOOD},
        SESSIONS[-1],
        SESSIONS[-3],
        "is reversed",
        first=SESSIONS[-1],
        last=SESSIONS[-3],
    ),
]


@pytest.fixture(scope="module")
def stored_history(tmp_path_factory):
    """One ticker's good prices for STORED, materialized once; each case then tries to add BAD_DAY."""
    root = tmp_path_factory.mktemp("bad_inputs")
    settings = TEST_SETTINGS.model_copy(
        update={
            "home": root / "home",
            "tickers": ("ACME",),
            "start_date": dt.date.fromisoformat(SESSIONS[0]),
            "source": "csv",
            "csv_path": write_folder(root / "good", {"ACME.csv": GOOD}),
        }
    )
    (raw_prices,) = assets_of(settings, "raw_prices")
    resources = build_resources(settings)
    (root / "dagster_home").mkdir()
    with instance_for_test(temp_dir=str(root / "dagster_home")) as instance:
        result = materialize([raw_prices], resources=resources, instance=instance, tags=range_tags(*STORED))
        assert result.success
        yield settings, raw_prices, resources, instance
    get_warehouse.cache_clear()


def stored_counts(settings) -> dict[str, int]:
    with sa.create_engine(settings.warehouse_url).connect() as conn:
        return {
            table: conn.execute(sa.text(f"select count(*) from {table}")).scalar() for table in ("raw_prices", LEDGER)
        }


# The csv source validates the window it serves (plus the row before it), so each file's bad rows
# are fetched: a re-materialization of the whole history (stored sessions and BAD_DAY).
PRICE_CASES = [pytest.param(*p.values[:1], (SESSIONS[0], BAD_DAY), *p.values[1:], id=p.id) for p in BAD_INPUTS]


@pytest.mark.parametrize("files, selection, fragments", [*PRICE_CASES, *DAGSTER_CASES])
def test_bad_price_input_is_refused_and_nothing_stored_changes(stored_history, tmp_path, files, selection, fragments):
    settings, raw_prices, resources, instance = stored_history
    before = stored_counts(settings)
    assert before == {"raw_prices": 9, LEDGER: 9}
    folder = write_folder(tmp_path / "prices", files)
    bad_source = {**resources, "price_source": PriceSourceResource(source="csv", csv_path=str(folder))}
    first, last = selection
    result = materialize(
        [raw_prices], resources=bad_source, instance=instance, tags=range_tags(first, last), raise_on_error=False
    )
    assert not result.success
    message = error_text(result)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert stored_counts(settings) == before
    # Bad input fails the same way twice: the instance's run retries never repeat it (defs/failures.py).
    assert instance.get_run_by_id(result.run_id).tags.get("dagster/retry_on_asset_or_op_failure") == "false"


# --- run config: refused when the run is launched, before any step ---------------------------------
BAD_RUN_CONFIGS = [
    ("retraining_job", "best_params", {"n_trials": 0}, "n_trials", "outside the allowed range 1..1000"),
    ("retraining_job", "candidate_model", {"max_epochs": -1}, "max_epochs", "outside the allowed range 1..1000"),
    (
        "retraining_job",
        "best_params",
        {"learning_rate": [3e-3, 3e-4]},
        "learning_rate",
        "must be in ascending order (low before high), got [0.003, 0.0003]",
    ),
    ("retraining_job", "best_params", {"hidden_sizes": []}, "hidden_sizes", "needs at least 1 item(s)"),
    ("retraining_job", "best_params", {"architectures": ["gru"]}, "architectures", "not in enum type Architecture"),
    ("retraining_job", "best_params", {"sequence_lengths": [5, 40]}, "sequence_lengths", "range 2..10"),
    ("retraining_job", "best_params", {"max_dropout": 0.9}, "max_dropout", "outside the allowed range 0..0.8"),
    ("retraining_job", "training_datasets", {"training_window": 151}, "training_window", "range 150..150"),
    ("price_history_job", "raw_prices", {"overlap_sessions": 61}, "overlap_sessions", "range 0..60"),
]


@pytest.mark.parametrize(
    "job_name, op, config, key, allowed",
    BAD_RUN_CONFIGS,
    ids=[f"{op}.{key}" for _, op, _, key, _ in BAD_RUN_CONFIGS],
)
def test_bad_run_config_is_refused_at_launch(defs, instance, job_name, op, config, key, allowed):
    job = defs.resolve_job_def(job_name)
    with pytest.raises(DagsterInvalidConfigError) as caught:
        job.execute_in_process(
            instance=instance, partition_key="2006-02-22", run_config={"ops": {op: {"config": config}}}
        )
    message = str(caught.value)
    assert f"root:ops:{op}:config:{key}" in message and allowed in message, message
    assert instance.get_runs() == []  # no run was even created, so no step ran and nothing materialized


def test_good_run_config_values_pass_the_same_checks(defs):
    """The defaults and in-range values are accepted: the launch checks are not stricter than the settings."""
    from dagster import validate_run_config

    config = {
        "ops": {
            "best_params": {"config": {"n_trials": 1000, "learning_rate": [1e-4, 1e-4], "max_dropout": 0.0}},
            "candidate_model": {"config": {"max_epochs": 1}},
            "training_datasets": {"config": {"training_window": 150}},
        }
    }
    assert validate_run_config(defs.resolve_job_def("retraining_job"), config)


# --- settings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("make_unusable", ["a file", "under a file"])
def test_an_unusable_home_is_refused_when_settings_load(tmp_path, make_unusable):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    home = blocker if make_unusable == "a file" else blocker / "home"
    with pytest.raises(SettingsError) as caught:
        load_settings(environ={"STOCK_ASSETS_HOME": str(home)})
    message = str(caught.value)
    assert f"home: cannot create or write {home}" in message
    assert "from env STOCK_ASSETS_HOME" in message and "writable directory" in message


def test_partition_range_helper_names_both_dates():
    """`run_partition_keys`, which the reversed-range case above needs raw_prices to use."""
    from stock_assets.partitions import PartitionRangeError, build_trading_day_partitions, run_partition_keys

    partitions = build_trading_day_partitions(dt.date.fromisoformat(SESSIONS[0]))
    with pytest.raises(PartitionRangeError, match=f"range {SESSIONS[4]}...{SESSIONS[1]} is reversed: its start"):
        run_partition_keys(RangeContext(partitions, SESSIONS[4], SESSIONS[1]))
    assert run_partition_keys(RangeContext(partitions, SESSIONS[1], SESSIONS[4])) == SESSIONS[1:5]


class RangeContext:
    """The two context attributes `run_partition_keys` reads, as Dagster computes them for a range run."""

    def __init__(self, partitions, first, last):
        from dagster import PartitionKeyRange

        self.partition_key_range = PartitionKeyRange(first, last)
        self.partition_keys = partitions.get_partition_keys_in_range(self.partition_key_range)


# --- a source lacking a ticker or a column: refused when the code location loads (issue 23, item 4) -----
@pytest.mark.parametrize(
    "files, fragments",
    [
        pytest.param({"ACME.csv": GOOD}, ["has no rows for ['ZZZ']; found ['ACME']", "Add their files"], id="ticker"),
        pytest.param(
            {"ACME.csv": csv([",".join(r.split(",")[:-1]) for r in R], HEADER.rsplit(",", 1)[0]), "ZZZ.csv": GOOD},
            ["ACME.csv: missing columns ['volume']"],
            id="column",
        ),
    ],
)
def test_a_range_run_over_a_source_lacking_a_ticker_or_column_is_refused_before_any_run(tmp_path, files, fragments):
    """`dagster job execute` over a range: the code location refuses to load, so no run is created and
    Dagster plans none of its partitions (before: the refusal came after minutes of planning events)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    folder = write_folder(tmp_path / "prices", {**files})
    (tmp_path / "dh").mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "DAGSTER_HOME": str(tmp_path / "dh"),
        "STOCK_ASSETS_HOME": str(tmp_path / "home"),
        "STOCK_ASSETS_SOURCE": "csv",
        "STOCK_ASSETS_CSV_PATH": str(folder),
        "STOCK_ASSETS_TICKERS": "ACME,ZZZ",
        "STOCK_ASSETS_START_DATE": SESSIONS[0],
        "STOCK_ASSETS_END_DATE": SESSIONS[-1],
    }
    cmd = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "stock_assets.definitions"]
    cmd += ["-j", "price_history_job", "--tags", json.dumps(range_tags(SESSIONS[0], SESSIONS[-1]))]
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "invalid stock_assets settings" in output and "checked when the code location loads" in output
    for fragment in fragments:
        assert fragment in output, output[-3000:]
    with instance_for_test(temp_dir=str(tmp_path / "dh")) as instance:
        assert instance.get_runs() == []
    assert not (tmp_path / "home" / "warehouse.db").exists()
