"""Scenarios of recurring schedules, shared by the memory tests and the SQLite/PostgreSQL integration tests."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from scheduling_app import App, Record

from scheduling import ManualClock, ScheduledCommandStatus

PENDING = ScheduledCommandStatus.PENDING

#: A Monday, midnight UTC (01:00 in Paris, winter time).
MONDAY = datetime(2026, 3, 2, tzinfo=UTC)


def clock_at(moment: datetime) -> ManualClock:
    return ManualClock(moment)


async def run_all(workers: list[App]) -> None:
    await asyncio.gather(*(w.service.run_until_idle() for w in workers))


async def step_through(app: App, workers: list[App], *, hours: float, step: timedelta) -> list[datetime]:
    """Move the clock in steps, letting every worker run what is due; the occurrence times that ran, in order."""
    end = app.clock.now() + timedelta(hours=hours)
    while app.clock.now() < end:
        app.clock.advance(step)
        await run_all(workers)
    return await occurrence_times(app, ScheduledCommandStatus.COMPLETED)


async def occurrence_times(app: App, status: ScheduledCommandStatus, name: str | None = None) -> list[datetime]:
    entries = await app.store.list_entries(status=status, limit=100_000)
    return sorted(
        e.occurrence_at for e in entries if e.occurrence_at is not None and (name is None or e.recurring_name == name)
    )


async def simulated_day(app: App, workers: list[App], step: timedelta = timedelta(minutes=1)) -> None:
    """A quarter-hourly and a weekday-09:00-Paris schedule over 24 hours, minute by minute (or by ``step``): every
    occurrence runs exactly once (each handler call is logged), and exactly one of each is pending at the end."""
    app.clock.set(MONDAY)
    for worker in workers:  # every worker process declares the schedules at start-up
        await worker.scheduler.schedule_recurring("quarterly", Record(value="q"), cron="*/15 * * * *")
        await worker.scheduler.schedule_recurring(
            "report", Record(value="report"), cron="0 9 * * 1-5", timezone="Europe/Paris"
        )
    await step_through(app, workers, hours=24, step=step)
    quarters = await occurrence_times(app, ScheduledCommandStatus.COMPLETED, "quarterly")
    reports = await occurrence_times(app, ScheduledCommandStatus.COMPLETED, "report")
    assert quarters == [MONDAY + timedelta(minutes=15 * i) for i in range(1, 97)]
    assert reports == [datetime(2026, 3, 2, 8, tzinfo=UTC)]  # 09:00 in Paris (UTC+1)
    handled = Counter(value for w in workers for value in w.log.records)
    assert handled == {"q": 96, "report": 1}
    pending = await app.store.list_entries(status=PENDING)
    assert sorted(e.recurring_name or "" for e in pending) == ["quarterly", "report"]
    counts = await app.store.count_by_status()
    assert counts[ScheduledCommandStatus.EXPIRED] == counts[ScheduledCommandStatus.CANCELLED] == 0
    report = await app.scheduler.get_recurring("report")
    assert report is not None
    assert report.last_run_at == datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert report.next_run_at == datetime(2026, 3, 3, 8, tzinfo=UTC)


async def downtime(app: App, policy: str) -> None:
    """A quarter-hourly schedule; no worker runs for three hours; then the misfire policy decides."""
    start = app.clock.now()
    await app.scheduler.schedule_recurring(
        "q",
        Record(value="q"),
        cron="*/15 * * * *",
        misfire_policy=policy,  # type: ignore[arg-type]
    )
    app.clock.advance(timedelta(minutes=15))
    await app.service.run_until_idle()
    assert app.log.records == ["q"]
    app.clock.advance(timedelta(hours=3, minutes=5))  # 12:30 ... 15:15 are missed (12 occurrences)
    await app.scheduler.schedule_recurring(  # the application starts again and declares its schedule
        "q",
        Record(value="q"),
        cron="*/15 * * * *",
        misfire_policy=policy,  # type: ignore[arg-type]
    )
    await app.service.run_until_idle()
    expected_runs = {"skip": 1, "run_once": 2, "run_all": 13}[policy]
    assert len(app.log.records) == expected_runs
    next_due = start + timedelta(hours=3, minutes=30)
    pending = await occurrence_times(app, PENDING)
    assert pending == [next_due]
    expired = await occurrence_times(app, ScheduledCommandStatus.EXPIRED)
    assert expired == ([start + timedelta(minutes=30)] if policy == "skip" else [])
    app.clock.set(next_due)
    await app.service.run_until_idle()
    assert len(app.log.records) == expected_runs + 1
    completed = await occurrence_times(app, ScheduledCommandStatus.COMPLETED)
    assert len(completed) == len(set(completed)) == expected_runs + 1


async def upsert(app: App) -> None:
    first = await app.scheduler.schedule_recurring("r", Record(value="a"), cron="0 * * * *")
    again = await app.scheduler.schedule_recurring("r", Record(value="a"), cron="0 * * * *")
    assert first.generation == again.generation == 1
    assert (await app.store.count_by_status())[PENDING] == 1
    changed = await app.scheduler.schedule_recurring("r", Record(value="b"), cron="30 * * * *", timezone="Asia/Tokyo")
    assert changed.generation == 2
    assert changed.created_at == first.created_at
    [pending] = await app.store.list_entries(status=PENDING)
    assert pending.occurrence_at == app.clock.now() + timedelta(minutes=30)
    assert '"b"' in pending.payload
    [cancelled] = await app.store.list_entries(status=ScheduledCommandStatus.CANCELLED)
    assert cancelled.recurring_name == "r"
    listed = await app.scheduler.list_recurring()
    assert [(s.name, s.cron, s.timezone, s.generation) for s in listed] == [("r", "30 * * * *", "Asia/Tokyo", 2)]
    same_declared_by_four = await asyncio.gather(
        *(
            app.scheduler.schedule_recurring("r", Record(value="b"), cron="30 * * * *", timezone="Asia/Tokyo")
            for _ in range(4)
        )
    )
    assert {s.generation for s in same_declared_by_four} == {2}
    assert (await app.store.count_by_status())[PENDING] == 1


async def pause_resume_unschedule(app: App) -> None:
    scheduler = app.scheduler
    await scheduler.schedule_recurring("p", Record(value="p"), interval=timedelta(minutes=10))
    paused = await scheduler.pause_recurring("p")
    assert paused is not None and paused.paused and paused.next_run_at is None
    assert (await app.store.count_by_status())[PENDING] == 0
    app.clock.advance(timedelta(minutes=35))
    assert await app.service.run_until_idle() == 0
    resumed = await scheduler.resume_recurring("p")
    assert resumed is not None and not resumed.paused
    assert resumed.next_run_at == app.clock.now() + timedelta(minutes=5)  # anchored at the first declaration
    app.clock.advance(timedelta(minutes=5))
    await app.service.run_until_idle()
    assert app.log.records == ["p"]
    assert await scheduler.unschedule_recurring("p") is True
    assert await scheduler.get_recurring("p") is None
    assert (await app.store.count_by_status())[PENDING] == 0
    assert await scheduler.unschedule_recurring("p") is False
    assert await scheduler.pause_recurring("p") is None
    assert await scheduler.resume_recurring("p") is None


async def assert_nothing_stored(app: App) -> None:
    assert await app.scheduler.list_recurring() == []
    assert sum((await app.store.count_by_status()).values()) == 0
