"""The worker registry with real worker processes: two workers show in ``list_workers()`` with their pid and
command types; SIGKILL one while it holds an entry, and after its lease duration it is shown gone and its entry
stuck, by the read model and by ``cqrs-scheduling status``, until a live worker's recovery takes the entry over.

Real processes (``cqrs-scheduling worker``), real signals, real SQLite files and PostgreSQL; short leases (3 s) so
every wait is a bounded poll of a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cli_support import cli
from test_multiworker import schedule_jobs, stop
from worker_app import Job

from scheduling import ScheduledCommandStatus, WorkerInfo
from scheduling.admin import EntryDetail, StoreOverview, entry_detail, overview
from scheduling.codec import command_type_name
from scheduling.workers import list_workers
from stores import SqlStore

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
LEASE_SECONDS = 3.0

T = TypeVar("T")


def start_worker(store_url: str, worker_id: str, out: Path) -> subprocess.Popen[str]:
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)]),
        "WORKER_APP_OUT": str(out),
        "WORKER_APP_GRACE": "1",
        "WORKER_APP_LEASE": str(LEASE_SECONDS),
    }
    command = [sys.executable, "-m", "scheduling", "worker", "--app", "worker_app:build_injector"]
    command += ["--store", store_url, "--worker-id", worker_id, "--log-format", "json"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def poll(read: Callable[[SqlStore], Awaitable[T]], done: Callable[[T], bool], url: str, timeout: float) -> T:
    """Read until ``done(value)``, every 0.1 s, for at most ``timeout`` seconds; the last value either way."""
    deadline = time.monotonic() + timeout
    async with SqlStore(url) as store:
        while True:
            value = await read(store)
            if done(value) or time.monotonic() > deadline:
                return value
            await asyncio.sleep(0.1)


async def workers_now(store: SqlStore) -> dict[str, WorkerInfo]:
    return {worker.worker_id: worker for worker in await list_workers(store, datetime.now(UTC))}


async def processing(store: SqlStore) -> list[tuple[str, str | None]]:
    entries = await store.list_entries(status=ScheduledCommandStatus.PROCESSING)
    return [(entry.id, entry.lease_owner) for entry in entries]


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_killed_worker_is_shown_gone_and_its_entry_stuck_until_recovered(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, new_postgres_database: Callable[[str, str], str]
) -> None:
    if backend == "postgresql":
        url = new_postgres_database(request.getfixturevalue("postgres_url"), "registry")
    else:
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    asyncio.run(SqlStore(url).migrate())  # the schema exists before two processes race to create it
    processes = {worker_id: start_worker(url, worker_id, tmp_path / f"{worker_id}.out") for worker_id in ("w-a", "w-b")}
    started: list[subprocess.Popen[str]] = list(processes.values())
    try:
        # Two workers running: each registered with its own pid and the command types it handles.
        fleet = run(poll(workers_now, lambda f: len(f) == 2, url, timeout=60))
        assert {w: (info.pid, info.state, info.command_types) for w, info in fleet.items()} == {
            w: (process.pid, "running", (command_type_name(Job),)) for w, process in processes.items()
        }

        # One of them takes a long entry.
        run(schedule_jobs(url, 1, seconds=600))
        ((entry_id, holder),) = run(poll(processing, lambda held: len(held) == 1, url, timeout=30))
        assert holder in processes
        survivor = next(w for w in processes if w != holder)

        # The other stops gracefully (it would otherwise recover the entry within a heartbeat); then the holder is
        # killed, holding the entry.
        (survivor_log,) = stop([processes[survivor]])
        assert processes[survivor].returncode == 0, survivor_log[-2000:]
        assert run(workers_now_in(url))[survivor].state == "gone"
        processes[holder].send_signal(signal.SIGKILL)
        processes[holder].communicate(timeout=30)  # reaps it and closes its pipe

        # After its lease duration the killed worker is gone, still holding its entry: the entry is stuck.
        fleet = run(poll(workers_now, lambda f: f[holder].state == "gone", url, timeout=LEASE_SECONDS + 30))
        assert (fleet[holder].state, fleet[holder].running) == ("gone", 1)
        # Gone is judged from its last heartbeat, the entry's lease from its last renewal (or the claim), which may
        # be a moment later: the entry is stuck once that lease has run out too.
        run(poll(read_stuck, lambda stuck: stuck == 1, url, timeout=LEASE_SECONDS + 30))
        report = run(read_overview(url))
        assert report.stuck == 1 and report.workers == {"running": 0, "stopping": 0, "gone": 2}
        detail = run(read_detail(url, entry_id))
        assert detail.stuck and detail.entry.lease_owner == holder
        status = cli("status", "--json", store=url)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["stuck"] == 1

        # A live worker's recovery takes it over: nothing is stuck, the lost attempt names the killed worker.
        rescuer = start_worker(url, "w-c", tmp_path / "w-c.out")
        started.append(rescuer)
        run(poll(read_stuck, lambda stuck: stuck == 0, url, timeout=60))
        detail = run(read_detail(url, entry_id))
        assert not detail.stuck
        assert [(a.outcome, a.worker_id) for a in detail.attempts] == [("lost", holder)]
        assert run(workers_now_in(url))["w-c"].state == "running"
    finally:
        stop([p for p in started if p.poll() is None])


async def workers_now_in(url: str) -> dict[str, WorkerInfo]:
    async with SqlStore(url) as store:
        return await workers_now(store)


async def read_overview(url: str) -> StoreOverview:
    async with SqlStore(url) as store:
        return await overview(store, datetime.now(UTC))


async def read_detail(url: str, entry_id: str) -> EntryDetail:
    async with SqlStore(url) as store:
        detail = await entry_detail(store, entry_id, datetime.now(UTC))
        assert detail is not None
        return detail


async def read_stuck(store: SqlStore) -> int:
    return (await overview(store, datetime.now(UTC))).stuck
