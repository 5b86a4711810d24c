"""A slot is free for the next claim while the outcome of its last attempt is being written; the entry keeps its
lease (renewed) until the write is done, and no more than ``max_concurrency`` outcomes are in flight beside the
running attempts."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from scheduling_app import Record, RecordHandler, eventually, make_app, status

from mediator import NotificationHandler
from scheduling import ScheduledCommandCompleted, ScheduledCommandStatus
from stores import MemoryStore
from stores.entries import AttemptRecord

S = ScheduledCommandStatus


class HeldOutcomes(MemoryStore):
    """A memory store whose ``complete`` waits for ``gate`` (an outcome write that takes its time)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.writing: list[str] = []

    async def complete(
        self, entry_id: str, lease_token: str, *, result_payload: str | None, attempt: AttemptRecord
    ) -> bool:
        self.writing.append(entry_id)
        await self.gate.wait()
        return await super().complete(entry_id, lease_token, result_payload=result_payload, attempt=attempt)


async def test_the_next_command_runs_while_the_outcome_of_the_last_one_is_written() -> None:
    store = HeldOutcomes()
    app = make_app(store=store, max_concurrency=1, lease_duration=timedelta(seconds=30))
    first, second, third = await app.scheduler.schedule_many([Record(value=v) for v in ("a", "b", "c")])
    async with app.service:

        async def two_outcomes_in_flight() -> bool:
            return len(store.writing) == 2

        await eventually(two_outcomes_in_flight)
        assert app.log.records == ["a", "b"]  # b ran while a's outcome was being written
        await asyncio.sleep(0.05)  # room for a wrong claim of c; the assertions below do not depend on it
        # One slot: one attempt running and one outcome in flight at most, so c waits for a write to end.
        assert app.log.records == ["a", "b"]
        assert [(await status(app, i)).status for i in (first, second, third)] == [
            S.PROCESSING,
            S.PROCESSING,
            S.PENDING,
        ]

        held = await status(app, first)
        assert held.lease_expires_at is not None
        app.clock.advance(app.settings.heartbeat_interval)

        async def lease_renewed() -> bool:
            entry = await status(app, first)
            return entry.lease_expires_at is not None and entry.lease_expires_at > held.lease_expires_at  # type: ignore[operator]

        await eventually(lease_renewed)  # the heartbeat still renews an entry whose outcome is being written
        store.gate.set()

        async def all_done() -> bool:
            return (await store.count_by_status())[S.COMPLETED] == 3

        await eventually(all_done)
    assert app.log.records == ["a", "b", "c"]
    for entry_id in (first, second, third):
        [attempt] = await app.scheduler.get_attempts(entry_id)
        assert attempt.outcome == "completed"


async def test_stopping_waits_for_an_outcome_being_written() -> None:
    store = HeldOutcomes()
    app = make_app(store=store, max_concurrency=1, shutdown_grace=timedelta(seconds=30))
    [only] = await app.scheduler.schedule_many([Record(value="a")])
    await app.service.start()

    async def writing() -> bool:
        return store.writing == [only]

    await eventually(writing)
    stopping = asyncio.ensure_future(app.service.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # the outcome is still being written: the service is not done with the entry
    store.gate.set()
    async with asyncio.timeout(5):
        await stopping
    assert (await status(app, only)).status is S.COMPLETED


NOTIFYING = asyncio.Event()
RELEASE_NOTIFICATION = asyncio.Event()


class SlowCompletedHandler(NotificationHandler[ScheduledCommandCompleted]):
    """Application code run for each completion: it holds until the test lets it go."""

    async def handle(self, notification: ScheduledCommandCompleted) -> None:
        NOTIFYING.set()
        await RELEASE_NOTIFICATION.wait()


async def test_notification_handlers_take_a_slot_like_the_handler() -> None:
    """Once an outcome is written, what its task still runs (the notification's handlers, application code) counts
    against ``max_concurrency`` again: with one slot, the next command waits for the notification to be handled."""
    NOTIFYING.clear()
    RELEASE_NOTIFICATION.clear()
    app = make_app(handlers=[RecordHandler, SlowCompletedHandler], max_concurrency=1)
    await app.scheduler.schedule_many([Record(value=v) for v in ("a", "b")])
    async with app.service:
        await asyncio.wait_for(NOTIFYING.wait(), timeout=10)
        await asyncio.sleep(0.05)  # room for a wrong start of b; the assertion holds either way when correct
        assert app.log.records == ["a"]  # b waits while a's notification is handled
        RELEASE_NOTIFICATION.set()

        async def both_ran() -> bool:
            return app.log.records == ["a", "b"]

        await eventually(both_ran)
