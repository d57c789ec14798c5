import pytest

from stock_assets.lib.redaction import MASK, has_password, mask_secrets, masked_url


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


PW = "Pl4nted-pw"


@pytest.mark.parametrize(
    "text",
    [
        f"could not connect to postgresql+psycopg2://app:{PW}@db:5432/w: timeout",
        f"View run fluffy-cat at: http://user:{PW}@mlflow:5000/#/experiments/1/runs/abc",
        f"url=postgresql://app@db/w?sslmode=require&password={PW}&x=1",
        f"mysql://app@db/w?pwd={PW};token={PW}",
        f"host=db user=app password={PW} dbname=w",
        f"{{'database_url': 'postgresql://app:{PW}@db/w', 'optuna_storage': 'sqlite:///o.db'}}",
        f"{{'password': '{PW}'}}",
        f"raw URL characters postgresql://app:p@ss:w/rd#{PW}@db:5432/w in a log line",
        f"two: http://a:{PW}@h1/x and https://b:{PW}@h2/y",
    ],
)
def test_mask_secrets_masks_every_password_in_free_text(text):
    masked = mask_secrets(text)
    assert PW not in masked and MASK in masked
    assert mask_secrets(masked) == masked  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "raw_prices: stored 1008 rows for 252 partitions 2010-01-04..2010-12-31",
        "sqlite:////tmp/home/warehouse.db and http://mlflow:5000/#/runs",
        "2010-03-05 ACME (stock_splits=2, log_return=-0.69), time 18:30, ratio 3:2",
        "mail ops@example.com",
    ],
)
def test_mask_secrets_leaves_text_without_a_password_alone(text):
    assert mask_secrets(text) == text
