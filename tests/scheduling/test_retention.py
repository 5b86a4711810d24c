"""Retention: the ``Retention`` setting, one purge round on a ``ManualClock``, and the running service's rounds."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from scheduling_app import START, App, Fail, Record, eventually, make_app, status

from scheduling import (
    ManualClock,
    Retention,
    ScheduledCommandStatus,
    ScheduleOptions,
    SchedulerSettings,
)
from scheduling.observer import SchedulingObserver
from scheduling.retention import Purger
from stores import MemoryStore
from stores.audit import AuditRecord
from stores.errors import StoreUnavailableError

S = ScheduledCommandStatus
DAY = timedelta(days=1)
#: A retention that purges at once, between batches too (the tests never sleep through a pause).
FAST = {"batch_pause": timedelta(0)}


class PurgeCounts(SchedulingObserver):
    """Every ``on_purged`` call, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[ScheduledCommandStatus, int]] = []

    def on_purged(self, status: ScheduledCommandStatus, count: int) -> None:
        self.calls.append((status, count))

    def total(self, status: ScheduledCommandStatus | None = None) -> int:
        return sum(count for s, count in self.calls if status is None or s is status)


# -- the setting -----------------------------------------------------------------------------------------------


def test_defaults_keep_dead_letters_and_purge_the_rest() -> None:
    """Completed entries go after 7 days, cancelled and expired after 30; dead letters stay until handled."""
    retention = SchedulerSettings().retention
    assert retention == Retention()
    assert retention.ages == {S.COMPLETED: 7 * DAY, S.CANCELLED: 30 * DAY, S.EXPIRED: 30 * DAY}
    assert Retention.off().ages == {}
    assert SchedulerSettings(retention=None).retention is None


def test_ages_accept_durations_as_pydantic_reads_them() -> None:
    """Ages come from configuration as ISO 8601 durations or seconds, like every duration setting."""
    settings = SchedulerSettings.model_validate({"retention": {"completed": "P1D", "failed": 3600, "expired": None}})
    assert settings.retention is not None
    assert settings.retention.ages == {S.COMPLETED: DAY, S.FAILED: timedelta(hours=1), S.CANCELLED: 30 * DAY}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("completed", timedelta(0), "completed must be a positive age or None (keep), got datetime.timedelta(0)"),
        ("failed", timedelta(seconds=-1), "failed must be a positive age or None (keep), got datetime.timedelta("),
        ("interval", timedelta(0), "interval must be positive, got datetime.timedelta(0)"),
        ("batch_pause", timedelta(seconds=-1), "batch_pause must not be negative"),
        ("batch_size", 0, "batch_size"),
        ("batch_size", 10_001, "batch_size"),
        ("completd", DAY, "completd"),
    ],
)
def test_bad_values_are_refused_naming_them(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Retention.model_validate({field: value})
    assert message in str(raised.value)


# -- one round -------------------------------------------------------------------------------------------------


async def finished_app(retention: Retention, observer: SchedulingObserver | None = None) -> tuple[App, dict[str, Any]]:
    """An app whose store holds one entry per status, each finished (or due) at ``START``."""
    app = make_app(observers=[observer] if observer else (), retention=retention, max_retries=0)
    ids: dict[str, Any] = {
        "completed": await app.scheduler.schedule(Record(value="done")),
        "failed": await app.scheduler.schedule(Fail(key="f")),
        "expired": await app.scheduler.schedule(
            Record(value="late"), ScheduleOptions(scheduled_for=START - DAY, expires_after=timedelta(seconds=1))
        ),
        "cancelled": await app.scheduler.schedule(Record(value="never"), ScheduleOptions(delay=DAY)),
    }
    await app.service.run_until_idle()
    await app.scheduler.cancel(ids["cancelled"])
    ids["pending"] = await app.scheduler.schedule(Record(value="far"), ScheduleOptions(delay=365 * DAY))
    for name in ("completed", "failed", "expired", "cancelled"):
        assert (await status(app, ids[name])).status is S[name.upper()]
    return app, ids


def purger(app: App, retention: Retention, observer: SchedulingObserver) -> Purger:
    return Purger(app.store, retention, app.clock, observer, worker_id="w")


async def test_a_round_purges_each_status_by_its_own_age() -> None:
    """Only entries finished longer ago than their status's age go; the others and PENDING stay."""
    retention = Retention(completed=DAY, failed=3 * DAY, cancelled=None, expired=DAY, **FAST)
    app, ids = await finished_app(retention)
    observer = PurgeCounts()
    round_ = purger(app, retention, observer)

    assert await round_.purge_once() == {}  # nothing is a day old yet
    app.clock.advance(DAY + timedelta(seconds=1))
    assert await round_.purge_once() == {S.COMPLETED: 1, S.EXPIRED: 1}
    assert await app.scheduler.get_status(ids["completed"]) is None
    assert await app.scheduler.get_attempts(ids["completed"]) == []
    app.clock.advance(2 * DAY)
    assert await round_.purge_once() == {S.FAILED: 1}
    app.clock.advance(365 * DAY)
    assert await round_.purge_once() == {}
    assert (await status(app, ids["cancelled"])).status is S.CANCELLED  # no age: kept
    assert (await status(app, ids["pending"])).status is S.PENDING  # never purged, however old
    assert observer.calls == [(S.COMPLETED, 1), (S.EXPIRED, 1), (S.FAILED, 1)]


async def test_a_round_forgets_audit_records_older_than_their_age() -> None:
    """The audit trail is trimmed with the entries: records older than ``audit`` go, newer ones and, with
    ``audit=None``, every one stay."""
    retention = Retention(audit=10 * DAY, **FAST)
    app = make_app(retention=retention)
    for action in ("old", "new"):
        record = AuditRecord(at=app.clock.now(), source="cli", actor="ops@host", action=action)
        await app.store.add_audit_record(record)
        app.clock.advance(5 * DAY)
    app.clock.advance(timedelta(seconds=1))  # "old" is 10 days and 1 s old, "new" 5 days and 1 s

    await purger(app, Retention(audit=None, **FAST), PurgeCounts()).purge_once()
    assert len(await app.store.list_audit_records()) == 2
    await purger(app, retention, PurgeCounts()).purge_once()
    assert [r.action for r in await app.store.list_audit_records()] == ["new"]
    assert Retention().audit == 90 * DAY and Retention.off().audit is None


async def test_a_round_deletes_in_batches_and_counts_each() -> None:
    """Five old entries with batches of two: three store calls, each reported to the observer."""
    retention = Retention(completed=DAY, batch_size=2, **FAST)
    app = make_app(retention=retention)
    await app.scheduler.schedule_many([Record(value=str(i)) for i in range(5)])
    await app.service.run_until_idle()
    app.clock.advance(2 * DAY)
    observer = PurgeCounts()
    assert await purger(app, retention, observer).purge_once() == {S.COMPLETED: 5}
    assert observer.calls == [(S.COMPLETED, 2), (S.COMPLETED, 2), (S.COMPLETED, 1)]
    assert (await app.store.count_by_status())[S.COMPLETED] == 0


async def test_a_round_logs_its_counts_once_and_nothing_when_idle(caplog: pytest.LogCaptureFixture) -> None:
    retention = Retention(completed=DAY, expired=DAY, **FAST)
    app, _ = await finished_app(retention)
    round_ = purger(app, retention, PurgeCounts())
    with caplog.at_level(logging.DEBUG, logger="scheduling.service"):
        await round_.purge_once()
        assert [r for r in caplog.records if getattr(r, "action", None) == "purge"] == []
        app.clock.advance(2 * DAY)
        await round_.purge_once()
        await round_.purge_once()
    [record] = [r for r in caplog.records if getattr(r, "action", None) == "purge"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == "retention purged 2 finished entries (1 completed, 1 expired)"
    assert record.__dict__["purged"] == {"completed": 1, "expired": 1}
    assert record.__dict__["worker_id"] == "w"


async def test_a_clock_near_the_year_1_purges_nothing_and_does_not_fail() -> None:
    """``now - age`` would be before the first representable instant: nothing is that old."""
    retention = Retention(completed=30 * DAY, **FAST)
    app = make_app(clock=ManualClock(datetime(1, 1, 2, tzinfo=UTC)), retention=retention)
    command_id = await app.scheduler.schedule(Record(value="early"))
    await app.service.run_until_idle()
    assert await purger(app, retention, PurgeCounts()).purge_once() == {}
    app.clock.advance(31 * DAY)
    assert await purger(app, retention, PurgeCounts()).purge_once() == {S.COMPLETED: 1}
    assert await app.scheduler.get_status(command_id) is None


# -- the running service ---------------------------------------------------------------------------------------


class CountingStore(MemoryStore):
    """Counts the purge calls (a round that finds nothing makes one per status with an age, and logs nothing)."""

    purges = 0

    async def purge(self, **kwargs: Any) -> int:
        self.purges += 1
        return await super().purge(**kwargs)


async def test_the_running_service_purges_at_start_and_every_interval() -> None:
    """A round runs when the service starts and then every ``interval`` of the service's clock."""
    observer, store = PurgeCounts(), CountingStore()
    retention = Retention(completed=DAY, cancelled=None, expired=None, interval=timedelta(hours=1), **FAST)
    app = make_app(store=store, observers=[observer], retention=retention)
    old = await app.scheduler.schedule(Record(value="old"))
    await app.service.run_until_idle()
    app.clock.advance(2 * DAY)
    recent = await app.scheduler.schedule(Record(value="recent"))
    async with app.service:
        await eventually(lambda: _gone(app, old))  # the round at start
        await eventually(lambda: _completed(app, recent))
        assert store.purges == 1
        app.clock.advance(DAY - timedelta(minutes=1))  # the next round, an interval later: not a day old yet
        await eventually(lambda: _purges(store, 2))
        assert (await status(app, recent)).status is S.COMPLETED
        app.clock.advance(timedelta(hours=1))
        await eventually(lambda: _gone(app, recent))
    assert observer.calls == [(S.COMPLETED, 1), (S.COMPLETED, 1)]


async def test_without_retention_the_service_keeps_everything() -> None:
    store = CountingStore()
    app = make_app(store=store, retention=None)
    command_id = await app.scheduler.schedule(Record(value="kept"))
    async with app.service:
        await eventually(lambda: _completed(app, command_id))
        app.clock.advance(3650 * DAY)
        await app.scheduler.schedule(Record(value="later"))  # the service is awake after the move
        await eventually(lambda: _logged_count(app, 2))
    assert (await status(app, command_id)).status is S.COMPLETED
    assert store.purges == 0


@pytest.mark.parametrize(
    ("error", "level", "message"),
    [
        (StoreUnavailableError("memory://flaky", "connection refused"), logging.WARNING, "connection refused"),
        (RuntimeError("disk on fire"), logging.ERROR, "purge_round failed; continuing"),
    ],
    ids=["store-away", "bug"],
)
async def test_a_failing_round_is_logged_once_and_the_next_one_runs(
    caplog: pytest.LogCaptureFixture, error: Exception, level: int, message: str
) -> None:
    """A store error ends the round with one record (WARNING when the store is away, else ERROR with its
    traceback), without retries; the service keeps running and the next round, an interval later, purges."""

    class FlakyPurge(MemoryStore):
        failures = 1

        async def purge(self, **kwargs: Any) -> int:
            if self.failures:
                self.failures -= 1
                raise error
            return await super().purge(**kwargs)

    store = FlakyPurge()
    app = make_app(store=store, clock=ManualClock(START), retention=Retention(completed=DAY, **FAST))
    command_id = await app.scheduler.schedule(Record(value="x"))
    await app.service.run_until_idle()
    app.clock.advance(2 * DAY)
    with caplog.at_level(logging.WARNING, logger="scheduling"):
        async with app.service:
            await eventually(lambda: _logged(caplog, message))
            app.clock.advance(timedelta(minutes=10))
            await eventually(lambda: _gone(app, command_id))
    [record] = caplog.records
    assert record.levelno == level
    assert record.getMessage().startswith("purge_round failed; continuing")
    assert (record.exc_info is not None) == (level == logging.ERROR)


async def _gone(app: App, command_id: str) -> bool:
    return await app.scheduler.get_status(command_id) is None


async def _completed(app: App, command_id: str) -> bool:
    entry = await app.scheduler.get_status(command_id)
    return entry is not None and entry.status is S.COMPLETED


async def _purges(store: CountingStore, calls: int) -> bool:
    return store.purges >= calls


async def _logged_count(app: App, records: int) -> bool:
    return len(app.log.records) >= records


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)
