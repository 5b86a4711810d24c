"""A worker process running a plain ``def`` handler (400 ms) past its timeout (50 ms): never two threads at once.

Without the entry being held until the thread returns, each retry (due 100 ms after a timeout) would start beside
the thread still running, three at once at worst. Real process, real SQLite file.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from injector import Injector
from thread_timeout_app import SlowSync, SlowSyncHandler

from mediator import MediatorModule
from scheduling import CommandScheduler, ScheduledCommandStatus, ScheduleOptions, SchedulingModule
from stores import SqlStore

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"


async def schedule(store_url: str) -> str:
    async with SqlStore(store_url) as store:
        scheduler = Injector([MediatorModule([SlowSyncHandler]), SchedulingModule(store=store)]).get(CommandScheduler)
        options = ScheduleOptions(timeout=timedelta(milliseconds=50), max_retries=2)
        return await scheduler.schedule(SlowSync(seconds=0.4), options)


async def wait_until_failed(store_url: str, command_id: str, timeout: float) -> list[str]:
    """The outcomes of the entry's attempts once it is dead-lettered (or when ``timeout`` runs out)."""
    deadline = time.monotonic() + timeout
    async with SqlStore(store_url) as store:
        while True:
            entry = await store.get(command_id)
            if (entry is not None and entry.status is ScheduledCommandStatus.FAILED) or time.monotonic() > deadline:
                return [a.outcome for a in await store.get_attempts(command_id)]
            await asyncio.sleep(0.05)


@pytest.mark.timeout(90)
def test_def_handler_past_its_timeout_never_runs_twice_at_once(tmp_path: Path) -> None:
    """Three attempts, each timed out, each recorded after its thread returned: the runs never overlap."""
    store_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    out = tmp_path / "runs.out"
    command_id = asyncio.run(schedule(store_url))
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)]),
        "THREAD_APP_OUT": str(out),
        "THREAD_APP_RETRY_DELAY": "0.1",
    }
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "scheduling", "worker", "--app", "thread_timeout_app:build_injector"),
            *("--store", store_url, "--concurrency", "10", "--polling-interval", "0.05"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        outcomes = asyncio.run(wait_until_failed(store_url, command_id, timeout=60))
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
    assert outcomes == ["timed_out"] * 3, stderr[-3000:]
    lines = out.read_text().split()
    assert "overlap" not in lines, lines
    assert lines == ["start", "end"] * 3, lines
    assert worker.returncode == 0, stderr[-3000:]
