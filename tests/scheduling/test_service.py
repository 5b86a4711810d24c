"""ScheduledCommandService: running, retrying, expiring, dead-lettering, notifying; never dying."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import timedelta
from typing import Any

import pytest
from scheduling_app import HANDLERS, START, Add, App, Block, Explode, Fail, Record, eventually, make_app, status

from mediator import NotificationHandler
from scheduling import (
    ScheduledCommandCompleted,
    ScheduledCommandEntry,
    ScheduledCommandExpired,
    ScheduledCommandFailed,
    ScheduledCommandNotification,
    ScheduledCommandRetrying,
    ScheduledCommandStatus,
    ScheduleOptions,
)
from scheduling.codec import command_type_name
from stores import MemoryStore
from stores.errors import StoreUnavailableError

S = ScheduledCommandStatus


# -- running ---------------------------------------------------------------------------------------------------


async def test_run_until_idle_runs_what_is_due_and_nothing_else(app: App) -> None:
    """Due commands run once; a command due later stays PENDING until the clock reaches it."""
    now_id = await app.scheduler.schedule(Record(value="now"))
    later_id = await app.scheduler.schedule(Record(value="later"), ScheduleOptions(delay=timedelta(minutes=5)))
    assert await app.service.run_until_idle() == 1
    assert app.log.records == ["now"]
    assert (await status(app, later_id)).status is S.PENDING
    app.clock.advance(timedelta(minutes=5))
    assert await app.service.run_until_idle() == 1
    assert app.log.records == ["now", "later"]
    assert (await status(app, now_id)).status is S.COMPLETED
    assert await app.service.run_until_idle() == 0


async def test_result_is_stored_as_json_and_published(app: App) -> None:
    """A command's return value is kept in result_payload and carried by ScheduledCommandCompleted."""
    command_id = await app.scheduler.schedule(Add(a=2, b=3), ScheduleOptions(correlation_id="c", metadata={"m": "1"}))
    await app.service.run_until_idle()
    entry = await status(app, command_id)
    assert (entry.status, entry.result_payload, entry.completed_at) == (S.COMPLETED, "5", START)
    [completed] = app.notifications(ScheduledCommandCompleted)
    assert (completed.command_id, completed.result_payload) == (command_id, "5")
    assert (completed.correlation_id, completed.metadata) == ("c", {"m": "1"})
    assert completed.command_type == command_type_name(Add)
    [attempt] = await app.scheduler.get_attempts(command_id)
    assert (attempt.attempt, attempt.outcome, attempt.worker_id, attempt.error) == (1, "completed", "worker-1", None)


async def test_priority_then_due_time_then_fifo() -> None:
    """With one slot, due commands run by priority desc, then earlier due, then scheduling order."""
    app = make_app(max_concurrency=1, batch_size=1)
    await app.scheduler.schedule(Record(value="low"), ScheduleOptions(priority=-1))
    await app.scheduler.schedule(Record(value="normal-1"))
    await app.scheduler.schedule(Record(value="normal-early"), ScheduleOptions(scheduled_for=START - timedelta(1)))
    await app.scheduler.schedule(Record(value="normal-2"))
    await app.scheduler.schedule(Record(value="high"), ScheduleOptions(priority=10))
    await app.scheduler.schedule(Record(value="high-future"), ScheduleOptions(priority=99, delay=timedelta(hours=1)))
    await app.service.run_until_idle()
    assert app.log.records == ["high", "normal-early", "normal-1", "normal-2", "low"]


async def test_max_concurrency_is_respected() -> None:
    """No more than max_concurrency commands run at once."""
    app = make_app(max_concurrency=3, batch_size=2)
    await app.scheduler.schedule_many([Block(key=str(i)) for i in range(10)])
    runner = asyncio.create_task(app.service.run_until_idle())
    await eventually(lambda: _true(len(app.log.started) == 3))
    await asyncio.sleep(0.01)
    assert len(app.log.started) == 3
    app.log.gate.set()
    assert await runner == 10
    assert app.log.max_active == 3


async def _true(value: bool) -> bool:
    return value


# -- failures, retries, dead letters ---------------------------------------------------------------------------


async def test_failed_attempts_retry_with_exponential_backoff_then_complete(app: App) -> None:
    """Each failure reschedules at 10 s, 20 s, ...; ScheduledCommandRetrying says when; then it completes."""
    command_id = await app.scheduler.schedule(Fail(key="k", times=2), ScheduleOptions(max_retries=3))
    await app.service.run_until_idle()
    entry = await status(app, command_id)
    assert (entry.status, entry.retry_count) == (S.PENDING, 1)
    assert entry.scheduled_for == START + timedelta(seconds=10)
    assert entry.error_message == "ValueError: failure 1 of k"

    app.clock.advance(timedelta(seconds=9))
    assert await app.service.run_until_idle() == 0  # not due before its backoff
    app.clock.advance(timedelta(seconds=1))
    await app.service.run_until_idle()
    entry = await status(app, command_id)
    assert (entry.retry_count, entry.scheduled_for) == (2, START + timedelta(seconds=30))

    app.clock.advance(timedelta(seconds=20))
    await app.service.run_until_idle()
    entry = await status(app, command_id)
    assert entry.status is S.COMPLETED

    retrying = app.notifications(ScheduledCommandRetrying)
    assert [(n.attempt, n.next_attempt_at - n.occurred_at) for n in retrying] == [
        (1, timedelta(seconds=10)),
        (2, timedelta(seconds=20)),
    ]
    assert retrying[0].error == "ValueError: failure 1 of k"
    attempts = await app.scheduler.get_attempts(command_id)
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "completed")]
    assert attempts[0].error is not None
    assert attempts[0].error.startswith("ValueError: failure 1 of k")
    assert "Traceback (most recent call last)" in attempts[0].error


async def test_exhausted_retries_dead_letter_the_command(app: App) -> None:
    """After max_retries + 1 failed attempts the entry is FAILED and ScheduledCommandFailed is published once."""
    command_id = await app.scheduler.schedule(Fail(key="k"), ScheduleOptions(max_retries=2))
    for _ in range(5):
        await app.service.run_until_idle()
        app.clock.advance(timedelta(minutes=10))
    entry = await status(app, command_id)
    assert (entry.status, entry.retry_count) == (S.FAILED, 3)
    assert entry.error_message == "ValueError: failure 3 of k"
    assert app.log.failures["k"] == 3
    [failed] = app.notifications(ScheduledCommandFailed)
    assert (failed.attempts, failed.error) == (3, "ValueError: failure 3 of k")
    assert len(app.notifications(ScheduledCommandRetrying)) == 2


async def test_zero_retries_dead_letters_on_first_failure(app: App) -> None:
    """max_retries=0 means one attempt only."""
    command_id = await app.scheduler.schedule(Fail(key="k"), ScheduleOptions(max_retries=0))
    await app.service.run_until_idle()
    assert (await status(app, command_id)).status is S.FAILED


async def test_timeout_counts_as_a_failed_attempt(app: App) -> None:
    """An attempt running past its timeout is cancelled and recorded as timed_out."""
    command_id = await app.scheduler.schedule(
        Block(key="slow"), ScheduleOptions(timeout=timedelta(milliseconds=20), max_retries=0)
    )
    await app.service.run_until_idle()
    entry = await status(app, command_id)
    assert entry.status is S.FAILED
    assert entry.error_message == "TimeoutError: attempt exceeded its timeout of 0.02s"
    [attempt] = await app.scheduler.get_attempts(command_id)
    assert attempt.outcome == "timed_out"
    assert app.log.active == 0  # the handler was really cancelled


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("system_exit", "SystemExit: 3"),
        ("keyboard_interrupt", "KeyboardInterrupt"),
        ("cancel", "CancelledError"),
        ("boom", "RuntimeError: boom"),
    ],
)
async def test_base_exceptions_in_a_handler_are_failed_attempts(app: App, how: str, expected: str) -> None:
    """sys.exit, KeyboardInterrupt and self-cancellation in a handler fail the attempt; the worker goes on."""
    bad = await app.scheduler.schedule(Explode(how=how), ScheduleOptions(max_retries=0))
    good = await app.scheduler.schedule(Record(value="after"))
    assert await app.service.run_until_idle() == 2
    assert (await status(app, bad)).error_message == expected
    assert (await status(app, bad)).status is S.FAILED
    assert (await status(app, good)).status is S.COMPLETED


async def test_unserializable_result_dead_letters_at_once(app: App) -> None:
    """A result that is not JSON is the handler's bug: the entry is FAILED without retries, with a clear error."""
    command_id = await app.scheduler.schedule(Explode(how="unserializable"), ScheduleOptions(max_retries=3))
    await app.service.run_until_idle()
    entry = await status(app, command_id)
    assert entry.status is S.FAILED
    assert entry.error_message is not None
    assert "result of type object is not JSON" in entry.error_message


# -- entries that can never run --------------------------------------------------------------------------------


def raw_entry(command_type: str, payload: str) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=str(uuid.uuid4()),
        command_type=command_type,
        payload=payload,
        status=S.PENDING,
        scheduled_for=START,
        created_at=START,
        max_retries=3,
    )


@pytest.mark.parametrize(
    ("command_type", "payload", "message"),
    [
        (command_type_name(Record), '{"valu": 1}', "no longer validates: value: Field required"),
        (command_type_name(Record), '{"value": ', "no longer validates"),
        (command_type_name(Record), "\x00\udcff", "no longer validates"),
        (command_type_name(Record), "[]", "no longer validates"),
    ],
)
async def test_undeliverable_entries_are_dead_lettered_and_the_service_goes_on(
    app: App, command_type: str, payload: str, message: str
) -> None:
    """Payloads that no longer validate become FAILED at once; the next entry still runs."""
    [bad_id] = await app.store.add([raw_entry(command_type, payload)])
    good = await app.scheduler.schedule(Record(value="ok"))
    assert await app.service.run_until_idle() == 2
    bad = await status(app, bad_id)
    assert bad.status is S.FAILED
    assert bad.error_message is not None and message in bad.error_message
    assert (await status(app, good)).status is S.COMPLETED
    [failed] = app.notifications(ScheduledCommandFailed)
    assert failed.command_id == bad_id


async def test_an_entry_of_a_type_without_a_handler_waits_pending_and_is_never_dead_lettered(app: App) -> None:
    """Routing by handler: a worker never claims a type it cannot run (a rolling deploy's new type, another
    application's type); the entry stays PENDING, spending no attempt, for a worker that handles it."""
    [waiting_id] = await app.store.add([raw_entry("myapp.commands.Added", '{"x": 1}')])
    good = await app.scheduler.schedule(Record(value="ok"))
    assert await app.service.run_until_idle() == 1
    waiting = await status(app, waiting_id)
    assert (waiting.status, waiting.attempt_count, waiting.retry_count) == (S.PENDING, 0, 0)
    assert (await status(app, good)).status is S.COMPLETED
    assert app.notifications(ScheduledCommandFailed) == []


# -- expiry ----------------------------------------------------------------------------------------------------


async def test_entry_not_started_before_expiry_expires(app: App) -> None:
    """An entry claimed after its expires_at becomes EXPIRED, is not run, and ScheduledCommandExpired is published."""
    command_id = await app.scheduler.schedule(
        Record(value="stale"), ScheduleOptions(delay=timedelta(minutes=1), expires_after=timedelta(minutes=10))
    )
    app.clock.advance(timedelta(minutes=11))
    assert await app.service.run_until_idle() == 1
    entry = await status(app, command_id)
    assert (entry.status, entry.completed_at) == (S.EXPIRED, app.clock.now())
    assert app.log.records == []
    assert await app.scheduler.get_attempts(command_id) == []
    [expired] = app.notifications(ScheduledCommandExpired)
    assert expired.command_id == command_id


async def test_entry_started_before_expiry_runs(app: App) -> None:
    """Expiry is counted from the due time: started in time, it runs."""
    command_id = await app.scheduler.schedule(
        Record(value="fresh"), ScheduleOptions(delay=timedelta(minutes=1), expires_after=timedelta(minutes=10))
    )
    app.clock.advance(timedelta(minutes=10))
    await app.service.run_until_idle()
    assert (await status(app, command_id)).status is S.COMPLETED


# -- notifications ---------------------------------------------------------------------------------------------


class BrokenSubscriber(NotificationHandler[ScheduledCommandNotification]):
    async def handle(self, notification: ScheduledCommandNotification) -> None:
        raise RuntimeError("subscriber bug")


async def test_failing_subscriber_is_logged_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """A subscriber that raises is logged with the command id; the entry still completes; the service goes on."""
    app = make_app(handlers=[*HANDLERS, BrokenSubscriber])
    first = await app.scheduler.schedule(Record(value="a"))
    second = await app.scheduler.schedule(Record(value="b"))
    with caplog.at_level(logging.ERROR, logger="scheduling"):
        assert await app.service.run_until_idle() == 2
    assert (await status(app, first)).status is S.COMPLETED
    assert (await status(app, second)).status is S.COMPLETED
    assert len(app.notifications(ScheduledCommandCompleted)) == 2  # the healthy subscriber still got them
    failures = [r for r in caplog.records if "subscriber" in r.getMessage()]
    assert {getattr(r, "command_id", None) for r in failures} == {first, second}


class ExitingSubscriber(NotificationHandler[ScheduledCommandNotification]):
    async def handle(self, notification: ScheduledCommandNotification) -> None:
        raise SystemExit("a subscriber called sys.exit")


async def test_subscriber_calling_sys_exit_does_not_stop_the_service() -> None:
    """Even SystemExit from a subscriber is logged and contained; the background service keeps running."""
    app = make_app(handlers=[*HANDLERS, ExitingSubscriber])
    async with app.service:
        first = await app.scheduler.schedule(Record(value="a"))
        await eventually(lambda: _status_is(app, first, S.COMPLETED))
        second = await app.scheduler.schedule(Record(value="b"))
        await eventually(lambda: _status_is(app, second, S.COMPLETED))
        assert app.service.is_running


async def test_log_records_carry_command_id_and_type(app: App, caplog: pytest.LogCaptureFixture) -> None:
    """Worker log records carry action, command_id and command_type as structured fields."""
    command_id = await app.scheduler.schedule(Fail(key="k", times=1))
    with caplog.at_level(logging.DEBUG, logger="scheduling"):
        await app.service.run_until_idle()
    [retry] = [r for r in caplog.records if getattr(r, "action", None) == "retry"]
    assert (retry.command_id, retry.command_type) == (command_id, command_type_name(Fail))  # type: ignore[attr-defined]
    assert retry.name == "scheduling.service"


# -- leases and recovery ---------------------------------------------------------------------------------------


async def test_expired_lease_of_a_dead_worker_is_recovered_as_a_lost_attempt(app: App) -> None:
    """An entry held by a worker that stopped renewing is taken over: a 'lost' attempt, then a retry."""
    command_id = await app.scheduler.schedule(Record(value="orphan"))
    [claimed] = await app.store.claim_due(
        now=START, limit=1, worker_id="dead-worker", lease_duration=timedelta(seconds=60)
    )
    app.clock.advance(timedelta(seconds=59))
    assert await app.service.run_until_idle() == 0  # lease still valid
    app.clock.advance(timedelta(seconds=2))
    assert await app.service.run_until_idle() == 1
    entry = await status(app, command_id)
    assert (entry.status, entry.retry_count) == (S.PENDING, 1)
    [lost] = await app.scheduler.get_attempts(command_id)
    assert (lost.outcome, lost.worker_id, lost.started_at) == ("lost", "dead-worker", claimed.started_at)
    assert lost.error is not None and "dead-worker stopped renewing its lease" in lost.error
    [retrying] = app.notifications(ScheduledCommandRetrying)
    assert retrying.attempt == 1
    # The dead worker's token fences it out.
    assert claimed.lease_token is not None
    assert not await app.store.complete(
        command_id, claimed.lease_token, result_payload=None, attempt=(await app.scheduler.get_attempts(command_id))[0]
    )
    app.clock.advance(timedelta(seconds=10))
    await app.service.run_until_idle()
    assert (await status(app, command_id)).status is S.COMPLETED
    assert app.log.records == ["orphan"]


async def test_lost_attempt_on_last_retry_dead_letters(app: App) -> None:
    """A lost attempt counts as a failed one: with no retries left the entry is FAILED."""
    command_id = await app.scheduler.schedule(Record(value="orphan"), ScheduleOptions(max_retries=0))
    await app.store.claim_due(now=START, limit=1, worker_id="dead", lease_duration=timedelta(seconds=60))
    app.clock.advance(timedelta(minutes=2))
    await app.service.run_until_idle()
    entry = await status(app, command_id)
    assert entry.status is S.FAILED
    assert entry.error_message == "WorkerLostError: worker dead stopped renewing its lease; the attempt is lost"


async def test_heartbeat_renews_leases_of_long_commands() -> None:
    """While a command runs, its lease is renewed, so another worker does not take it over."""
    store = MemoryStore()
    worker = make_app(store=store, worker_id="busy")
    other = make_app(store=store, clock=worker.clock, worker_id="other")
    command_id = await worker.scheduler.schedule(Block(key="long"))
    runner = asyncio.create_task(worker.service.run_until_idle())
    await eventually(lambda: _true(worker.log.started == ["long"]))
    for _ in range(5):  # five minutes, far past one lease duration
        worker.clock.advance(timedelta(seconds=30))
        await asyncio.sleep(0.01)
        assert await other.service.run_until_idle() == 0
    entry = await status(worker, command_id)
    assert entry.lease_expires_at is not None and entry.lease_expires_at > worker.clock.now()
    worker.log.gate.set()
    await runner
    assert (await status(worker, command_id)).status is S.COMPLETED


# -- the background service ------------------------------------------------------------------------------------


async def test_background_service_is_woken_by_a_command_due_now(running_app: App) -> None:
    """A command scheduled due now runs without the clock moving: the store wakes the sleeping service."""
    await asyncio.sleep(0.01)  # let it go to sleep until its next poll
    command_id = await running_app.scheduler.schedule(Record(value="now"))
    await eventually(lambda: _status_is(running_app, command_id, S.COMPLETED))


async def test_background_service_runs_a_delayed_command_when_its_time_comes(running_app: App) -> None:
    """The service sleeps until the next due time and runs the command when the clock reaches it."""
    command_id = await running_app.scheduler.schedule(Record(value="later"), ScheduleOptions(delay=timedelta(hours=2)))
    await asyncio.sleep(0.02)
    assert (await status(running_app, command_id)).status is S.PENDING
    running_app.clock.advance(timedelta(hours=2))
    await eventually(lambda: _status_is(running_app, command_id, S.COMPLETED))


async def test_background_service_retries_on_schedule(running_app: App) -> None:
    """Retries become due with the clock and run in the background."""
    command_id = await running_app.scheduler.schedule(Fail(key="k", times=1))
    await eventually(lambda: _status_is(running_app, command_id, S.PENDING, retry_count=1))
    running_app.clock.advance(timedelta(seconds=10))
    await eventually(lambda: _status_is(running_app, command_id, S.COMPLETED))


async def _status_is(app: App, command_id: str, expected: S, retry_count: int | None = None) -> bool:
    entry = await app.scheduler.get_status(command_id)
    return entry is not None and entry.status is expected and (retry_count is None or entry.retry_count == retry_count)


async def test_graceful_stop_releases_unfinished_commands_without_counting_an_attempt() -> None:
    """On stop, running commands get shutdown_grace; the rest are cancelled and go back to PENDING."""
    app = make_app(shutdown_grace=timedelta(milliseconds=20))
    command_id = await app.scheduler.schedule(Block(key="forever"))
    async with app.service:
        await eventually(lambda: _true(app.log.started == ["forever"]))
    entry = await status(app, command_id)
    assert (entry.status, entry.retry_count, entry.lease_token) == (S.PENDING, 0, None)
    assert await app.scheduler.get_attempts(command_id) == []
    assert app.log.active == 0


async def test_graceful_stop_lets_commands_finish_within_the_grace() -> None:
    """A command that finishes within shutdown_grace completes normally."""
    app = make_app(shutdown_grace=timedelta(seconds=5))
    command_id = await app.scheduler.schedule(Block(key="short"))
    await app.service.start()
    await eventually(lambda: _true(app.log.started == ["short"]))
    stopping = asyncio.create_task(app.service.stop())
    await asyncio.sleep(0.01)
    app.log.gate.set()
    await stopping
    assert (await status(app, command_id)).status is S.COMPLETED


class ClaimSignallingStore(MemoryStore):
    """A MemoryStore that resolves ``claimed`` when a claim returns entries, before the service spawns their tasks."""

    def __init__(self) -> None:
        super().__init__()
        self.claimed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def claim_due(self, **kwargs: Any) -> list[ScheduledCommandEntry]:
        entries = await super().claim_due(**kwargs)
        if entries and not self.claimed.done():
            self.claimed.set_result(None)
        return entries


async def test_immediate_stop_right_after_a_claim_releases_every_entry() -> None:
    """A second signal (immediate stop) that lands between a claim and the start of its tasks: a task cancelled
    before it starts never runs, so the service must let them start before cancelling, or the entries stay
    PROCESSING until their leases expire and count a lost attempt."""
    store = ClaimSignallingStore()
    app = make_app(store=store, max_concurrency=2)
    ids = await app.scheduler.schedule_many([Block(key="x"), Block(key="y")])

    async def stop_at_once() -> None:
        await store.claimed
        await app.service.stop(immediate=True)

    stopper = asyncio.create_task(stop_at_once())
    await app.service.start()
    await stopper
    for command_id in ids:
        entry = await status(app, command_id)
        assert (entry.status, entry.lease_owner, entry.attempt_count) == (S.PENDING, None, 0)


async def test_stopped_service_claims_nothing_more(app: App) -> None:
    """After stop(), new due commands stay PENDING."""
    async with app.service:
        pass
    command_id = await app.scheduler.schedule(Record(value="x"))
    await asyncio.sleep(0.01)
    assert (await status(app, command_id)).status is S.PENDING


async def test_disabled_service_does_not_run() -> None:
    """enabled=False: start() and run_until_idle() do nothing."""
    app = make_app(enabled=False)
    command_id = await app.scheduler.schedule(Record(value="x"))
    async with app.service:
        await asyncio.sleep(0.01)
    assert await app.service.run_until_idle() == 0
    assert (await status(app, command_id)).status is S.PENDING
    assert not app.service.is_running


async def test_run_until_idle_refuses_while_running(running_app: App) -> None:
    """run_until_idle is for a stopped service."""
    with pytest.raises(RuntimeError, match="while the service is running"):
        await running_app.service.run_until_idle()


# -- a store that fails for a while ----------------------------------------------------------------------------


class FlakyStore(MemoryStore):
    """A real MemoryStore whose claim_due and complete fail the first few calls, like a database restarting."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.claim_failures = failures
        self.complete_failures = failures

    async def claim_due(self, **kwargs: Any) -> list[ScheduledCommandEntry]:
        if self.claim_failures:
            self.claim_failures -= 1
            raise StoreUnavailableError("memory://flaky", "connection refused")
        return await super().claim_due(**kwargs)

    async def complete(self, entry_id: str, lease_token: str, **kwargs: Any) -> bool:
        if self.complete_failures:
            self.complete_failures -= 1
            raise StoreUnavailableError("memory://flaky", "connection reset")
        return await super().complete(entry_id, lease_token, **kwargs)


async def test_background_service_survives_store_outages(caplog: pytest.LogCaptureFixture) -> None:
    """Failing claims and completions are logged and retried with backoff; nothing is lost."""
    store = FlakyStore(failures=2)
    app = make_app(store=store)
    ids = await app.scheduler.schedule_many([Record(value=str(i)) for i in range(3)])
    with caplog.at_level(logging.WARNING, logger="scheduling"):
        async with app.service:
            await eventually(lambda: _all_completed(app, ids))
    assert sorted(app.log.records) == ["0", "1", "2"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("claiming due commands failed" in m for m in messages)
    assert any("store call failed" in m for m in messages)


async def _all_completed(app: App, ids: list[str]) -> bool:
    return all([(await status(app, i)).status is S.COMPLETED for i in ids])
