"""The worker application of the workflow process tests (``ScheduleOptions.after``, groups).

``Step(n)`` returns ``n`` plus the sum of its parents' results, read through the scheduler (a chain passes results
along); ``Square(i)`` returns ``i * i`` after ``delay`` seconds; ``Total`` (a group's callback) returns the sum of
its members' results and how many completed; ``Boom`` always fails. Settings recover a killed worker's entries fast.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

from injector import Injector, inject

from mediator import Command, CommandHandler, MediatorModule, NotificationHandler
from scheduling import CommandContext, CommandScheduler, ScheduledCommandCancelled, SchedulerSettings, SchedulingModule
from stores import MemoryStore


class Step(Command[int]):
    n: int
    delay: float = 0.0


class Square(Command[int]):
    i: int
    delay: float = 0.0


class Total(Command[list[int]]):
    """``[sum of the completed members' results, how many completed, how many members]``."""


class Boom(Command[None]):
    pass


class StepHandler(CommandHandler[Step, int]):
    @inject
    def __init__(self, scheduler: CommandScheduler) -> None:
        self.scheduler = scheduler

    async def handle(self, command: Step) -> int:
        await asyncio.sleep(command.delay)
        context = CommandContext.current()
        assert context is not None
        parents = await self.scheduler.parent_outcomes(context.command_id)
        return command.n + sum(parent.result_as(int) for parent in parents)


class SquareHandler(CommandHandler[Square, int]):
    async def handle(self, command: Square) -> int:
        await asyncio.sleep(command.delay)
        return command.i * command.i


class TotalHandler(CommandHandler[Total, list[int]]):
    @inject
    def __init__(self, scheduler: CommandScheduler) -> None:
        self.scheduler = scheduler

    async def handle(self, command: Total) -> list[int]:
        context = CommandContext.current()
        assert context is not None
        outcomes = await self.scheduler.parent_outcomes(context.command_id)
        completed = [outcome.result_as(int) for outcome in outcomes if outcome.completed]
        return [sum(completed), len(completed), len(outcomes)]


class BoomHandler(CommandHandler[Boom, None]):
    async def handle(self, command: Boom) -> None:
        raise RuntimeError("boom")


class CancelledLog(NotificationHandler[ScheduledCommandCancelled]):
    """Appends each ``ScheduledCommandCancelled`` heard, as a JSON line (id, reason, pid), to the file named by
    ``$WORKFLOW_APP_CANCELLED_LOG`` (nothing without it)."""

    async def handle(self, notification: ScheduledCommandCancelled) -> None:
        path = os.environ.get(CANCELLED_LOG_ENV)
        if path:
            heard = {"id": notification.command_id, "reason": notification.reason, "pid": os.getpid()}
            await asyncio.to_thread(_append, Path(path), json.dumps(heard) + "\n")


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write(line)


CANCELLED_LOG_ENV = "WORKFLOW_APP_CANCELLED_LOG"

HANDLERS: list[type] = [StepHandler, SquareHandler, TotalHandler, BoomHandler, CancelledLog]

SETTINGS = SchedulerSettings(
    lease_duration=timedelta(seconds=1.5),
    shutdown_grace=timedelta(seconds=0.5),
    retry_delay_base=timedelta(seconds=0.1),
    exponential_backoff=False,
    max_retries=20,
    polling_interval=timedelta(seconds=0.2),
)


def build_injector() -> Injector:
    """The factory named by ``--app``; the worker command replaces the memory store with its ``--store``."""
    return Injector([MediatorModule(handlers=HANDLERS), SchedulingModule(store=MemoryStore(), settings=SETTINGS)])
