import dataclasses

import optuna

from stock_assets.lib.search import (
    FINGERPRINT_ATTR,
    SearchBudget,
    SearchSpace,
    run_study,
    search_fingerprint,
    study_summary,
    suggest_params,
)
from stock_assets.lib.training import LOSSES
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
    assert {t.params["loss"] for t in more.trials} <= set(LOSSES)


def test_loss_is_a_categorical_choice_from_the_space():
    assert SearchSpace().losses == LOSSES == ("mse", "huber", "mae")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    params = suggest_params(trial, SearchSpace(losses=("huber", "mae")))
    assert params["loss"] in ("huber", "mae")
    distribution = trial.distributions["loss"]
    assert isinstance(distribution, optuna.distributions.CategoricalDistribution)
    assert distribution.choices == ("huber", "mae")


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
