import optuna

from stock_assets.lib.search import SearchBudget, SearchSpace, run_study, study_summary, suggest_params
from stock_assets.lib.training import LOSSES
from stock_assets_tests.helpers import random_training_arrays

arrays = random_training_arrays


def test_study_resumes_from_storage_and_never_reruns_finished_trials(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    space = SearchSpace(architectures=("lstm",), hidden_sizes=(8,), max_layers=1, sequence_lengths=(5,))
    budget = SearchBudget(n_trials=3, timeout_seconds=60, max_epochs=2, patience=1, seed=1)
    seen = []
    study = run_study(arrays(), space, budget, storage, "s", on_trial=seen.append)
    assert len(study.trials) == 3 and len(seen) == 3
    again = run_study(arrays(), space, budget, storage, "s", on_trial=seen.append)
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
