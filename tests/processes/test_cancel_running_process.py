"""``cancel(id, running=True)`` from this process, against a worker process holding the entry (SQLite file,
PostgreSQL database, Redis prefix): the worker hears the request through its store's wake-up path, stops an
``async def`` handler sleeping for a minute, or tells a plain ``def`` handler waiting on its context, within a
second; the attempt is recorded as cancelled and the entry ends CANCELLED, not retried.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cancel_app import HANDLERS, SleepLong, WaitSync
from injector import Injector

from mediator import Command, MediatorModule
from scheduling import CommandScheduler, ScheduledCommandStatus, ScheduleOptions, SchedulingModule
from stores import ScheduledCommandStore
from stores.urls import store_from_url

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"


async def _until(store: ScheduledCommandStore, command_id: str, status: ScheduledCommandStatus, timeout: float) -> bool:
    """Bounded polling: whether the entry reached ``status`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = await store.get(command_id)
        if entry is not None and entry.status is status:
            return True
        await asyncio.sleep(0.02)
    return False


async def _cancel_while_running(store_url: str, command: Command[object]) -> tuple[float, list[str], int]:
    """Schedule ``command``, wait until the worker runs it, cancel it: the seconds until it was CANCELLED, its
    attempts' outcomes and its retry count."""
    async with store_from_url(store_url) as store:
        scheduler = Injector([MediatorModule(HANDLERS), SchedulingModule(store=store)]).get(CommandScheduler)
        command_id = await scheduler.schedule(command, ScheduleOptions(max_retries=3))
        assert await _until(store, command_id, ScheduledCommandStatus.PROCESSING, 60), "the worker never claimed it"
        await asyncio.sleep(0.2)  # the handler is running
        started = time.monotonic()
        assert await scheduler.cancel(command_id, running=True)
        assert await _until(store, command_id, ScheduledCommandStatus.CANCELLED, 30), "never cancelled"
        elapsed = time.monotonic() - started
        entry = await store.get(command_id)
        assert entry is not None
        return elapsed, [a.outcome for a in await store.get_attempts(command_id)], entry.retry_count


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "redis"])
@pytest.mark.parametrize("handler", ["async", "def"])
def test_cancel_running_stops_the_handler_in_the_worker_process_within_a_second(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    new_postgres_database: Callable[[str, str], str],
    backend: str,
    handler: str,
) -> None:
    if backend == "sqlite":
        store_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    elif backend == "redis":
        store_url = f"{request.getfixturevalue('redis_url')}?prefix={request.getfixturevalue('redis_prefix')}"
    else:
        store_url = new_postgres_database(request.getfixturevalue("postgres_url"), "cancel")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)])}
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "scheduling", "worker", "--app", "cancel_app:build_injector"),
            *("--store", store_url, "--polling-interval", "0.05"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        command = SleepLong() if handler == "async" else WaitSync()
        elapsed, outcomes, retry_count = asyncio.run(_cancel_while_running(store_url, command))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
    assert outcomes == ["cancelled"], stderr[-3000:]
    assert retry_count == 0
    assert elapsed < 1.0, f"cancelled after {elapsed:.3f}s"
    assert worker.returncode == 0, stderr[-3000:]
