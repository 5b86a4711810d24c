"""``status``'s "N waiting for a worker that handles T", from the live worker registry: exactly the due PENDING
entries that no live (not gone) worker would claim, by queue and type; the old guess only while no worker is
registered at all."""

from __future__ import annotations

from datetime import timedelta

from scheduling_app import START, Record, RecordHandler, make_app
from test_queues import Mail, MailHandler
from test_workers import stored

from scheduling import ScheduleOptions
from scheduling.admin import overview, waiting_for_a_worker
from scheduling.codec import command_type_name
from scheduling.workers import Fleet, waiting_by_queue

RECORD, MAIL = command_type_name(Record), command_type_name(Mail)


async def test_due_entries_of_types_no_live_worker_handles_are_waiting() -> None:
    app = make_app(handlers=[RecordHandler, MailHandler])
    await app.scheduler.schedule_many([Record(value=str(n)) for n in range(2)])
    await app.scheduler.schedule_many([Mail(to=str(n)) for n in range(3)])
    await app.scheduler.schedule(Mail(to="later"), ScheduleOptions(delay=timedelta(hours=1)))  # not due
    now = app.clock.now() + timedelta(seconds=1)
    await app.store.register_worker(stored("old", command_types=(RECORD,), last_seen_at=now))
    await app.store.register_worker(stored("dead", command_types=(MAIL,), last_seen_at=START - timedelta(hours=1)))
    assert await waiting_for_a_worker(app.store, now) == {MAIL: 3}  # at once: no minute of grace is needed
    assert (await overview(app.store, now)).waiting_for_worker_by_type == {MAIL: 3}
    await app.store.register_worker(stored("new", command_types=(RECORD, MAIL), last_seen_at=now))
    assert await waiting_for_a_worker(app.store, now) == {}


async def test_every_worker_gone_means_every_due_entry_waits() -> None:
    app = make_app(handlers=[RecordHandler])
    await app.scheduler.schedule(Record(value="r"))
    now = app.clock.now() + timedelta(seconds=1)
    await app.store.register_worker(stored("stopped", command_types=(RECORD,), state="stopped", last_seen_at=now))
    assert await waiting_for_a_worker(app.store, now) == {RECORD: 1}


async def test_without_any_registered_worker_the_old_guess_stays() -> None:
    """Overdue by more than a minute, of a type none of which is PROCESSING."""
    app = make_app(handlers=[RecordHandler])
    await app.scheduler.schedule(Record(value="r"))
    assert await waiting_for_a_worker(app.store, app.clock.now() + timedelta(seconds=30)) == {}
    assert await waiting_for_a_worker(app.store, app.clock.now() + timedelta(minutes=2)) == {RECORD: 1}


async def test_an_entry_waits_when_no_live_worker_claims_its_queue_with_a_handler_for_its_type() -> None:
    """Routing is by queue and type: a worker that handles Mail but claims only ``default`` leaves the Mail entries
    of ``emails`` (Mail's default queue) and ``urgent`` waiting, as does a worker of ``emails`` without a Mail
    handler; a worker of every queue that handles Mail ends the wait. ``status``, ``workers --json`` and the
    dashboard read the same report."""
    app = make_app(handlers=[RecordHandler, MailHandler])
    await app.scheduler.schedule_many([Mail(to=str(n)) for n in range(2)])
    await app.scheduler.schedule(Mail(to="u"), ScheduleOptions(queue="urgent"))
    await app.scheduler.schedule_many([Record(value="r"), Mail(to="d")], ScheduleOptions(queue="default"))
    now = app.clock.now() + timedelta(seconds=1)
    both = (RECORD, MAIL)
    await app.store.register_worker(stored("default-only", queues=("default",), command_types=both, last_seen_at=now))
    await app.store.register_worker(stored("emails", queues=("emails",), command_types=(RECORD,), last_seen_at=now))
    expected = {"emails": {MAIL: 2}, "urgent": {MAIL: 1}}
    assert await waiting_by_queue(app.store, now) == expected
    assert await waiting_for_a_worker(app.store, now) == {MAIL: 3}
    report = await overview(app.store, now)
    assert (report.waiting_for_worker_by_queue, report.waiting_for_worker_by_type) == (expected, {MAIL: 3})
    assert (await Fleet.read(app.store, now)).waiting == expected

    await app.store.register_worker(stored("every-queue", command_types=(MAIL,), last_seen_at=now))
    assert await waiting_by_queue(app.store, now) == {}
    assert (await Fleet.read(app.store, now)).waiting == {}


async def test_a_gone_worker_of_the_queue_does_not_count() -> None:
    app = make_app(handlers=[MailHandler])
    await app.scheduler.schedule(Mail(to="a"))
    now = app.clock.now() + timedelta(seconds=1)
    await app.store.register_worker(stored("live", queues=("default",), command_types=(MAIL,), last_seen_at=now))
    gone = stored("gone", queues=("emails",), command_types=(MAIL,), state="stopped", last_seen_at=now)
    await app.store.register_worker(gone)
    assert await waiting_by_queue(app.store, now) == {"emails": {MAIL: 1}}
