"""`study`: what the search and its workers share. A trial whose process was killed is retried with
the same parameters by the next run (Optuna's heartbeats), and the two modules import no cycle."""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna

from stock_assets.lib.study import SearchBudget, SearchSpace, open_storage
from stock_assets_tests.helpers import random_training_arrays

TINY_SPACE = SearchSpace(architectures=("lstm",), hidden_sizes=(8,), max_layers=1, sequence_lengths=(5,))
BUDGET = SearchBudget(n_trials=2, timeout_seconds=120, max_epochs=2, patience=1, seed=1)
# The killed run: its first trial hangs in fit_model until the test kills the process.
KILLED_RUN = """
import sys, time
from stock_assets.lib import fitting, study
from stock_assets.lib.search import run_study
from stock_assets_tests.helpers import random_training_arrays
from stock_assets_tests.lib.test_study import BUDGET, TINY_SPACE
fitting.fit_model = lambda *args, **kwargs: time.sleep(600)
storage = study.open_storage(sys.argv[1], heartbeat_interval=1, grace_period=2)
run_study(random_training_arrays(), TINY_SPACE, BUDGET, storage, "k")
"""


def test_a_trial_killed_mid_run_is_retried_with_its_parameters_by_the_next_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, url], cwd=Path(__file__).parents[2])
    try:
        deadline = time.monotonic() + 60
        running = []
        while not running and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
            try:
                trials = optuna.load_study(study_name="k", storage=url).get_trials(
                    states=(optuna.trial.TrialState.RUNNING,)
                )
                running = [t for t in trials if "sequence_length" in t.params]  # in fit_model: all suggested
            except KeyError:  # the study does not exist yet
                pass
        assert running, "the killed run never started a trial"
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    killed = running[0]
    time.sleep(3)  # past the grace period: the killed trial's heartbeat is stale

    from stock_assets.lib.search import run_study

    study = run_study(
        random_training_arrays(), TINY_SPACE, BUDGET, open_storage(url, heartbeat_interval=1, grace_period=2), "k"
    )
    trials = study.trials
    assert trials[killed.number].state == optuna.trial.TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.params == killed.params and retry.state in (
        optuna.trial.TrialState.COMPLETE,
        optuna.trial.TrialState.PRUNED,
    )
    finished = [t for t in trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(finished) == BUDGET.n_trials  # the retry counts toward the budget, the killed trial does not


def test_names_known_without_torch_match_the_registries():
    from stock_assets.lib.models import ARCHITECTURES

    assert SearchSpace().architectures == ARCHITECTURES


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_stock_assets_lib_has_no_import_cycle():
    """Every import (also those inside functions) between modules of stock_assets.lib, as a graph."""
    import stock_assets.lib

    folder = Path(stock_assets.lib.__file__).parent
    modules = {f"stock_assets.lib.{p.stem}": p for p in folder.glob("*.py") if p.stem != "__init__"}
    graph = {name: imports_of(path) & set(modules) for name, path in modules.items()}
    assert "stock_assets.lib.search" not in graph["stock_assets.lib.search_workers"]

    def cycle_from(node, path):
        for nxt in graph[node]:
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            found = cycle_from(nxt, [*path, nxt])
            if found:
                return found
        return None

    cycles = [c for c in (cycle_from(name, [name]) for name in graph) if c]
    assert cycles == []
