"""A small application for scheduler and service tests: commands, handlers, a ManualClock and a MemoryStore."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from injector import Binder, Injector, inject

from mediator import Command, CommandHandler, Mediator, MediatorModule, NotificationHandler
from scheduling import (
    CommandScheduler,
    ManualClock,
    ScheduledCommandEntry,
    ScheduledCommandNotification,
    ScheduledCommandService,
    SchedulerSettings,
    SchedulingModule,
)
from scheduling.observer import SchedulingObserver
from stores import MemoryStore, ScheduledCommandStore

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Record(Command[None]):
    """Appends its value to the handler log."""

    value: str


class Add(Command[int]):
    a: int
    b: int


class Fail(Command[None]):
    """Fails the first ``times`` attempts (counted per key), then succeeds."""

    key: str
    times: int = 1_000


class Sleep(Command[None]):
    seconds: float


class Unhandled(Command[None]):
    pass


class Block(Command[None]):
    """Waits until the test opens the log's gate."""

    key: str


class Explode(Command[object]):
    """Misbehaves in the way ``how`` names."""

    how: str


class Log:
    """What the handlers did, shared by the test through the injector."""

    def __init__(self) -> None:
        self.records: list[str] = []
        self.failures: dict[str, int] = {}
        self.notifications: list[ScheduledCommandNotification] = []
        self.gate = asyncio.Event()
        self.started: list[str] = []
        self.active = 0
        self.max_active = 0


class RecordHandler(CommandHandler[Record, None]):
    @inject
    def __init__(self, log: Log) -> None:
        self.log = log

    async def handle(self, command: Record) -> None:
        self.log.records.append(command.value)


class AddHandler(CommandHandler[Add, int]):
    async def handle(self, command: Add) -> int:
        return command.a + command.b


class FailHandler(CommandHandler[Fail, None]):
    @inject
    def __init__(self, log: Log) -> None:
        self.log = log

    async def handle(self, command: Fail) -> None:
        seen = self.log.failures[command.key] = self.log.failures.get(command.key, 0) + 1
        if seen <= command.times:
            raise ValueError(f"failure {seen} of {command.key}")


class SleepHandler(CommandHandler[Sleep, None]):
    async def handle(self, command: Sleep) -> None:
        await asyncio.sleep(command.seconds)


class BlockHandler(CommandHandler[Block, None]):
    @inject
    def __init__(self, log: Log) -> None:
        self.log = log

    async def handle(self, command: Block) -> None:
        log = self.log
        log.started.append(command.key)
        log.active += 1
        log.max_active = max(log.max_active, log.active)
        try:
            await log.gate.wait()
        finally:
            log.active -= 1


class ExplodeHandler(CommandHandler[Explode, object]):
    async def handle(self, command: Explode) -> object:
        if command.how == "system_exit":
            raise SystemExit(3)
        if command.how == "keyboard_interrupt":
            raise KeyboardInterrupt
        if command.how == "cancel":
            raise asyncio.CancelledError
        if command.how == "unserializable":
            return object()
        raise RuntimeError(command.how)


class CollectNotifications(NotificationHandler[ScheduledCommandNotification]):
    @inject
    def __init__(self, log: Log) -> None:
        self.log = log

    async def handle(self, notification: ScheduledCommandNotification) -> None:
        self.log.notifications.append(notification)


HANDLERS = [
    RecordHandler,
    AddHandler,
    FailHandler,
    SleepHandler,
    BlockHandler,
    ExplodeHandler,
    CollectNotifications,
]


@dataclass
class App:
    """One application under test."""

    injector: Injector
    clock: ManualClock
    store: ScheduledCommandStore
    log: Log
    settings: SchedulerSettings
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scheduler(self) -> CommandScheduler:
        return self.injector.get(CommandScheduler)

    @property
    def service(self) -> ScheduledCommandService:
        return self.injector.get(ScheduledCommandService)

    @property
    def mediator(self) -> Mediator:
        return self.injector.get(Mediator)

    def notifications(self, kind: type[ScheduledCommandNotification]) -> list[Any]:
        return [n for n in self.log.notifications if isinstance(n, kind)]


def make_app(
    store: ScheduledCommandStore | None = None,
    clock: ManualClock | None = None,
    handlers: list[type] | None = None,
    observers: Sequence[SchedulingObserver] = (),
    **settings: Any,
) -> App:
    log = Log()
    clock = clock or ManualClock(START)
    store = store if store is not None else MemoryStore()
    defaults: dict[str, Any] = {"shutdown_grace": timedelta(seconds=1), "worker_id": "worker-1"}
    resolved = SchedulerSettings(**(defaults | settings))
    injector = Injector(
        [
            MediatorModule(handlers=handlers or HANDLERS),
            SchedulingModule(store=store, settings=resolved, clock=clock, observers=observers),
            lambda binder: _bind_log(binder, log),
        ]
    )
    return App(injector, clock, store, log, resolved)


def _bind_log(binder: Binder, log: Log) -> None:
    binder.bind(Log, to=log)


async def status(app: App, command_id: str) -> ScheduledCommandEntry:
    """The entry as the store holds it now (it must exist)."""
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None
    return entry


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait (in real time, bounded) until ``await predicate()`` is true; for background-service tests only."""
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.005)
