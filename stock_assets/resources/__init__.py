"""Resources and IO managers, built from the one validated settings object."""

from __future__ import annotations

from dagster import EnvVar

from stock_assets.resources.basket import BasketResource
from stock_assets.resources.io_managers import ObjectIOManager, TableIOManager
from stock_assets.resources.model_registry import ModelRegistryResource
from stock_assets.resources.optuna_storage import OptunaStorageResource
from stock_assets.resources.policies import MonitoringPolicyResource, PromotionPolicyResource
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import WarehouseResource
from stock_assets.settings import Settings


def _secret(settings: Settings, key: str, value: str) -> str:
    """`EnvVar(name)` when `key` came from the environment variable `name`, so job snapshots and run
    storage hold the variable's name instead of a URL with its password; else the value itself
    (the embedded defaults: local SQLite paths, no secret). docs/decisions.md, "Settings and policies"."""
    name = settings.env_var_for(key)
    return EnvVar(name) if name else value


def build_resources(settings: Settings) -> dict:
    monitoring, training = settings.monitoring, settings.training
    warehouse_url = _secret(settings, "database_url", settings.warehouse_url)
    return {
        "basket": BasketResource(tickers=list(settings.tickers), start_date=settings.start_date.isoformat()),
        "price_source": PriceSourceResource(
            source=settings.source,
            csv_path=str(settings.csv_path) if settings.csv_path else None,
            yfinance_timeout_seconds=settings.yfinance.timeout_seconds,
            yfinance_max_retries=settings.yfinance.max_retries,
            yfinance_backoff_seconds=settings.yfinance.backoff_seconds,
            max_abs_log_return=settings.max_abs_log_return,
            accepted_moves=[[ticker, day.isoformat()] for ticker, day in settings.accepted_moves],
        ),
        "warehouse": WarehouseResource(database_url=warehouse_url),
        "table_io_manager": TableIOManager(database_url=warehouse_url),
        "object_io_manager": ObjectIOManager(base_dir=str((settings.home / "objects").resolve())),
        "model_registry": ModelRegistryResource(
            tracking_uri=_secret(settings, "mlflow_tracking_uri", settings.tracking_uri),
            model_name=settings.model_name,
            artifact_location=settings.artifact_location,
            http_timeout_seconds=settings.mlflow_http_timeout_seconds,
            http_max_retries=settings.mlflow_http_max_retries,
        ),
        "optuna_storage": OptunaStorageResource(url=_secret(settings, "optuna_storage", settings.optuna_url)),
        "promotion_policy": PromotionPolicyResource(alpha=training.gate_alpha),
        "monitoring_policy": MonitoringPolicyResource(**monitoring.model_dump()),
    }
