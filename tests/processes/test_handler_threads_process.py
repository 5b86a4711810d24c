"""The worker command gives plain ``def`` handlers one thread per concurrency slot.

Python's default pool has at most 32 threads (``min(32, cpus + 4)``: 6 on a 2-core machine). Forty commands whose
handlers can only finish together (a barrier of 40) complete only if the worker runs all forty in threads at once;
with Python's default pool each would wait for a thread while holding its slot and lease, and the barrier would
break. Real process, real SQLite file.
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
from scheduling import CommandScheduler, ScheduledCommandStatus, SchedulingModule
from scheduling._worker import handler_threads
from stores import SqlStore

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
PARTIES = 40


def test_handler_threads_are_one_per_slot_and_never_fewer_than_pythons() -> None:
    python_default = min(32, (os.cpu_count() or 1) + 4)
    assert handler_threads(1) == python_default
    assert handler_threads(python_default) == python_default
    assert handler_threads(200) == 200


async def schedule(store_url: str) -> None:
    async with SqlStore(store_url) as store:
        scheduler = Injector([MediatorModule([RendezvousHandler]), SchedulingModule(store=store)]).get(CommandScheduler)
        await scheduler.schedule_many([Rendezvous(n=i) for i in range(PARTIES)])


async def wait_until_finished(store_url: str, timeout: float) -> dict[ScheduledCommandStatus, int]:
    deadline = time.monotonic() + timeout
    async with SqlStore(store_url) as store:
        while True:
            counts = await store.count_by_status()
            finished = counts[ScheduledCommandStatus.COMPLETED] + counts[ScheduledCommandStatus.FAILED]
            if finished == PARTIES or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
def test_forty_def_handlers_run_at_once_in_a_worker_of_forty(tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    asyncio.run(schedule(store_url))
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)]),
        "THREAD_POOL_PARTIES": str(PARTIES),
        "THREAD_POOL_WAIT_S": "30",
    }
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "scheduling", "worker", "--app", "thread_pool_app:build_injector"),
            *("--store", store_url, "--concurrency", str(PARTIES), "--polling-interval", "0.05"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        counts = asyncio.run(wait_until_finished(store_url, timeout=90))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
    assert counts[ScheduledCommandStatus.COMPLETED] == PARTIES, (counts, stderr[-3000:])
