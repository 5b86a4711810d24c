"""CommandScheduler: what schedule() stores, what it refuses, and cancel/requeue/inspection."""

from __future__ import annotations

from datetime import timedelta

import pytest
from scheduling_app import START, Add, App, Fail, Record, Unhandled, make_app

from mediator import HandlerNotFoundError
from scheduling import (
    ScheduledCommandCancelled,
    ScheduledCommandStatus,
    ScheduleOptions,
)
from scheduling.codec import command_type_name
from scheduling.errors import NotACommandError, PayloadTooLargeError

PENDING = ScheduledCommandStatus.PENDING


async def test_schedule_stores_a_pending_entry_due_now(app: App) -> None:
    """Without options, the entry is PENDING, due now, with the settings' retries."""
    command_id = await app.scheduler.schedule(Record(value="x"))
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None
    assert entry.status is PENDING
    assert entry.command_type == command_type_name(Record)
    assert entry.payload == '{"value":"x"}'
    assert entry.scheduled_for == START
    assert entry.created_at == START
    assert entry.max_retries == app.settings.max_retries
    assert entry.retry_count == 0
    assert entry.expires_at is None


async def test_schedule_stores_every_option(app: App) -> None:
    """Every option lands in the entry: due time, priority, retries, expiry, correlation, metadata, timeout."""
    options = ScheduleOptions(
        delay=timedelta(hours=1),
        priority=7,
        max_retries=5,
        expires_after=timedelta(minutes=30),
        correlation_id="c-1",
        metadata={"user": "42"},
        idempotency_key="k-1",
        timeout=timedelta(seconds=30),
    )
    entry = await app.scheduler.get_status(await app.scheduler.schedule(Record(value="x"), options))
    assert entry is not None
    assert entry.scheduled_for == START + timedelta(hours=1)
    assert entry.expires_at == START + timedelta(hours=1, minutes=30)
    assert (entry.priority, entry.max_retries, entry.correlation_id) == (7, 5, "c-1")
    assert entry.metadata == {"user": "42"}
    assert entry.idempotency_key == "k-1"
    assert entry.timeout_seconds == 30


async def test_schedule_without_handler_raises_and_stores_nothing(app: App) -> None:
    """A command type without a handler is refused at schedule() time, naming the type."""
    with pytest.raises(HandlerNotFoundError, match="Unhandled"):
        await app.scheduler.schedule(Unhandled())
    assert sum((await app.store.count_by_status()).values()) == 0


async def test_schedule_of_a_non_command_is_refused(app: App) -> None:
    """Only commands can be scheduled."""
    with pytest.raises(NotACommandError, match="only Command instances"):
        await app.scheduler.schedule("send an email")  # type: ignore[arg-type]


async def test_class_checks_are_remembered_only_for_classes_that_pass(app: App) -> None:
    """A class refused (no handler, not a command) is refused at every call, alone or in a batch; a class that
    passed keeps its stored type name, whether scheduled alone or in a batch after the check was remembered."""
    for _ in range(2):
        with pytest.raises(HandlerNotFoundError, match="Unhandled"):
            await app.scheduler.schedule(Unhandled())
        with pytest.raises(HandlerNotFoundError, match="Unhandled"):
            await app.scheduler.schedule_many([Record(value="a"), Unhandled()])
        with pytest.raises(NotACommandError):
            await app.scheduler.schedule_many([Record(value="a"), "not a command"])  # type: ignore[list-item]
    assert sum((await app.store.count_by_status()).values()) == 0
    ids = [await app.scheduler.schedule(Record(value="a")), *await app.scheduler.schedule_many([Record(value="b")])]
    entries = [await app.scheduler.get_status(i) for i in ids]
    assert [e.command_type for e in entries if e] == [command_type_name(Record)] * 2


async def test_oversized_payload_is_refused_and_stores_nothing() -> None:
    """A payload over max_payload_bytes raises PayloadTooLargeError naming the size and limit."""
    app = make_app(max_payload_bytes=100)
    with pytest.raises(PayloadTooLargeError, match=r"\d+ bytes, over max_payload_bytes=100"):
        await app.scheduler.schedule(Record(value="x" * 200))
    assert sum((await app.store.count_by_status()).values()) == 0


async def test_schedule_many_is_all_or_nothing(app: App) -> None:
    """One bad command in a batch stores none of the batch."""
    with pytest.raises(HandlerNotFoundError):
        await app.scheduler.schedule_many([Record(value="a"), Unhandled()])
    assert sum((await app.store.count_by_status()).values()) == 0


async def test_schedule_many_returns_ids_in_order(app: App) -> None:
    """schedule_many stores every command with the same options and returns ids in order."""
    ids = await app.scheduler.schedule_many(
        [Record(value="a"), Add(a=1, b=2)], ScheduleOptions(delay=timedelta(minutes=5))
    )
    entries = [await app.scheduler.get_status(i) for i in ids]
    assert [e.payload for e in entries if e] == ['{"value":"a"}', '{"a":1,"b":2}']
    assert all(e is not None and e.scheduled_for == START + timedelta(minutes=5) for e in entries)
    assert await app.scheduler.schedule_many([]) == []


async def test_idempotency_key_returns_the_first_id(app: App) -> None:
    """Scheduling again with a held key returns the first id and stores nothing new."""
    options = ScheduleOptions(idempotency_key="welcome:42")
    first = await app.scheduler.schedule(Record(value="a"), options)
    second = await app.scheduler.schedule(Record(value="b"), options)
    assert first == second
    assert (await app.store.count_by_status())[PENDING] == 1


async def test_idempotency_key_with_several_commands_is_refused(app: App) -> None:
    """A key cannot be shared by several commands of one schedule_many call."""
    with pytest.raises(ValueError, match="cannot be shared"):
        await app.scheduler.schedule_many([Record(value="a"), Record(value="b")], ScheduleOptions(idempotency_key="k"))


async def test_cancel_pending_publishes_cancelled(app: App) -> None:
    """cancel() of a PENDING entry returns True, marks it CANCELLED and publishes ScheduledCommandCancelled."""
    command_id = await app.scheduler.schedule(
        Record(value="a"), ScheduleOptions(correlation_id="c", metadata={"k": "v"})
    )
    assert await app.scheduler.cancel(command_id) is True
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None and entry.status is ScheduledCommandStatus.CANCELLED
    [notification] = app.notifications(ScheduledCommandCancelled)
    assert notification.command_id == command_id
    assert (notification.correlation_id, notification.metadata) == ("c", {"k": "v"})
    assert notification.occurred_at == START


async def test_cancel_of_unknown_or_finished_returns_false(app: App) -> None:
    """cancel() is True only for PENDING entries."""
    assert await app.scheduler.cancel("no-such-id") is False
    command_id = await app.scheduler.schedule(Record(value="a"))
    await app.service.run_until_idle()
    assert await app.scheduler.cancel(command_id) is False
    assert app.notifications(ScheduledCommandCancelled) == []


async def test_cancel_by_correlation_id_cancels_only_pending_of_that_flow(app: App) -> None:
    """Every PENDING entry of the correlation id is cancelled; others are untouched."""
    flow = ScheduleOptions(correlation_id="order-1", delay=timedelta(hours=1))
    a, b = await app.scheduler.schedule_many([Record(value="a"), Record(value="b")], flow)
    done = await app.scheduler.schedule(Record(value="c"), ScheduleOptions(correlation_id="order-1"))
    other = await app.scheduler.schedule(Record(value="d"), ScheduleOptions(correlation_id="order-2"))
    await app.service.run_until_idle()  # runs the two due now
    assert await app.scheduler.cancel_by_correlation_id("order-1") == 2
    statuses = {i: (await app.scheduler.get_status(i)).status for i in (a, b, done, other)}  # type: ignore[union-attr]
    assert statuses == {
        a: ScheduledCommandStatus.CANCELLED,
        b: ScheduledCommandStatus.CANCELLED,
        done: ScheduledCommandStatus.COMPLETED,
        other: ScheduledCommandStatus.COMPLETED,
    }
    assert {n.command_id for n in app.notifications(ScheduledCommandCancelled)} == {a, b}


async def test_requeue_runs_a_dead_letter_again(app: App) -> None:
    """requeue() moves FAILED to PENDING, due now, retry_count 0; then it runs."""
    command_id = await app.scheduler.schedule(Fail(key="k", times=1), ScheduleOptions(max_retries=0))
    await app.service.run_until_idle()
    failed = await app.scheduler.get_status(command_id)
    assert failed is not None and failed.status is ScheduledCommandStatus.FAILED
    app.clock.advance(timedelta(hours=1))
    assert await app.scheduler.requeue(command_id) is True
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None
    assert (entry.status, entry.retry_count, entry.scheduled_for) == (PENDING, 0, app.clock.now())
    await app.service.run_until_idle()
    done = await app.scheduler.get_status(command_id)
    assert done is not None and done.status is ScheduledCommandStatus.COMPLETED
    assert [a.outcome for a in await app.scheduler.get_attempts(command_id)] == ["failed", "completed"]


async def test_requeue_of_non_failed_returns_false(app: App) -> None:
    """Only FAILED entries can be requeued."""
    command_id = await app.scheduler.schedule(Record(value="a"))
    assert await app.scheduler.requeue(command_id) is False
    assert await app.scheduler.requeue("missing") is False


async def test_get_status_of_unknown_id_is_none(app: App) -> None:
    """An id the store does not hold gives None, and no attempts."""
    assert await app.scheduler.get_status("missing") is None
    assert await app.scheduler.get_attempts("missing") == []


async def test_requeue_runs_even_past_the_original_expiry(app: App) -> None:
    """A requeued dead letter runs: its original expires_after no longer applies."""
    command_id = await app.scheduler.schedule(
        Fail(key="k", times=1), ScheduleOptions(max_retries=0, expires_after=timedelta(minutes=5))
    )
    await app.service.run_until_idle()
    app.clock.advance(timedelta(hours=1))
    assert await app.scheduler.requeue(command_id)
    await app.service.run_until_idle()
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None
    assert (entry.status, entry.expires_at) == (ScheduledCommandStatus.COMPLETED, None)


async def test_attempt_numbers_keep_counting_across_requeues(app: App) -> None:
    """The audit trail numbers attempts over the entry's whole life; retry_count restarts at requeue."""
    command_id = await app.scheduler.schedule(Fail(key="k", times=2), ScheduleOptions(max_retries=0))
    await app.service.run_until_idle()
    assert await app.scheduler.requeue(command_id)
    await app.service.run_until_idle()
    assert await app.scheduler.requeue(command_id)
    await app.service.run_until_idle()
    attempts = await app.scheduler.get_attempts(command_id)
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "failed"), (2, "failed"), (3, "completed")]
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None
    assert (entry.retry_count, entry.attempt_count) == (0, 3)


async def test_transactional_scheduling_needs_a_sql_store(app: App) -> None:
    """session= with a MemoryStore is refused with a clear error, and nothing is stored."""
    from stores.errors import SessionNotSupportedError

    with pytest.raises(SessionNotSupportedError, match="transactional scheduling needs a SqlStore"):
        await app.scheduler.schedule(Record(value="a"), session=object())
    assert sum((await app.store.count_by_status()).values()) == 0
