"""Per-run training knobs, editable in the Launchpad; their defaults are this deployment's settings."""

from dataclasses import dataclass

from dagster import Config
from pydantic import Field, field_validator

from stock_assets.settings import ARCHITECTURE_NAMES, TrainingSettings


@dataclass(frozen=True)
class TrainingConfigs:
    dataset: type[Config]
    search: type[Config]
    fit: type[Config]


def build_training_configs(training: TrainingSettings) -> TrainingConfigs:
    window, max_seq = training.training_window, max(training.sequence_lengths)

    class DatasetConfig(Config):
        training_window: int = Field(
            window, ge=150, le=window, description=f"sessions of history (at most the {window} the lineage declares)"
        )

    class SearchConfig(Config):
        n_trials: int = Field(training.n_trials, ge=1, le=1000)
        timeout_seconds: int = Field(training.search_timeout_seconds, ge=10, le=86_400)
        max_epochs: int = Field(training.max_epochs, ge=1, le=1000)
        patience: int = Field(training.patience, ge=1, le=100)
        seed: int = Field(training.seed, ge=0)
        architectures: list[str] = Field(list(ARCHITECTURE_NAMES))
        hidden_sizes: list[int] = Field([16, 32, 64])
        max_layers: int = Field(2, ge=1, le=4)
        max_dropout: float = Field(0.3, ge=0, le=0.8)
        learning_rate_min: float = Field(3e-4, gt=0, le=1)
        learning_rate_max: float = Field(3e-3, gt=0, le=1)
        batch_sizes: list[int] = Field([32, 64])
        sequence_lengths: list[int] = Field(list(training.sequence_lengths))

        @field_validator("architectures")
        @classmethod
        def _known(cls, value: list[str]) -> list[str]:
            unknown = sorted(set(value) - set(ARCHITECTURE_NAMES))
            if unknown or not value:
                raise ValueError(f"architectures must be a non-empty subset of {list(ARCHITECTURE_NAMES)}, got {value}")
            return value

        @field_validator("sequence_lengths")
        @classmethod
        def _fits_embargo(cls, value: list[int]) -> list[int]:
            if not value or any(not 2 <= v <= max_seq for v in value):
                raise ValueError(f"sequence_lengths must lie in [2, {max_seq}] (the datasets' embargo), got {value}")
            return value

        def space(self):
            from stock_assets.lib.search import SearchSpace

            return SearchSpace(
                architectures=tuple(self.architectures),
                hidden_sizes=tuple(self.hidden_sizes),
                max_layers=self.max_layers,
                max_dropout=self.max_dropout,
                learning_rate=(self.learning_rate_min, self.learning_rate_max),
                batch_sizes=tuple(self.batch_sizes),
                sequence_lengths=tuple(self.sequence_lengths),
            )

        def budget(self):
            from stock_assets.lib.search import SearchBudget

            return SearchBudget(self.n_trials, self.timeout_seconds, self.max_epochs, self.patience, self.seed)

    class FitConfig(Config):
        max_epochs: int = Field(training.max_epochs, ge=1, le=1000)
        patience: int = Field(training.patience, ge=1, le=100)
        seed: int = Field(training.seed, ge=0)

    return TrainingConfigs(DatasetConfig, SearchConfig, FitConfig)
