"""``CommandContext``: inside a handler run by the service, the scheduled run it is part of; ``None`` elsewhere."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from injector import inject
from scheduling_app import START, make_app

from mediator import Command, CommandHandler, NotificationHandler
from scheduling import CommandContext, ScheduledCommandCompleted, ScheduledCommandStatus, ScheduleOptions
from scheduling.context import NoCommandContextError

SEEN: list[CommandContext | None] = []
NOTIFIED: list[CommandContext | None] = []


@pytest.fixture(autouse=True)
def clear_seen() -> None:
    SEEN.clear()
    NOTIFIED.clear()


class Flaky(Command[int]):
    """Fails until its third attempt; returns the attempt number its context gave."""


class FlakyHandler(CommandHandler[Flaky, int]):
    async def handle(self, command: Flaky) -> int:
        context = CommandContext.current()
        SEEN.append(context)
        assert context is not None
        if context.attempt < 3:
            raise ConnectionError(f"attempt {context.attempt}")
        return context.attempt


class InThread(Command[None]):
    pass


class InThreadHandler(CommandHandler[InThread, None]):
    def handle(self, command: InThread) -> None:
        assert threading.current_thread() is not threading.main_thread()
        SEEN.append(CommandContext.current())


class Injected(Command[str]):
    pass


class InjectedHandler(CommandHandler[Injected, str]):
    @inject
    def __init__(self, context: CommandContext) -> None:
        self.context = context

    async def handle(self, command: Injected) -> str:
        SEEN.append(self.context)
        return self.context.command_id


class Parallel(Command[None]):
    name: str


GATE = asyncio.Event()


class ParallelHandler(CommandHandler[Parallel, None]):
    async def handle(self, command: Parallel) -> None:
        await GATE.wait()  # every attempt is running at once when the gate opens
        context = CommandContext.current()
        assert context is not None
        SEEN.append(context)
        assert context.metadata == {"name": command.name}


class WatchCompleted(NotificationHandler[ScheduledCommandCompleted]):
    async def handle(self, notification: ScheduledCommandCompleted) -> None:
        NOTIFIED.append(CommandContext.current())


HANDLERS: list[type] = [FlakyHandler, InThreadHandler, InjectedHandler, ParallelHandler, WatchCompleted]


async def test_a_retried_handler_sees_attempts_1_2_3_with_the_entrys_fields() -> None:
    """Each attempt's context: the same command id, correlation id and metadata, the attempt number and due time."""
    app = make_app(handlers=HANDLERS)
    options = ScheduleOptions(max_retries=3, correlation_id="order-7", metadata={"tenant": "acme"})
    command_id = await app.scheduler.schedule(Flaky(), options)
    await app.service.run_until_idle()
    app.clock.advance(timedelta(seconds=10))
    await app.service.run_until_idle()
    app.clock.advance(timedelta(seconds=20))
    await app.service.run_until_idle()

    assert [c.attempt if c else None for c in SEEN] == [1, 2, 3]
    assert {(c.command_id, c.correlation_id, c.queue) for c in SEEN if c} == {(command_id, "order-7", "default")}
    assert all(c is not None and c.metadata == {"tenant": "acme"} for c in SEEN)
    assert [c.scheduled_for if c else None for c in SEEN] == [
        START,
        START + timedelta(seconds=10),
        START + timedelta(seconds=30),
    ]
    assert all(c is not None and c.command_type.endswith("Flaky") for c in SEEN)
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None and (entry.status, entry.result_payload) == (ScheduledCommandStatus.COMPLETED, "3")
    attempts = await app.scheduler.get_attempts(command_id)
    assert [a.attempt for a in attempts] == [1, 2, 3]  # the audit trail numbers attempts the same way


async def test_context_is_read_only() -> None:
    """A snapshot: neither its fields nor its metadata can be changed by the handler."""
    app = make_app(handlers=HANDLERS)
    await app.scheduler.schedule(Injected(), ScheduleOptions(metadata={"k": "v"}))
    await app.service.run_until_idle()
    [context] = SEEN
    assert context is not None
    with pytest.raises(AttributeError):
        context.attempt = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        context.metadata["k"] = "w"  # type: ignore[index]


async def test_a_plain_def_handler_sees_it_in_its_thread() -> None:
    app = make_app(handlers=HANDLERS)
    command_id = await app.scheduler.schedule(InThread())
    await app.service.run_until_idle()
    [context] = SEEN
    assert context is not None and (context.command_id, context.attempt) == (command_id, 1)


async def test_it_is_injectable_into_the_handler() -> None:
    """A handler taking ``CommandContext`` in its constructor gets the context of the run it is built for."""
    app = make_app(handlers=HANDLERS)
    first = await app.scheduler.schedule(Injected())
    second = await app.scheduler.schedule(Injected())
    await app.service.run_until_idle()
    assert sorted(c.command_id for c in SEEN if c) == sorted([first, second])
    for command_id in (first, second):
        entry = await app.scheduler.get_status(command_id)
        assert entry is not None and entry.result_payload == f'"{command_id}"'


async def test_concurrent_attempts_each_see_their_own() -> None:
    GATE.clear()
    app = make_app(handlers=HANDLERS)
    names = [f"n{i}" for i in range(5)]
    for name in names:
        await app.scheduler.schedule(Parallel(name=name), ScheduleOptions(metadata={"name": name}))
    running = asyncio.create_task(app.service.run_until_idle())
    await asyncio.sleep(0)
    GATE.set()
    async with asyncio.timeout(5):
        assert await running == 5
    assert sorted(c.metadata["name"] for c in SEEN if c) == names


async def test_none_outside_a_scheduled_run() -> None:
    """None in the caller, in a direct ``mediator.send()`` and in lifecycle notification handlers; injecting it
    outside a scheduled run raises an error that says what to do instead."""
    app = make_app(handlers=HANDLERS)
    assert CommandContext.current() is None
    await app.mediator.send(InThread())
    assert SEEN == [None]

    with pytest.raises(NoCommandContextError, match=r"call CommandContext\.current\(\)"):
        await app.mediator.send(Injected())

    await app.scheduler.schedule(InThread())
    await app.service.run_until_idle()
    assert SEEN[-1] is not None
    assert NOTIFIED == [None]
    assert CommandContext.current() is None
