"""Many worker processes on one store: every command runs exactly once, none is lost; restarts lose nothing.

Real processes (``cqrs-scheduling worker``), real signals, real SQLite files and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from worker_app import Job

from mediator import MediatorModule
from scheduling import CommandScheduler, ScheduledCommandStatus, SchedulingModule
from stores import SqlStore

# Fleets of worker processes under load, timed by their own clocks: the Makefile's --dist loadgroup runs the tests of
# this group one after another, so two fleets never share the two cores (a starved fleet misses its rates and leases).
pytestmark = pytest.mark.xdist_group("worker-fleets")

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"


def start_worker(store_url: str, out: Path, *, concurrency: int = 10, grace: float = 5.0) -> subprocess.Popen[str]:
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)]),
        "WORKER_APP_OUT": str(out),
        "WORKER_APP_GRACE": str(grace),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scheduling",
            "worker",
            "--app",
            "worker_app:build_injector",
            "--store",
            store_url,
            "--concurrency",
            str(concurrency),
            "--log-format",
            "json",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


async def schedule_jobs(store_url: str, count: int, seconds: float = 0.0) -> None:
    from injector import Injector
    from worker_app import JobHandler

    async with SqlStore(store_url) as store:
        scheduler = Injector([MediatorModule([JobHandler]), SchedulingModule(store=store)]).get(CommandScheduler)
        for start in range(0, count, 1000):
            await scheduler.schedule_many([Job(n=n, seconds=seconds) for n in range(start, min(start + 1000, count))])


async def wait_until_completed(store_url: str, count: int, timeout: float) -> dict[ScheduledCommandStatus, int]:
    deadline = time.monotonic() + timeout
    async with SqlStore(store_url) as store:
        while True:
            counts = await store.count_by_status()
            if counts[ScheduledCommandStatus.COMPLETED] == count or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.2)


def stop(workers: list[subprocess.Popen[str]]) -> list[str]:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    logs = []
    for worker in workers:
        try:
            _, stderr = worker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            _, stderr = worker.communicate()
        logs.append(stderr)
    return logs


def executions(outputs: list[Path]) -> Counter[int]:
    counter: Counter[int] = Counter()
    for out in outputs:
        if out.exists():
            counter.update(int(line) for line in out.read_text().split())
    return counter


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("backend", "processes", "count"), [("postgresql", 4, 10_000), ("sqlite", 2, 10_000)])
def test_every_command_runs_exactly_once_across_worker_processes(
    backend: str,
    processes: int,
    count: int,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    new_postgres_database: Callable[[str, str], str],
) -> None:
    """N worker processes drain the store: each command is executed exactly once and none is lost."""
    if backend == "postgresql":
        store_url = new_postgres_database(request.getfixturevalue("postgres_url"), "mp")
    else:
        store_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    asyncio.run(schedule_jobs(store_url, count))
    outputs = [tmp_path / f"worker-{i}.out" for i in range(processes)]
    workers = [start_worker(store_url, out) for out in outputs]
    try:
        counts = asyncio.run(wait_until_completed(store_url, count, timeout=240))
    finally:
        logs = stop(workers)
    assert counts[ScheduledCommandStatus.COMPLETED] == count, (counts, logs[0][-3000:])
    seen = executions(outputs)
    assert sorted(seen) == list(range(count)), "every command ran"
    assert max(seen.values()) == 1, f"ran twice: {[n for n, c in seen.items() if c > 1][:10]}"
    assert all(len(out.read_text().split()) > 0 for out in outputs), "every worker took a share"
    assert all(w.returncode == 0 for w in workers), [w.returncode for w in workers]


@pytest.mark.timeout(120)
def test_scheduled_commands_survive_a_restart_on_the_same_sqlite_file(tmp_path: Path) -> None:
    """Schedule, stop the process, start a new one on the same file: everything runs."""
    store_url = f"sqlite:///{tmp_path / 'durable.db'}"
    scheduling_process = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, sys; sys.path[:0] = sys.argv[2:]; "
            "from test_multiworker import schedule_jobs; asyncio.run(schedule_jobs(sys.argv[1], 50))",
            store_url,
            str(Path(__file__).parent),
            str(SUPPORT),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert scheduling_process.returncode == 0, scheduling_process.stderr
    out = tmp_path / "worker.out"
    worker = start_worker(store_url, out)
    try:
        counts = asyncio.run(wait_until_completed(store_url, 50, timeout=60))
    finally:
        stop([worker])
    assert counts[ScheduledCommandStatus.COMPLETED] == 50
    assert sorted(executions([out])) == list(range(50))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigterm_mid_batch_releases_unfinished_commands_and_loses_nothing(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest, new_postgres_database: Callable[[str, str], str]
) -> None:
    """A worker stopped by SIGTERM while commands run gives back what it could not finish; a second worker
    completes everything, and no command is lost or counted as a failed attempt."""
    if backend == "postgresql":
        store_url = new_postgres_database(request.getfixturevalue("postgres_url"), "mp")
    else:
        store_url = f"sqlite:///{tmp_path / 'scheduled.db'}"
    asyncio.run(schedule_jobs(store_url, 40, seconds=0.5))
    first_out, second_out = tmp_path / "first.out", tmp_path / "second.out"
    first = start_worker(store_url, first_out, concurrency=10, grace=0.2)
    try:
        deadline = time.monotonic() + 30
        while not (first_out.exists() and first_out.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        [log] = stop([first])
    assert first.returncode == 0, log
    assert "stopping gracefully" in log

    async def released() -> tuple[dict[ScheduledCommandStatus, int], int]:
        async with SqlStore(store_url) as store:
            counts = await store.count_by_status()
            entries = await store.list_entries(limit=100)
            return counts, sum(e.retry_count for e in entries)

    counts, retries = asyncio.run(released())
    assert counts[ScheduledCommandStatus.PROCESSING] == 0
    assert retries == 0
    second = start_worker(store_url, second_out)
    try:
        final = asyncio.run(wait_until_completed(store_url, 40, timeout=60))
    finally:
        stop([second])
    assert final[ScheduledCommandStatus.COMPLETED] == 40
    assert sorted(executions([first_out, second_out])) == list(range(40))
