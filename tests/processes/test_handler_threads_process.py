"""The worker command gives plain ``def`` handlers one thread per concurrency slot (and Python's default number
besides, for the loop's own use).

Python's default pool has at most 32 threads (``min(32, cpus + 4)``: 6 on a 2-core machine). Forty commands whose
handlers can only finish together (a barrier of 40) complete only if the worker runs all forty in threads at once;
with Python's default pool the first ones would wait at the barrier until it broke, the rest waiting for a thread
while holding their slots and leases. Real process, real SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from injector import Injector
from thread_pool_app import Rendezvous, RendezvousHandler

from mediator import MediatorModule
from scheduling import CommandScheduler, ScheduledCommandStatus, ScheduleOptions, SchedulingModule
from scheduling._worker import handler_threads, python_default_threads
from stores import SqlStore

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
PARTIES = 40


def test_handler_threads_are_one_per_slot_and_pythons_default_besides() -> None:
    assert python_default_threads() == min(32, (getattr(os, "process_cpu_count", os.cpu_count)() or 1) + 4)
    assert handler_threads(1) == 1 + python_default_threads()
    assert handler_threads(200) == 200 + python_default_threads()


async def schedule(store_url: str) -> None:
    async with SqlStore(store_url) as store:
        scheduler = Injector([MediatorModule([RendezvousHandler]), SchedulingModule(store=store)]).get(CommandScheduler)
        await scheduler.schedule_many([Rendezvous(n=i) for i in range(PARTIES)], ScheduleOptions(max_retries=0))


async def wait_until_finished(store_url: str, timeout: float) -> dict[ScheduledCommandStatus, int]:
    """The counts once every entry completed, or once one failed (its barrier broke: no need to wait for more)."""
    deadline = time.monotonic() + timeout
    async with SqlStore(store_url) as store:
        while True:
            counts = await store.count_by_status()
            done = counts[ScheduledCommandStatus.COMPLETED] == PARTIES or counts[ScheduledCommandStatus.FAILED] > 0
            if done or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
def test_forty_def_handlers_run_at_once_in_a_worker_of_forty(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    asyncio.run(schedule(store_url))
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)]),
        "THREAD_POOL_PARTIES": str(PARTIES),
        "THREAD_POOL_WAIT_S": "20",
    }
    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "scheduling", "worker", "--app", "thread_pool_app:build_injector"),
                *("--store", store_url, "--concurrency", str(PARTIES), "--polling-interval", "0.05"),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            counts = asyncio.run(wait_until_finished(store_url, timeout=60))
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    assert counts[ScheduledCommandStatus.COMPLETED] == PARTIES, (counts, log.read_text()[-3000:])
