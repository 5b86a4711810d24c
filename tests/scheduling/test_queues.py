"""Queues, routing and locks through the scheduler and the service (MemoryStore, ManualClock); every store is held
to the same claim rules by tests/stores/test_contract_queues.py, and real worker processes by
tests/processes/test_fleet_processes.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import ClassVar

import pytest
from pydantic import ValidationError
from scheduling_app import START, App, Record, RecordHandler, eventually, make_app

from mediator import Command, CommandHandler
from scheduling import ScheduledCommandStatus, ScheduleOptions, SchedulerSettings
from stores import MemoryStore
from stores.queues import QueueInfo, RateLimit

S = ScheduledCommandStatus


class Mail(Command[None]):
    """A command class naming its default queue."""

    default_queue: ClassVar[str] = "emails"

    to: str


class BadQueue(Command[None]):
    default_queue: ClassVar[str] = "no spaces allowed"


class MailHandler(CommandHandler[Mail, None]):
    async def handle(self, command: Mail) -> None:
        return None


class BadQueueHandler(CommandHandler[BadQueue, None]):
    async def handle(self, command: BadQueue) -> None:
        return None


def fleet_app(**settings: object) -> App:
    return make_app(handlers=[RecordHandler, MailHandler, BadQueueHandler], **settings)


@pytest.mark.parametrize("name", ["", "a b", "x" * 101, "é", "emails/eu", "tab\t"])
def test_a_bad_queue_name_is_refused_naming_it(name: str) -> None:
    with pytest.raises(ValidationError, match="queue must match") as raised:
        ScheduleOptions(queue=name)
    assert repr(name[:120]) in str(raised.value)
    with pytest.raises(ValidationError, match="queues must match"):
        SchedulerSettings(queues=("default", name))


@pytest.mark.parametrize("name", ["default", "emails", "a.b:c-d_e", "x" * 100])
def test_good_queue_names(name: str) -> None:
    assert ScheduleOptions(queue=name).queue == name


def test_settings_queues_none_or_empty_mean_every_queue() -> None:
    assert SchedulerSettings().queues is None
    assert SchedulerSettings(queues=()).queues is None
    assert SchedulerSettings(queues=("a", "b", "a")).queues == ("a", "b")


async def test_the_queue_is_the_options_then_the_class_default_then_default() -> None:
    app = fleet_app()
    mail = await app.scheduler.get_status(await app.scheduler.schedule(Mail(to="x")))
    moved = await app.scheduler.get_status(await app.scheduler.schedule(Mail(to="x"), ScheduleOptions(queue="bulk")))
    record = await app.scheduler.get_status(await app.scheduler.schedule(Record(value="r")))
    many = await app.scheduler.schedule_many([Record(value="a"), Mail(to="b")])
    assert mail is not None and moved is not None and record is not None
    assert (mail.queue, moved.queue, record.queue) == ("emails", "bulk", "default")
    assert [e.queue for e in [await app.scheduler.get_status(i) for i in many] if e] == ["default", "emails"]


async def test_a_bad_class_default_queue_is_refused_naming_the_class() -> None:
    """Refused at every call (a class's queue is read once per scheduler only once it is found good), and in a
    batch; an explicit queue in the options still schedules it."""
    app = fleet_app()
    for _ in range(2):
        with pytest.raises(ValueError, match=r"BadQueue.default_queue must match .* got 'no spaces allowed'"):
            await app.scheduler.schedule(BadQueue())
    with pytest.raises(ValueError, match=r"BadQueue.default_queue must match"):
        await app.scheduler.schedule_many([Record(value="r"), BadQueue()])
    assert sum((await app.store.count_by_status()).values()) == 0
    moved = await app.scheduler.get_status(await app.scheduler.schedule(BadQueue(), ScheduleOptions(queue="ok")))
    assert moved is not None and moved.queue == "ok"


async def test_a_worker_runs_only_its_queues() -> None:
    store = MemoryStore()
    emails_worker = fleet_app(store=store, queues=("emails",))
    other = await emails_worker.scheduler.schedule(Record(value="r"))
    mail = await emails_worker.scheduler.schedule(Mail(to="x"))
    assert await emails_worker.service.run_until_idle() == 1
    statuses = [await emails_worker.scheduler.get_status(i) for i in (mail, other)]
    assert [e.status for e in statuses if e is not None] == [S.COMPLETED, S.PENDING]


async def test_a_paused_queue_waits_and_runs_when_resumed() -> None:
    app = fleet_app()
    await app.scheduler.pause_queue("emails")
    mail = await app.scheduler.schedule(Mail(to="x"))
    await app.scheduler.schedule(Record(value="r"))
    assert await app.service.run_until_idle() == 1
    assert await app.scheduler.list_queues() == [
        QueueInfo(name="emails", paused=True, depth=1),
    ]
    await app.scheduler.resume_queue("emails")
    assert await app.service.run_until_idle() == 1
    entry = await app.scheduler.get_status(mail)
    assert entry is not None and entry.status is S.COMPLETED


async def test_pause_refuses_a_bad_name() -> None:
    with pytest.raises(ValueError, match="'bad name'"):
        await fleet_app().scheduler.pause_queue("bad name")


async def test_recurring_occurrences_lock_on_the_schedule_name_unless_overlap() -> None:
    app = fleet_app()
    await app.scheduler.schedule_recurring("tick", Record(value="t"), interval=timedelta(minutes=1))
    await app.scheduler.schedule_recurring("free", Record(value="f"), interval=timedelta(minutes=1), overlap=True)
    await app.scheduler.schedule_recurring(
        "own", Record(value="o"), interval=timedelta(minutes=1), options=ScheduleOptions(lock="mine")
    )
    locks = {e.recurring_name: e.lock for e in await app.store.list_entries(status=S.PENDING)}
    assert locks == {"tick": "recurring:tick", "free": None, "own": "mine"}


async def test_a_lock_runs_its_entries_one_after_another_without_spending_attempts() -> None:
    app = fleet_app()
    ids = [await app.scheduler.schedule(Record(value=str(n)), ScheduleOptions(lock="L")) for n in range(3)]
    assert await app.service.run_until_idle() == 3
    entries = [await app.scheduler.get_status(i) for i in ids]
    assert [(e.status, e.attempt_count) for e in entries if e] == [(S.COMPLETED, 1)] * 3


async def test_queue_limits_are_set_listed_and_cleared_through_the_scheduler() -> None:
    app = fleet_app()
    rate = RateLimit(count=100, per=timedelta(minutes=1))
    await app.scheduler.set_queue_limits("emails", max_running=5, rate=rate)
    assert await app.scheduler.list_queues() == [QueueInfo(name="emails", max_running=5, rate=rate)]
    await app.scheduler.set_queue_limits("emails")
    assert await app.scheduler.list_queues() == []


async def test_a_limit_set_through_the_scheduler_holds_for_the_claim() -> None:
    app = fleet_app()
    await app.scheduler.set_queue_limits("emails", max_running=1)
    await app.scheduler.schedule_many([Mail(to=str(n)) for n in range(3)])
    claimed = await app.store.claim_due(now=app.clock.now(), limit=10, worker_id="w", lease_duration=timedelta(60))
    assert len(claimed) == 1


@pytest.mark.parametrize(
    ("limits", "named"),
    [({"max_running": 0}, "input_value=0"), ({"max_running": -3}, "input_value=-3"), ({"max_running": "x"}, "'x'")],
)
async def test_queue_limits_refuse_bad_values_naming_them(limits: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError, match=named):
        await fleet_app().scheduler.set_queue_limits("emails", **limits)  # type: ignore[arg-type]


async def test_queue_limits_refuse_a_bad_name() -> None:
    with pytest.raises(ValueError, match="'bad name'"):
        await fleet_app().scheduler.set_queue_limits("bad name", max_running=1)


async def test_a_worker_at_a_queues_rate_claims_the_moment_its_next_start_frees() -> None:
    """Blocked by a rate, the claim loop sleeps until the store's ``next_start_at`` rather than its 100 ms poll: the
    third start of a rate of 2 per 10.03 s comes at 10.03 s, though the loop's poll would claim next at 10.1 s."""
    app = make_app(polling_interval=timedelta(hours=1))
    await app.scheduler.set_queue_limits("api", rate=RateLimit(count=2, per=timedelta(seconds=10.03)))
    for n in range(3):
        await app.scheduler.schedule(Record(value=str(n)), ScheduleOptions(queue="api"))

    async def done(count: int) -> bool:
        return (await app.store.count_by_status()).get(S.COMPLETED, 0) == count

    async with app.service:
        await eventually(lambda: done(2))
        app.clock.advance(timedelta(seconds=9.9))  # the loop polls (nothing) and would next claim at 10.0 s
        await asyncio.sleep(0.05)
        app.clock.set(START + timedelta(seconds=10))  # claims nothing: the slot frees at 10.03 s
        await asyncio.sleep(0.05)
        assert await done(2)
        app.clock.set(START + timedelta(seconds=10.03))
        await eventually(lambda: done(3))
