import dataclasses
import os
import time

import numpy as np
import optuna
import pytest

from stock_assets.lib.search import (
    FINGERPRINT_ATTR,
    SEARCHED_ARRAYS,
    SearchBudget,
    SearchSpace,
    run_study,
    search_fingerprint,
    study_summary,
    suggest_params,
)
from stock_assets.lib.search_workers import WORKER_PID_ATTR, cgroup_cpu_limit, trial_shares, worker_main
from stock_assets_tests.helpers import random_training_arrays

arrays = random_training_arrays


def test_study_resumes_from_storage_and_never_reruns_finished_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = SearchSpace(architectures=("lstm",), hidden_sizes=(8,), max_layers=1, sequence_lengths=(5,))
    budget = SearchBudget(n_trials=3, timeout_seconds=60, max_epochs=2, patience=1, seed=1)
    seen = []
    study = run_study(arrays(), space, budget, storage, "s", on_trial=lambda name, trial: seen.append(name))
    assert len(study.trials) == 3 and seen == ["s"] * 3  # each trial names the study it ran in
    again = run_study(arrays(), space, budget, storage, "s", on_trial=lambda name, trial: seen.append(name))
    assert len(again.trials) == 3 and len(seen) == 3  # nothing left to do
    budget.n_trials = 5
    more = run_study(arrays(), space, budget, storage, "s")
    assert len(more.trials) == 5
    summary = study_summary(more)
    assert summary["n_trials"] == 5 and summary["n_complete"] + summary["n_pruned"] == 5
    # The objective is the validation loss reported per epoch (what the pruner sees).
    best = more.best_trial
    assert best.value == min(best.intermediate_values.values())
    assert optuna.load_study(study_name="s", storage=storage).best_trial.number == best.number


def test_the_loss_is_not_searched_the_networks_train_on_the_pinball_loss():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = suggest_params(study.ask(), SearchSpace())
    assert "loss" not in params and set(params) >= {"architecture", "hidden_size", "sequence_length"}


def trial_counts(storage) -> dict[str, int]:
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}


def test_a_changed_search_space_starts_its_own_study_and_the_old_one_resumes(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = SearchSpace(architectures=("lstm",), hidden_sizes=(8,), max_layers=1, sequence_lengths=(5,))
    budget = SearchBudget(n_trials=2, timeout_seconds=60, max_epochs=2, patience=1, seed=1)
    first = run_study(arrays(), space, budget, storage, "m-2010-01-04")
    assert first.study_name == "m-2010-01-04"
    fingerprint, described = search_fingerprint(arrays(), space, budget)
    assert first.user_attrs[FINGERPRINT_ATTR] == fingerprint
    assert first.user_attrs["search"]["space"]["hidden_sizes"] == [8]

    wider = dataclasses.replace(space, hidden_sizes=(8, 16))
    second = run_study(arrays(), wider, budget, storage, "m-2010-01-04")
    new_fingerprint = search_fingerprint(arrays(), wider, budget)[0]
    assert new_fingerprint != fingerprint and second.study_name == f"m-2010-01-04-{new_fingerprint}"
    assert trial_counts(storage) == {"m-2010-01-04": 2, second.study_name: 2}  # the first search is untouched

    # Going back resumes the first search (nothing left to run); so does a larger budget or another seed.
    assert run_study(arrays(), space, budget, storage, "m-2010-01-04").study_name == "m-2010-01-04"
    more = dataclasses.replace(budget, n_trials=3, seed=2, timeout_seconds=30)
    assert run_study(arrays(), space, more, storage, "m-2010-01-04").study_name == "m-2010-01-04"
    assert trial_counts(storage) == {"m-2010-01-04": 3, second.study_name: 2}


def test_the_epochs_budget_and_the_data_are_part_of_the_search():
    space, budget = SearchSpace(), SearchBudget(n_trials=2, timeout_seconds=60, max_epochs=2, patience=1)
    base = search_fingerprint(arrays(), space, budget)[0]
    assert search_fingerprint(arrays(), space, dataclasses.replace(budget, max_epochs=3))[0] != base
    assert search_fingerprint(arrays(), space, dataclasses.replace(budget, patience=2))[0] != base
    assert search_fingerprint(arrays(n=130), space, budget)[0] != base  # another training window
    shorter = {**arrays(), "validation": arrays()["validation"][1:]}
    assert search_fingerprint(shorter, space, budget)[0] != base


# --- several worker processes sharing one study ------------------------------------------------
TINY_SPACE = SearchSpace(architectures=("lstm",), hidden_sizes=(8,), max_layers=1, sequence_lengths=(5,))
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def test_trials_are_shared_out_exactly():
    assert trial_shares(8, 2) == [4, 4]
    assert trial_shares(5, 2) == [3, 2]
    assert trial_shares(3, 4) == [1, 1, 1]  # no idle worker is started
    assert sum(trial_shares(13, 5)) == 13


def test_a_container_cpu_quota_caps_the_cores_workers_share(tmp_path):
    (tmp_path / "cpu.max").write_text("200000 100000\n")  # cgroup v2, docker --cpus=2
    assert cgroup_cpu_limit(tmp_path) == 2.0
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("150000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert cgroup_cpu_limit(tmp_path / "missing") is None


def test_two_worker_processes_share_one_study_and_run_exactly_n_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    budget = SearchBudget(n_trials=6, timeout_seconds=120, max_epochs=2, patience=1, seed=1)
    logged = []
    study = run_study(
        arrays(), TINY_SPACE, budget, storage, "w", on_trial=lambda name, t: logged.append((name, t.number)), workers=2
    )
    trials = optuna.load_study(study_name="w", storage=storage).trials  # what the storage holds
    assert len(trials) == 6 and all(t.state in FINISHED for t in trials)
    pids = [t.user_attrs[WORKER_PID_ATTR] for t in trials]
    assert os.getpid() not in pids and sorted(pids.count(pid) for pid in set(pids)) == [3, 3]  # 2 processes
    # One sampler seed per worker: no two trials propose the same parameters.
    assert len({(t.params["dropout"], t.params["learning_rate"]) for t in trials}) == 6
    # The caller sees every finished trial once, in trial-number order, after the workers are done.
    assert logged == [("w", n) for n in range(6)]
    complete = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert study_summary(study)["n_trials"] == 6 and study.best_value == min(complete)

    # Resuming starts no worker when nothing is missing, and only the missing trials otherwise.
    assert len(run_study(arrays(), TINY_SPACE, budget, storage, "w", on_trial=logged.append, workers=2).trials) == 6
    assert len(logged) == 6
    more = run_study(arrays(), TINY_SPACE, dataclasses.replace(budget, n_trials=7), storage, "w", workers=2)
    assert len(more.trials) == 7 and more.trials[6].state in FINISHED


def test_a_failing_worker_makes_the_search_raise_with_its_message(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    broken = dataclasses.replace(TINY_SPACE, hidden_sizes=(0,))  # every trial fails inside the worker
    budget = SearchBudget(n_trials=4, timeout_seconds=120, max_epochs=2, patience=1, seed=1)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"search worker \d of 2 .* failed .*hidden_size must be >= 1"):
        run_study(arrays(), broken, budget, storage, "f", workers=2)
    assert time.monotonic() - started < 60
    states = {t.state for t in optuna.load_study(study_name="f", storage=storage).trials}
    assert states == {optuna.trial.TrialState.FAIL}  # nothing left RUNNING


@pytest.fixture
def keep_torch_threads():
    """worker_main sets torch's thread count (its share of the cores): restore this process's."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_a_worker_joins_only_a_study_of_the_same_search(tmp_path, monkeypatch, keep_torch_threads):
    """The entry point a worker on another machine runs: the study's recorded search and fingerprint
    must match the arrays it was given, and the storage URL comes from the environment."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    budget = SearchBudget(n_trials=1, timeout_seconds=60, max_epochs=2, patience=1, seed=1)
    run_study(arrays(), TINY_SPACE, budget, storage, "j")
    same, other = tmp_path / "same.npz", tmp_path / "other.npz"
    np.savez(same, **{k: v for k, v in arrays().items() if k in SEARCHED_ARRAYS})
    np.savez(other, **{k: v for k, v in arrays(n=130).items() if k in SEARCHED_ARRAYS})
    error = tmp_path / "error.txt"
    argv = ["--study", "j", "--n-trials", "1", "--seed", "2", "--threads", "1", "--error-file", str(error)]

    monkeypatch.delenv("STOCK_ASSETS_OPTUNA_STORAGE", raising=False)
    assert worker_main([*argv, "--arrays", str(same)]) == 1
    assert "STOCK_ASSETS_OPTUNA_STORAGE" in error.read_text() and "sqlite" not in error.read_text()
    monkeypatch.setenv("STOCK_ASSETS_OPTUNA_STORAGE", storage)
    assert worker_main([*argv, "--arrays", str(other)]) == 1
    assert "refusing to mix trials" in error.read_text()
    error.unlink()
    assert worker_main([*argv, "--arrays", str(same)]) == 0 and not error.exists()
    trials = optuna.load_study(study_name="j", storage=storage).trials
    assert len(trials) == 2 and trials[1].user_attrs[WORKER_PID_ATTR] == os.getpid()


def test_a_storage_removed_mid_search_says_what_happened_and_what_to_do(tmp_path):
    """Optuna's own answer is "AssertionError: Should not reach." (issue 23)."""
    from stock_assets.lib.search import StudyStorageError

    db = tmp_path / "optuna.db"
    budget = SearchBudget(n_trials=4, timeout_seconds=60, max_epochs=1, patience=1, seed=1)

    def remove_after_first(name, trial):
        db.unlink(missing_ok=True)

    with pytest.raises(StudyStorageError) as caught:
        run_study(arrays(), TINY_SPACE, budget, f"sqlite:///{db}", "s", on_trial=remove_after_first)
    message = str(caught.value)
    assert f"its file {db} no longer exists" in message
    assert "STOCK_ASSETS_OPTUNA_STORAGE" in message and "rerun retraining_job" in message
    assert "Should not reach" not in message
