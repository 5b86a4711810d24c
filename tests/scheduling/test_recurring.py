"""Recurring schedules through the scheduler and the service, on a MemoryStore with a ManualClock.

The same key scenarios run on SQLite and PostgreSQL in ``tests/integration/test_recurring_sql.py``; the scenario
helpers live in ``recurring_scenarios`` (tests/support) so both layers assert the very same things.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import recurring_scenarios as scenarios
from scheduling_app import App, Record, Unhandled, make_app

from mediator import HandlerNotFoundError
from scheduling import ScheduledCommandStatus, ScheduleOptions
from scheduling.errors import InvalidScheduleError, PayloadTooLargeError


async def test_a_simulated_day_runs_each_occurrence_exactly_once(app: App) -> None:
    await scenarios.simulated_day(app, [app])


async def test_two_workers_racing_on_one_schedule_run_each_occurrence_once() -> None:
    first = make_app(worker_id="worker-1")
    second = make_app(store=first.store, clock=first.clock, worker_id="worker-2")
    await scenarios.simulated_day(first, [first, second])


@pytest.mark.parametrize("policy", ["skip", "run_once", "run_all"])
async def test_misfire_policies_after_a_three_hour_downtime(app: App, policy: str) -> None:
    await scenarios.downtime(app, policy)


async def test_declaring_again_is_idempotent_and_a_change_is_a_new_generation(app: App) -> None:
    await scenarios.upsert(app)


async def test_pause_resume_and_unschedule(app: App) -> None:
    await scenarios.pause_resume_unschedule(app)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"cron": "not a cron"}, InvalidScheduleError, "fields"),
        ({"cron": "61 * * * *"}, InvalidScheduleError, "invalid cron expression"),
        ({"cron": "0 9 * * *", "timezone": "Europe/Atlantis"}, InvalidScheduleError, "unknown time zone"),
        ({"cron": "0 9 * * *", "interval": timedelta(minutes=5)}, InvalidScheduleError, "exactly one"),
        ({}, InvalidScheduleError, "exactly one"),
        ({"interval": timedelta(0)}, InvalidScheduleError, "positive"),
        ({"interval": timedelta(minutes=-1)}, InvalidScheduleError, "positive"),
        (
            {"interval": timedelta(minutes=1), "options": ScheduleOptions(delay=timedelta(seconds=1))},
            InvalidScheduleError,
            "options.delay",
        ),
        ({"interval": timedelta(minutes=1), "misfire_policy": "sometimes"}, InvalidScheduleError, "misfire_policy"),
    ],
)
async def test_invalid_declarations_store_nothing(
    app: App, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await app.scheduler.schedule_recurring("report", Record(value="r"), **kwargs)  # type: ignore[arg-type]
    await scenarios.assert_nothing_stored(app)


async def test_unregistered_and_oversized_commands_store_nothing() -> None:
    app = make_app(max_payload_bytes=64)
    with pytest.raises(HandlerNotFoundError):
        await app.scheduler.schedule_recurring("x", Unhandled(), cron="@hourly")
    with pytest.raises(PayloadTooLargeError):
        await app.scheduler.schedule_recurring("x", Record(value="v" * 100), cron="@hourly")
    await scenarios.assert_nothing_stored(app)


async def test_an_occurrence_is_an_ordinary_entry_linked_to_its_schedule(app: App) -> None:
    options = ScheduleOptions(priority=7, max_retries=1, metadata={"team": "ops"}, correlation_id="c-1")
    declared = await app.scheduler.schedule_recurring(
        "ops", Record(value="o"), interval=timedelta(minutes=5), options=options
    )
    [entry] = await app.store.list_entries(status=ScheduledCommandStatus.PENDING)
    assert entry.recurring_name == "ops"
    assert entry.occurrence_at == entry.scheduled_for == declared.next_run_at == app.clock.now() + timedelta(minutes=5)
    assert (entry.priority, entry.max_retries, entry.metadata, entry.correlation_id) == (7, 1, {"team": "ops"}, "c-1")
    assert entry.idempotency_key == f"recurring:ops:1:{entry.occurrence_at.isoformat()}"
    assert entry.expires_at == entry.scheduled_for + timedelta(minutes=5)  # skip: expires at the following one


async def test_a_failing_occurrence_is_retried_and_the_schedule_goes_on(app: App) -> None:
    """The next occurrence is created at the claim, so retries of a failing one never stall or double it."""
    from scheduling_app import Fail

    await app.scheduler.schedule_recurring(
        "flaky", Fail(key="f", times=1), interval=timedelta(minutes=10), options=ScheduleOptions(max_retries=2)
    )
    app.clock.advance(timedelta(minutes=10))
    await app.service.run_until_idle()
    app.clock.advance(timedelta(seconds=10))  # the retry's backoff
    await app.service.run_until_idle()
    entries = await app.store.list_entries(limit=100)
    assert [e.status for e in entries] == [ScheduledCommandStatus.COMPLETED, ScheduledCommandStatus.PENDING]
    assert entries[0].attempt_count == 2
    assert entries[1].occurrence_at == datetime(2026, 3, 1, 12, 20, tzinfo=UTC)


async def test_a_spring_forward_night_runs_the_nonexistent_time_once_an_hour_later() -> None:
    app = make_app(clock=scenarios.clock_at(datetime(2026, 3, 28, 12, tzinfo=UTC)))
    await app.scheduler.schedule_recurring("night", Record(value="n"), cron="30 2 * * *", timezone="Europe/Paris")
    runs = await scenarios.step_through(app, [app], hours=48, step=timedelta(minutes=5))
    assert runs == [datetime(2026, 3, 29, 1, 30, tzinfo=UTC), datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]


async def test_a_fall_back_night_never_runs_the_repeated_time_twice() -> None:
    app = make_app(clock=scenarios.clock_at(datetime(2026, 10, 24, 12, tzinfo=UTC)))
    await app.scheduler.schedule_recurring("night", Record(value="n"), cron="30 2 * * *", timezone="Europe/Paris")
    runs = await scenarios.step_through(app, [app], hours=48, step=timedelta(minutes=5))
    assert runs == [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 26, 1, 30, tzinfo=UTC)]


async def test_a_paused_schedule_stays_paused_when_declared_again(app: App) -> None:
    await app.scheduler.schedule_recurring("r", Record(value="r"), cron="@hourly")
    await app.scheduler.pause_recurring("r")
    again = await app.scheduler.schedule_recurring("r", Record(value="r"), cron="@hourly")
    assert again.paused
    assert await app.store.list_entries(status=ScheduledCommandStatus.PENDING) == []
