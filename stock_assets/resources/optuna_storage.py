"""Where Optuna studies live: SQLite under the project home, or the deployment's PostgreSQL."""

from dagster import ConfigurableResource


class OptunaStorageResource(ConfigurableResource):
    """An Optuna RDB storage URL; several workers sharing it cooperate on one study. Every process
    opens it with `lib/study.open_storage` (heartbeats: a trial of a killed process is retried)."""

    url: str
