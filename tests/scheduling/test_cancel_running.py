"""``cancel(id, running=True)`` in one process (MemoryStore): the worker holding the entry cancels the attempt,
records it as cancelled and ends the entry CANCELLED, not retried. Real processes: tests/processes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from scheduling_app import CollectNotifications, eventually, make_app, status

from mediator import Command, CommandHandler
from scheduling import CommandContext, ScheduledCommandCancelled, ScheduledCommandStatus, ScheduleOptions
from scheduling.service import CLAIM_AHEAD

NEVER = asyncio.Event()


class Endless(Command[None]):
    pass


class EndlessHandler(CommandHandler[Endless, None]):
    async def handle(self, command: Endless) -> None:
        await NEVER.wait()


class Patient(Command[str]):
    pass


class PatientHandler(CommandHandler[Patient, str]):
    def handle(self, command: Patient) -> str:  # a plain def handler: runs in a thread
        context = CommandContext.current()
        assert context is not None
        return "told" if context.wait_for_cancel(30) else "never told"


class Quick(Command[int]):
    pass


class QuickHandler(CommandHandler[Quick, int]):
    async def handle(self, command: Quick) -> int:
        return 1


class Forever(Command[None]):
    pass


class ForeverHandler(CommandHandler[Forever, None]):
    async def handle(self, command: Forever) -> None:
        await asyncio.Event().wait()  # an event of this loop: never set


HANDLERS: list[type] = [EndlessHandler, PatientHandler, QuickHandler, ForeverHandler, CollectNotifications]


async def _processing(app: object, command_id: str) -> None:
    async def running() -> bool:
        return (await status(app, command_id)).status is ScheduledCommandStatus.PROCESSING  # type: ignore[arg-type]

    await eventually(running)


async def test_an_async_handler_is_cancelled_and_the_entry_ends_cancelled() -> None:
    app = make_app(handlers=HANDLERS)
    async with app.service:
        command_id = await app.scheduler.schedule(Endless(), ScheduleOptions(max_retries=5))
        await _processing(app, command_id)
        assert await app.scheduler.cancel(command_id) is False  # not PENDING: plain cancel leaves it alone
        assert await app.scheduler.cancel(command_id, running=True) is True

        async def cancelled() -> bool:
            return (await status(app, command_id)).status is ScheduledCommandStatus.CANCELLED

        await eventually(cancelled)
    entry = await status(app, command_id)
    assert entry.retry_count == 0 and entry.error_message == "cancelled on request while it ran"
    [attempt] = await app.scheduler.get_attempts(command_id)
    assert attempt.outcome == "cancelled"
    assert [n.command_id for n in app.notifications(ScheduledCommandCancelled)] == [command_id]


async def test_a_def_handler_is_told_through_its_context_and_holds_its_slot_until_it_returns() -> None:
    app = make_app(handlers=HANDLERS, max_concurrency=1)
    async with app.service:
        command_id = await app.scheduler.schedule(Patient())
        await _processing(app, command_id)
        assert await app.scheduler.cancel(command_id, running=True) is True

        async def cancelled() -> bool:
            return (await status(app, command_id)).status is ScheduledCommandStatus.CANCELLED

        await eventually(cancelled)
    [attempt] = await app.scheduler.get_attempts(command_id)
    assert attempt.outcome == "cancelled"


async def test_cancelling_a_finished_command_is_a_no_op() -> None:
    app = make_app(handlers=HANDLERS)
    command_id = await app.scheduler.schedule(Quick())
    await app.service.run_until_idle()
    assert await app.scheduler.cancel(command_id, running=True) is False
    assert await app.scheduler.cancel("unknown", running=True) is False
    entry = await status(app, command_id)
    assert entry.status is ScheduledCommandStatus.COMPLETED and entry.cancel_requested_at is None


async def test_a_request_between_the_claim_and_the_start_cancels_the_attempt_as_it_starts() -> None:
    """The cancel watch is registered at the claim: a request for an entry claimed ahead (waiting for its due time)
    is heard, and its handler is cancelled as soon as it starts, not run to its end."""
    app = make_app(handlers=HANDLERS)
    async with app.service:
        command_id = await app.scheduler.schedule(Forever(), ScheduleOptions(delay=CLAIM_AHEAD / 2, max_retries=5))
        await _processing(app, command_id)  # claimed ahead: held, its handler not started
        assert await app.scheduler.cancel(command_id, running=True) is True
        app.clock.advance(CLAIM_AHEAD / 2 + timedelta(microseconds=1))

        async def cancelled() -> bool:
            return (await status(app, command_id)).status is ScheduledCommandStatus.CANCELLED

        await eventually(cancelled)
    [attempt] = await app.scheduler.get_attempts(command_id)
    assert attempt.outcome == "cancelled"
