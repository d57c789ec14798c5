"""Per-run training knobs, editable in the Launchpad; their defaults are this deployment's settings
and, for the search space, `SearchSpace`'s own (lib/study.py: one place for each default)."""

from dataclasses import dataclass

from dagster import Config
from pydantic import Field

from stock_assets.defs.config_types import between, list_of, one_of
from stock_assets.lib.study import ARCHITECTURE_NAMES, SearchBudget, SearchSpace
from stock_assets.settings import TrainingSettings

SPACE = SearchSpace()  # the defaults of the searched hyperparameters


@dataclass(frozen=True)
class TrainingConfigs:
    dataset: type[Config]
    search: type[Config]
    fit: type[Config]


def build_training_configs(training: TrainingSettings) -> TrainingConfigs:
    """The Config classes with this deployment's defaults. Every field is bounded in the config schema,
    so a bad value fails the launch, naming the key and the allowed range, before any step runs
    (docs/decisions.md, "Run config")."""
    window, max_seq = training.training_window, max(training.sequence_lengths)
    epochs_range, patience_range, seed_range = between(1, 1000), between(1, 100), between(0, 2**32 - 1)

    class DatasetConfig(Config):
        training_window: between(150, window) = Field(
            window, description=f"sessions of history (at most the {window} the lineage declares)"
        )

    class SearchConfig(Config):
        n_trials: between(1, 1000) = Field(training.n_trials)
        timeout_seconds: between(10, 86_400) = Field(training.search_timeout_seconds)
        max_epochs: epochs_range = Field(training.max_epochs)
        patience: patience_range = Field(training.patience)
        seed: seed_range = Field(training.seed)
        search_workers: between(1, 64) = Field(
            training.search_workers,
            description="worker processes sharing the study, each with its share of the cores "
            "(1: the search runs in the run's own process)",
        )
        architectures: list_of(one_of(*ARCHITECTURE_NAMES, name="Architecture")) = Field(list(SPACE.architectures))
        hidden_sizes: list_of(between(1, 1024)) = Field(list(SPACE.hidden_sizes))
        max_layers: between(1, 4) = Field(SPACE.max_layers)
        max_dropout: between(0.0, 0.8) = Field(SPACE.max_dropout)
        learning_rate: list_of(between(1e-6, 1.0), min_length=2, max_length=2, ascending=True) = Field(
            list(SPACE.learning_rate), description="[low, high] of the log-uniform learning-rate range"
        )
        batch_sizes: list_of(between(1, 4096)) = Field(list(SPACE.batch_sizes))
        sequence_lengths: list_of(between(2, max_seq)) = Field(
            list(training.sequence_lengths), description=f"window lengths, at most {max_seq} (the datasets' embargo)"
        )

        def space(self) -> SearchSpace:
            return SearchSpace(
                architectures=tuple(self.architectures),
                hidden_sizes=tuple(self.hidden_sizes),
                max_layers=self.max_layers,
                max_dropout=self.max_dropout,
                learning_rate=(self.learning_rate[0], self.learning_rate[1]),
                batch_sizes=tuple(self.batch_sizes),
                sequence_lengths=tuple(self.sequence_lengths),
            )

        def budget(self) -> SearchBudget:
            return SearchBudget(self.n_trials, self.timeout_seconds, self.max_epochs, self.patience, self.seed)

    class FitConfig(Config):
        max_epochs: epochs_range = Field(training.max_epochs)
        patience: patience_range = Field(training.patience)
        seed: seed_range = Field(training.seed)

    return TrainingConfigs(DatasetConfig, SearchConfig, FitConfig)
