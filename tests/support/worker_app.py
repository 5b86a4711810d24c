"""An application for worker-process tests: ``Job`` commands that record each execution in a file.

Worker processes are started with ``cqrs-scheduling worker --app worker_app:build_injector`` and the environment
variable ``WORKER_APP_OUT`` naming the file this process appends executed job numbers to (one per line, flushed,
so a killed process loses nothing it reported). ``WORKER_APP_GRACE`` and ``WORKER_APP_LEASE`` (seconds) set the
shutdown grace and the lease duration.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from typing import TextIO

from injector import Injector

from mediator import Command, CommandHandler, MediatorModule
from scheduling import SchedulerSettings, SchedulingModule
from stores import MemoryStore


class Job(Command[None]):
    """A unit of work; ``seconds`` simulates its duration."""

    n: int
    seconds: float = 0.0


_out: TextIO | None = None


def _output() -> TextIO:
    global _out
    if _out is None:
        _out = open(os.environ["WORKER_APP_OUT"], "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    return _out


class JobHandler(CommandHandler[Job, None]):
    async def handle(self, command: Job) -> None:
        if command.seconds:
            await asyncio.sleep(command.seconds)
        _output().write(f"{command.n}\n")


def not_an_injector() -> str:
    """A factory that returns the wrong thing, for the CLI's error tests."""
    return "not an injector"


def build_injector() -> Injector:
    """The factory named by ``--app``; the worker command replaces the store with its ``--store``."""
    return Injector(
        [
            MediatorModule(handlers=[JobHandler]),
            SchedulingModule(
                store=MemoryStore(),
                settings=SchedulerSettings(
                    shutdown_grace=timedelta(seconds=float(os.environ.get("WORKER_APP_GRACE", "5"))),
                    lease_duration=timedelta(seconds=float(os.environ.get("WORKER_APP_LEASE", "60"))),
                ),
            ),
        ]
    )
