"""An application for the worker-process tests of ``cancel(id, running=True)``.

``SleepLong`` sleeps in an ``async def`` handler for a minute; ``WaitSync`` waits in a plain ``def`` handler (a
thread) until its ``CommandContext`` says it is cancelled, for at most a minute. Both would retry when they fail.
"""

from __future__ import annotations

import asyncio

from injector import Injector

from mediator import Command, CommandHandler, MediatorModule
from scheduling import CommandContext, SchedulingModule
from stores import MemoryStore


class SleepLong(Command[None]):
    pass


class SleepLongHandler(CommandHandler[SleepLong, None]):
    async def handle(self, command: SleepLong) -> None:
        await asyncio.sleep(60)


class WaitSync(Command[str]):
    pass


class WaitSyncHandler(CommandHandler[WaitSync, str]):
    def handle(self, command: WaitSync) -> str:  # a plain def: runs in a thread, cannot be interrupted
        context = CommandContext.current()
        assert context is not None
        return "told" if context.wait_for_cancel(60) else "never told"


HANDLERS: list[type] = [SleepLongHandler, WaitSyncHandler]


def build_injector() -> Injector:
    """The factory named by ``--app``; the worker command replaces the store with its ``--store``."""
    return Injector([MediatorModule(handlers=HANDLERS), SchedulingModule(store=MemoryStore())])
