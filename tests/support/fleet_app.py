"""An application for fleet process tests: commands that record when each run starts and ends.

Started with ``cqrs-scheduling worker --app fleet_app:build_injector`` (or ``fleet_app:build_old_injector``: the
same application before ``NewJob`` was added, as in a rolling deploy). ``FLEET_APP_OUT`` names the file this
process appends ``start|end <type> <n> <monotonic ns>`` lines to (the monotonic clock is the machine's, so lines
of several processes compare).
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from typing import ClassVar, TextIO

from injector import Injector

from mediator import Command, CommandHandler, MediatorModule
from scheduling import SchedulerSettings, SchedulingModule
from stores import MemoryStore


class OldJob(Command[None]):
    n: int
    seconds: float = 0.0


class NewJob(Command[None]):
    """A type the old application has no handler for."""

    n: int
    seconds: float = 0.0


class ReportJob(Command[None]):
    """A command class naming its default queue."""

    default_queue: ClassVar[str] = "reports"

    n: int
    seconds: float = 0.0


_out: TextIO | None = None


def _record(event: str, command: OldJob | NewJob | ReportJob) -> None:
    global _out
    if _out is None:
        _out = open(os.environ["FLEET_APP_OUT"], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - process-long
    _out.write(f"{event} {type(command).__name__} {command.n} {time.monotonic_ns()}\n")


async def _run(command: OldJob | NewJob | ReportJob) -> None:
    _record("start", command)
    if command.seconds:
        await asyncio.sleep(command.seconds)
    _record("end", command)


class OldJobHandler(CommandHandler[OldJob, None]):
    async def handle(self, command: OldJob) -> None:
        await _run(command)


class NewJobHandler(CommandHandler[NewJob, None]):
    async def handle(self, command: NewJob) -> None:
        await _run(command)


class ReportJobHandler(CommandHandler[ReportJob, None]):
    async def handle(self, command: ReportJob) -> None:
        await _run(command)


def _injector(*handlers: type) -> Injector:
    return Injector(
        [
            MediatorModule(handlers=list(handlers)),
            SchedulingModule(
                store=MemoryStore(),
                settings=SchedulerSettings(polling_interval=timedelta(seconds=1), shutdown_grace=timedelta(seconds=5)),
            ),
        ]
    )


def build_injector() -> Injector:
    """The new application: every handler."""
    return _injector(OldJobHandler, NewJobHandler, ReportJobHandler)


def build_old_injector() -> Injector:
    """The application before ``NewJob`` was added."""
    return _injector(OldJobHandler, ReportJobHandler)
