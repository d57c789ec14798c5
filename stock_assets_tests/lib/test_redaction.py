import pytest

from stock_assets.lib.redaction import has_password, masked_url


@pytest.mark.parametrize(
    "url, shown",
    [
        ("postgresql+psycopg2://app:s3cr3t@db:5432/w", "postgresql+psycopg2://app:***@db:5432/w"),
        ("postgresql://app:p%40ss@db/w", "postgresql://app:***@db/w"),  # an encoded '@' in the password
        ("postgresql://app@db/w?password=s3cr3t&sslmode=require", "postgresql://app@db/w?password=***&sslmode=require"),
        ("http://ops:s3cr3t@mlflow:5000", "http://ops:***@mlflow:5000"),  # MLflow tracking servers
        ("https://ops:s3cr3t@mlflow.example.com/prefix", "https://ops:***@mlflow.example.com/prefix"),
        ("http://ops:s3cr3t@[::1]:5000", "http://ops:***@[::1]:5000"),
        # What SQLAlchemy cannot parse falls back to a regex.
        ("//ops:s3cr3t@host/db?token=abc", "//ops:***@host/db?token=***"),
    ],
)
def test_passwords_are_masked_in_every_url_form(url, shown):
    assert masked_url(url) == shown
    assert has_password(url) and not has_password(shown.replace("***", ""))


@pytest.mark.parametrize(
    "url",
    ["sqlite:////tmp/home/optuna.db", "sqlite:///:memory:", "http://mlflow:5000", "databricks", "/tmp/mlruns", ""],
)
def test_urls_without_a_password_come_back_unchanged(url):
    assert masked_url(url) == url and not has_password(url)
