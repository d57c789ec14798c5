from dagster import build_schedule_from_partitioned_job


def build_daily_schedule(daily_job):
    """18:30 New York time on every trading day; weekends and NYSE holidays are not partitions, so no run."""
    return build_schedule_from_partitioned_job(daily_job, hour_of_day=18, minute_of_hour=30, name="daily_schedule")
