"""Resources and IO managers, built from the one validated settings object."""

from __future__ import annotations

from stock_assets.resources.basket import BasketResource
from stock_assets.resources.io_managers import ObjectIOManager, TableIOManager
from stock_assets.resources.model_registry import ModelRegistryResource
from stock_assets.resources.optuna_storage import OptunaStorageResource
from stock_assets.resources.policies import MonitoringPolicyResource, PromotionPolicyResource
from stock_assets.resources.price_source import PriceSourceResource
from stock_assets.resources.warehouse import WarehouseResource
from stock_assets.settings import Settings


def build_resources(settings: Settings) -> dict:
    monitoring, training = settings.monitoring, settings.training
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
        "warehouse": WarehouseResource(database_url=settings.warehouse_url),
        "table_io_manager": TableIOManager(database_url=settings.warehouse_url),
        "object_io_manager": ObjectIOManager(base_dir=str((settings.home / "objects").resolve())),
        "model_registry": ModelRegistryResource(
            tracking_uri=settings.tracking_uri,
            model_name=settings.model_name,
            artifact_location=settings.artifact_location,
            http_timeout_seconds=settings.mlflow_http_timeout_seconds,
            http_max_retries=settings.mlflow_http_max_retries,
        ),
        "optuna_storage": OptunaStorageResource(url=settings.optuna_url),
        "promotion_policy": PromotionPolicyResource(alpha=training.gate_alpha),
        "monitoring_policy": MonitoringPolicyResource(**monitoring.model_dump()),
    }
