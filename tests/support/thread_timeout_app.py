"""An application for the worker-process test of timeouts in plain ``def`` handlers.

``SlowSync`` runs in a thread for ``seconds``; each run writes ``start`` and ``end`` lines to the file named by
``THREAD_APP_OUT``, and ``overlap`` if another run of a command was still in its thread when it started (a marker
file created exclusively, next to the output). Retries wait ``THREAD_APP_RETRY_DELAY`` seconds.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from injector import Injector

from mediator import Command, CommandHandler, MediatorModule
from scheduling import SchedulerSettings, SchedulingModule
from stores import MemoryStore


class SlowSync(Command[None]):
    seconds: float


def _write(line: str) -> None:
    with open(os.environ["THREAD_APP_OUT"], "a", encoding="utf-8") as out:
        out.write(line + "\n")


class SlowSyncHandler(CommandHandler[SlowSync, None]):
    def handle(self, command: SlowSync) -> None:  # a plain def: runs in a thread
        marker = Path(os.environ["THREAD_APP_OUT"] + ".running")
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            owned = True
        except FileExistsError:
            owned = False
            _write("overlap")
        _write("start")
        try:
            time.sleep(command.seconds)
        finally:
            _write("end")
            if owned:
                marker.unlink()


def build_injector() -> Injector:
    """The factory named by ``--app``; the worker command replaces the store with its ``--store``."""
    delay = timedelta(seconds=float(os.environ.get("THREAD_APP_RETRY_DELAY", "0.1")))
    return Injector(
        [
            MediatorModule(handlers=[SlowSyncHandler]),
            SchedulingModule(
                store=MemoryStore(),
                settings=SchedulerSettings(retry_delay_base=delay, exponential_backoff=False),
            ),
        ]
    )
