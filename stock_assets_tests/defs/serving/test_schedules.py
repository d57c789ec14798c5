"""`daily_schedule`: one run per session after the close, none on weekends and holidays."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dagster import build_schedule_context


@pytest.mark.parametrize(
    "when, expected",
    [
        (dt.datetime(2006, 3, 3, 18, 30), ["2006-03-03"]),  # Friday after the close
        (dt.datetime(2006, 3, 4, 18, 30), []),  # Saturday: no session
        (dt.datetime(2006, 4, 14, 18, 30), []),  # Good Friday: exchange closed
        (dt.datetime(2013, 3, 1, 18, 30), ["2013-03-01"]),  # the sample's last session
        # After the data ends only the last session exists: the same run key, so the daemon launches it once.
        (dt.datetime(2013, 3, 4, 18, 30), ["2013-03-01"]),
    ],
)
def test_schedule_requests_the_session_that_just_closed(defs, instance, when, expected):
    schedule = defs.resolve_schedule_def("daily_schedule")
    ny = when.replace(tzinfo=ZoneInfo("America/New_York"))
    context = build_schedule_context(instance=instance, scheduled_execution_time=ny)
    result = schedule.evaluate_tick(context)
    assert [r.partition_key for r in result.run_requests or []] == expected
    assert [r.run_key for r in result.run_requests or []] == expected
    assert schedule.execution_timezone == "America/New_York"
