from dagster import build_schedule_from_partitioned_job

from stock_assets.partitions import daily_schedule_time


def build_daily_schedule(daily_job):
    """After the configured exchange's close (18:30 New York time for XNYS), in its time zone, on
    every session; weekends and holidays are not partitions, so no run."""
    hour, minute = daily_schedule_time()
    return build_schedule_from_partitioned_job(
        daily_job, hour_of_day=hour, minute_of_hour=minute, name="daily_schedule"
    )
