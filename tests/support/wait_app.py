"""An application for the ``wait()`` tests across processes: ``Square`` returns an ``int``, a negative one fails.

The test process schedules and waits; a worker process started with ``cqrs-scheduling worker --app
wait_app:build_injector --store URL`` runs the commands (the worker replaces the store with its ``--store``).
"""

from __future__ import annotations

from injector import Injector

from mediator import Command, CommandHandler, MediatorModule
from scheduling import SchedulerSettings, SchedulingModule
from stores import MemoryStore, ScheduledCommandStore


class Square(Command[int]):
    """``n * n``; a negative ``n`` raises ``ValueError`` naming it."""

    n: int


class SquareHandler(CommandHandler[Square, int]):
    async def handle(self, command: Square) -> int:
        if command.n < 0:
            raise ValueError(f"cannot square {command.n} here")
        return command.n * command.n


def build_injector(store: ScheduledCommandStore | None = None, settings: SchedulerSettings | None = None) -> Injector:
    """The factory named by ``--app``; the test calls it with its own store and settings."""
    return Injector(
        [
            MediatorModule(handlers=[SquareHandler]),
            SchedulingModule(store=store or MemoryStore(), settings=settings or SchedulerSettings()),
        ]
    )
