"""An application for the worker-process test of the thread pool given to plain ``def`` handlers.

``Rendezvous`` runs in a thread and waits at a barrier for ``THREAD_POOL_PARTIES`` runs at once (up to
``THREAD_POOL_WAIT_S`` seconds, then it fails): it completes only if every one of them has a thread at the same
time.
"""

from __future__ import annotations

import os
import threading

from injector import Injector

from mediator import Command, CommandHandler, MediatorModule
from scheduling import SchedulingModule
from stores import MemoryStore

_BARRIER = threading.Barrier(
    int(os.environ.get("THREAD_POOL_PARTIES", "1")), timeout=float(os.environ.get("THREAD_POOL_WAIT_S", "30"))
)


class Rendezvous(Command[None]):
    n: int


class RendezvousHandler(CommandHandler[Rendezvous, None]):
    def handle(self, command: Rendezvous) -> None:  # a plain def: runs in a thread
        _BARRIER.wait()  # threading.BrokenBarrierError when the others never came


def build_injector() -> Injector:
    """The factory named by ``--app``; the worker command replaces the store with its ``--store``."""
    return Injector(
        [
            MediatorModule(handlers=[RendezvousHandler]),
            SchedulingModule(store=MemoryStore()),
        ]
    )
