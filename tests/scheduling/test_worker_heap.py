"""The worker command freezes its start-up heap before it serves (``settle_heap``): full collections no longer walk
the modules and the application built before serving, and what the handlers make afterwards is collected as
before."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import weakref
from collections.abc import Iterator

import pytest
from injector import Injector

from mediator import Command, CommandHandler, MediatorModule
from scheduling import CommandScheduler, ScheduledCommandStatus, SchedulingModule
from scheduling._worker import run_worker, settle_heap
from scheduling.codec import command_type_name
from stores import MemoryStore


class Cyclic:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


class MakeGarbage(Command[None]):
    pass


class Seen:
    frozen_while_serving: int | None = None
    garbage: weakref.ref[Cyclic] | None = None
    ran: asyncio.Event | None = None


class MakeGarbageHandler(CommandHandler[MakeGarbage, None]):
    async def handle(self, command: MakeGarbage) -> None:
        Seen.frozen_while_serving = gc.get_freeze_count()
        garbage = Cyclic()
        Seen.garbage = weakref.ref(garbage)
        del garbage
        assert Seen.ran is not None
        Seen.ran.set()


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Leave the test process's collector as it was."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


def test_settle_heap_freezes_what_exists_and_still_collects_what_comes_after(unfrozen: None) -> None:
    before = Cyclic()
    settle_heap()
    assert gc.get_freeze_count() > 0
    after = weakref.ref(Cyclic())  # garbage at once, in a cycle
    assert after() is not None
    gc.collect()
    assert after() is None
    assert before.me is before


async def test_the_worker_serves_on_a_frozen_heap_and_collects_its_handlers_garbage(unfrozen: None) -> None:
    store = MemoryStore()
    injector = Injector([MediatorModule(handlers=[MakeGarbageHandler]), SchedulingModule(store=store)])
    entry_id = await injector.get(CommandScheduler).schedule(MakeGarbage())
    Seen.ran = asyncio.Event()
    assert gc.get_freeze_count() == 0
    worker = asyncio.create_task(run_worker(injector))
    await asyncio.wait_for(Seen.ran.wait(), timeout=30)
    os.kill(os.getpid(), signal.SIGTERM)  # the worker's own handler: a graceful stop
    await asyncio.wait_for(worker, timeout=30)
    assert Seen.frozen_while_serving is not None and Seen.frozen_while_serving > 0
    gc.collect()
    assert Seen.garbage is not None and Seen.garbage() is None
    entry = await store.get(entry_id)
    assert entry is not None and entry.status is ScheduledCommandStatus.COMPLETED
    assert entry.command_type == command_type_name(MakeGarbage)
