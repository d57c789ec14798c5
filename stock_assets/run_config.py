"""The one console-logging run config for runs launched from Python (scripts, the replay, benchmarks,
tests): Dagster's console logger at CRITICAL, because their callers report outcomes themselves and
Dagster's CLI default prints every event at DEBUG. The instance's event log keeps every event."""

QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
