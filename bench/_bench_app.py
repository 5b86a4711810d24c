"""The application that worker processes of ``bench/scheduler_sql.py`` run.

Started as ``python -m scheduling worker --app _bench_app:build_injector --store URL`` with ``bench/`` and the
repository root on ``PYTHONPATH``, and the environment variable ``BENCH_APP_OUT`` naming a file of this process's own
(several processes never share one). Handlers append one line per command to it, buffered (no system call per
command) and flushed when the process exits; the benchmark stops its workers with SIGTERM, which stops them
gracefully, before it reads the files:

- ``Noop``: ``n start end`` with ``time.time()`` when the handler started and returned.
- ``Timed``: ``n due start``: the due time it was scheduled for and when its handler started (POSIX seconds).
- ``ScheduleTimed``: schedules ``count`` ``Timed`` commands from inside the worker process (one at a time, in
  random due order), so wake-ups stay in the process; writes ``s n scheduled`` when ``schedule()`` of ``n``
  returned.
"""

from __future__ import annotations

import atexit
import os
import random
import time
from datetime import UTC, datetime, timedelta
from typing import TextIO

from injector import Injector, inject

from mediator import Command, CommandHandler, MediatorModule
from scheduling import CommandScheduler, ScheduleOptions, SchedulerSettings, SchedulingModule
from stores import MemoryStore

__all__ = ["Noop", "ScheduleTimed", "Timed", "build_injector", "due_plan"]

OUT_ENV = "BENCH_APP_OUT"
GRACE_ENV = "BENCH_APP_GRACE"


class Noop(Command[None]):
    """Does nothing but note when it ran."""

    n: int = 0


class Timed(Command[None]):
    """Notes when its handler started, against ``due`` (POSIX seconds it was scheduled for)."""

    n: int
    due: float


class ScheduleTimed(Command[None]):
    """Schedules ``count`` ``Timed`` commands, due over ``spread_s`` starting ``lead_s`` after this handler starts."""

    count: int
    spread_s: float
    lead_s: float
    seed: int


_out: TextIO | None = None


def _output() -> TextIO:
    global _out
    if _out is None:
        _out = open(os.environ[OUT_ENV], "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        atexit.register(_out.close)
    return _out


class NoopHandler(CommandHandler[Noop, None]):
    async def handle(self, command: Noop) -> None:
        started = time.time()
        _output().write(f"{command.n} {started:.6f} {time.time():.6f}\n")


class TimedHandler(CommandHandler[Timed, None]):
    async def handle(self, command: Timed) -> None:
        started = time.time()
        _output().write(f"{command.n} {command.due:.6f} {started:.6f}\n")


def due_plan(count: int, spread_s: float, seed: int) -> list[float]:
    """Offsets (seconds) of ``count`` due times, uniform over ``spread_s``, in random (scheduling) order."""
    rng = random.Random(seed)
    return [rng.uniform(0, spread_s) for _ in range(count)]


class ScheduleTimedHandler(CommandHandler[ScheduleTimed, None]):
    @inject
    def __init__(self, scheduler: CommandScheduler) -> None:
        self._scheduler = scheduler

    async def handle(self, command: ScheduleTimed) -> None:
        base = datetime.now(UTC) + timedelta(seconds=command.lead_s)
        for n, offset in enumerate(due_plan(command.count, command.spread_s, command.seed)):
            due = base + timedelta(seconds=offset)
            await self._scheduler.schedule(Timed(n=n, due=due.timestamp()), ScheduleOptions(scheduled_for=due))
            _output().write(f"s {n} {time.time():.6f}\n")


def build_injector() -> Injector:
    """The factory named by ``--app``; the worker command replaces the store with its ``--store``."""
    return Injector(
        [
            MediatorModule(handlers=[NoopHandler, TimedHandler, ScheduleTimedHandler]),
            SchedulingModule(
                store=MemoryStore(),
                settings=SchedulerSettings(shutdown_grace=timedelta(seconds=float(os.environ.get(GRACE_ENV, "5")))),
            ),
        ]
    )
