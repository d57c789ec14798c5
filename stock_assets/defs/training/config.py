"""Per-run training knobs, editable in the Launchpad; defaults come from the validated settings."""

from dagster import Config
from pydantic import Field, field_validator

from stock_assets.lib.search import ARCHITECTURES
from stock_assets.settings import get_settings

_T = get_settings().training
TRAINING_WINDOW = _T.training_window
MAX_SEQUENCE_LENGTH = max(_T.sequence_lengths)


class DatasetConfig(Config):
    training_window: int = Field(
        TRAINING_WINDOW, ge=150, le=TRAINING_WINDOW,
        description=f"sessions of history (at most the {TRAINING_WINDOW} the lineage declares)",
    )  # fmt: skip


class SearchConfig(Config):
    n_trials: int = Field(_T.n_trials, ge=1, le=1000)
    timeout_seconds: int = Field(_T.search_timeout_seconds, ge=10, le=86_400)
    max_epochs: int = Field(_T.max_epochs, ge=1, le=1000)
    patience: int = Field(_T.patience, ge=1, le=100)
    seed: int = Field(_T.seed, ge=0)
    architectures: list[str] = Field(list(ARCHITECTURES))
    hidden_sizes: list[int] = Field([16, 32, 64])
    max_layers: int = Field(2, ge=1, le=4)
    max_dropout: float = Field(0.3, ge=0, le=0.8)
    learning_rate_min: float = Field(3e-4, gt=0, le=1)
    learning_rate_max: float = Field(3e-3, gt=0, le=1)
    batch_sizes: list[int] = Field([32, 64])
    sequence_lengths: list[int] = Field(list(_T.sequence_lengths))

    @field_validator("architectures")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(ARCHITECTURES))
        if unknown or not value:
            raise ValueError(f"architectures must be a non-empty subset of {list(ARCHITECTURES)}, got {value}")
        return value

    @field_validator("sequence_lengths")
    @classmethod
    def _fits_embargo(cls, value: list[int]) -> list[int]:
        if not value or any(not 2 <= v <= MAX_SEQUENCE_LENGTH for v in value):
            raise ValueError(f"sequence_lengths must lie in [2, {MAX_SEQUENCE_LENGTH}] (the datasets' embargo), got {value}")
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
    max_epochs: int = Field(_T.max_epochs, ge=1, le=1000)
    patience: int = Field(_T.patience, ge=1, le=100)
    seed: int = Field(_T.seed, ge=0)
