"""``wait()`` in one process, woken by a worker process finishing the entry, on every store processes share.

The waiting process sets the safety-net re-read to 60 s: every ``wait()`` here returns within a second of the
entry's ``completed_at`` (stamped by the worker), so it was woken by the store's notification (PostgreSQL NOTIFY,
the SQLite commit watcher, Redis pub/sub), not by a re-read.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from reliability_support import Fleet
from wait_app import Square, build_injector

from scheduling import CommandScheduler, ScheduleOptions, SchedulerSettings
from scheduling.errors import CommandFailedError
from stores.urls import store_from_url

SAFETY_NET = timedelta(seconds=60)


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wait.db'}"
    if request.param == "postgresql":
        url: str = request.getfixturevalue("module_postgres_url")
        return url
    return f"{request.getfixturevalue('redis_url')}?prefix={request.getfixturevalue('redis_prefix')}"


async def _wait_for_results(store_url: str) -> list[float]:
    """Schedule squares and a failing one, wait for each; return how long after its completion each wait returned."""
    async with store_from_url(store_url) as store:
        injector = build_injector(store, SchedulerSettings(wait_recheck_interval=SAFETY_NET))
        scheduler = injector.get(CommandScheduler)
        latencies: list[float] = []
        for n in range(1, 6):
            command_id = await scheduler.schedule(Square(n=n))
            assert await scheduler.wait(command_id, timeout=30) == n * n
            returned = datetime.now(UTC)
            entry = await scheduler.get_status(command_id)
            assert entry is not None and entry.completed_at is not None
            latencies.append((returned - entry.completed_at).total_seconds())
        failing = await scheduler.schedule(Square(n=-3), ScheduleOptions(max_retries=0))
        with pytest.raises(CommandFailedError, match="ValueError: cannot square -3 here") as raised:
            await scheduler.wait(failing, timeout=30)
        assert raised.value.command_id == failing
        return latencies


@pytest.mark.timeout(180)
def test_wait_is_woken_by_another_process_finishing_the_entry(store_url: str, tmp_path: Path) -> None:
    fleet = Fleet(store_url, tmp_path, app="wait_app:build_injector", concurrency=4)
    worker = fleet.start()
    try:
        deadline = time.monotonic() + 60
        while '"action": "start"' not in worker.log_text():
            assert time.monotonic() < deadline and worker.process.poll() is None, worker.log_text()[-3000:]
            time.sleep(0.05)
        latencies = asyncio.run(_wait_for_results(store_url))
    finally:
        fleet.stop()
    assert max(latencies) < 1.0, (latencies, worker.log_text()[-3000:])
