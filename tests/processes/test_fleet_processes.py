"""Fleets of real worker processes on one store: routing by handler during a rolling deploy, disjoint queues, a
paused queue, and a lock shared by 200 entries across 4 processes (docs/queues.md).

Real processes (``cqrs-scheduling worker``), real SQLite files and PostgreSQL databases (and a Redis key prefix for
the rolling deploy and the lock); handlers record their start and end on the machine's monotonic clock, so overlaps
are measured, not assumed. Every wait is a bounded poll.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fleet_app import NewJob, OldJob, ReportJob, build_injector
from test_multiworker import stop

from scheduling import CommandScheduler, ScheduledCommandStatus, ScheduleOptions, SchedulingModule
from scheduling.admin import waiting_for_a_worker
from scheduling.codec import command_type_name
from stores import ScheduledCommandStore
from stores.urls import store_from_url

# Fleets of worker processes under load, timed by their own clocks: the Makefile's --dist loadgroup runs the tests of
# this group one after another, so two fleets never share the two cores (a starved fleet misses its rates and leases).
pytestmark = pytest.mark.xdist_group("worker-fleets")

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
S = ScheduledCommandStatus


def _store_url(request: pytest.FixtureRequest, tmp_path: Path, new_postgres_database: Callable[[str, str], str]) -> str:
    if request.param == "postgresql":
        return new_postgres_database(request.getfixturevalue("postgres_url"), "fleet")
    if request.param == "redis":
        return f"{request.getfixturevalue('redis_url')}?prefix={request.getfixturevalue('redis_prefix')}"
    return f"sqlite:///{tmp_path / 'fleet.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path, new_postgres_database: Callable[[str, str], str]) -> str:
    return _store_url(request, tmp_path, new_postgres_database)


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def any_store_url(
    request: pytest.FixtureRequest, tmp_path: Path, new_postgres_database: Callable[[str, str], str]
) -> str:
    """The store URL for the tests that also run on Redis (a key prefix of the test's own)."""
    return _store_url(request, tmp_path, new_postgres_database)


def start_worker(
    store_url: str,
    out: Path,
    *,
    app: str = "build_injector",
    queues: Sequence[str] = (),
    concurrency: int = 10,
    options: Sequence[str] = (),
) -> subprocess.Popen[str]:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(SUPPORT), str(ROOT)]), "FLEET_APP_OUT": str(out)}
    command = [sys.executable, "-m", "scheduling", "worker", "--app", f"fleet_app:{app}", "--store", store_url]
    command += ["--concurrency", str(concurrency), "--log-format", "json"]
    for queue in queues:
        command += ["--queue", queue]
    command += options
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run(work: Callable[[CommandScheduler, ScheduledCommandStore], Any], store_url: str) -> Any:
    """``work(scheduler, store)`` in this process, on the store (the scheduler knows every command type)."""
    from injector import Injector

    async def go() -> Any:
        async with store_from_url(store_url) as store:
            parent = build_injector()
            scheduler = Injector([SchedulingModule(store=store)], parent=parent).get(CommandScheduler)
            return await work(scheduler, store)

    return asyncio.run(go())


def wait_for(store_url: str, condition: Callable[[list[Any]], bool], timeout: float) -> list[Any]:
    """Poll every entry until ``condition(entries)`` holds or ``timeout`` seconds pass; the last entries read."""

    async def read(_: CommandScheduler, store: ScheduledCommandStore) -> list[Any]:
        return await store.list_entries(limit=10_000)

    deadline = time.monotonic() + timeout
    while True:
        entries: list[Any] = run(read, store_url)
        if condition(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.2)


def completed(kind: type, count: int) -> Callable[[list[Any]], bool]:
    name = command_type_name(kind)
    return lambda entries: sum(e.command_type == name and e.status is S.COMPLETED for e in entries) == count


def runs(out: Path) -> list[tuple[str, str, int, int]]:
    """``(event, type, n, ns)`` lines a worker recorded."""
    if not out.exists():
        return []
    return [(e, t, int(n), int(ns)) for e, t, n, ns in (line.split() for line in out.read_text().splitlines())]


def started(out: Path, kind: type) -> list[int]:
    return sorted(n for event, name, n, _ in runs(out) if event == "start" and name == kind.__name__)


@pytest.mark.timeout(120)
def test_rolling_deploy_new_types_run_only_on_new_workers_and_wait_meanwhile(
    any_store_url: str, tmp_path: Path
) -> None:
    """An old worker (no handler for NewJob) never takes a NewJob: they wait PENDING, reported as waiting for a
    worker that handles them, until a new worker starts and runs every one; none is dead-lettered."""
    store_url = any_store_url

    async def schedule(scheduler: CommandScheduler, _: ScheduledCommandStore) -> None:
        await scheduler.schedule_many([OldJob(n=n) for n in range(30)])
        await scheduler.schedule_many([NewJob(n=n) for n in range(30)])

    run(schedule, store_url)
    old_out, new_out = tmp_path / "old.out", tmp_path / "new.out"
    workers = [start_worker(store_url, old_out, app="build_old_injector")]
    try:
        entries = wait_for(store_url, completed(OldJob, 30), timeout=40)
        assert completed(OldJob, 30)(entries), [(e.command_type, e.status) for e in entries][:5]
        new = [e for e in entries if e.command_type == command_type_name(NewJob)]
        assert {(e.status, e.attempt_count) for e in new} == {(S.PENDING, 0)}

        async def waiting(_: CommandScheduler, store: ScheduledCommandStore) -> dict[str, int]:
            return await waiting_for_a_worker(store, datetime.now(UTC), after=timedelta(0))

        assert run(waiting, store_url) == {command_type_name(NewJob): 30}
        workers.append(start_worker(store_url, new_out))  # the old worker keeps running beside it
        entries = wait_for(store_url, completed(NewJob, 30), timeout=40)
    finally:
        logs = stop(workers)
    assert completed(NewJob, 30)(entries), logs[1][-2000:]
    assert not any(e.status is S.FAILED for e in entries)
    assert started(old_out, NewJob) == []
    assert started(new_out, NewJob) == list(range(30))


@pytest.mark.timeout(120)
def test_workers_of_disjoint_queues_run_only_their_own_and_a_paused_queue_waits(store_url: str, tmp_path: Path) -> None:
    """Worker A claims queues a and reports (ReportJob's default queue), worker B queue b; b is paused first:
    nothing of it runs until it is resumed, then B drains it."""

    async def schedule(scheduler: CommandScheduler, _: ScheduledCommandStore) -> None:
        await scheduler.pause_queue("b")
        await scheduler.schedule_many([OldJob(n=n) for n in range(20)], ScheduleOptions(queue="a"))
        await scheduler.schedule_many([OldJob(n=100 + n) for n in range(20)], ScheduleOptions(queue="b"))
        await scheduler.schedule_many([ReportJob(n=n) for n in range(10)])

    run(schedule, store_url)
    a_out, b_out = tmp_path / "a.out", tmp_path / "b.out"
    workers = [start_worker(store_url, a_out, queues=["a", "reports"]), start_worker(store_url, b_out, queues=["b"])]
    try:
        entries = wait_for(store_url, lambda es: completed(ReportJob, 10)(es) and completed(OldJob, 20)(es), 40)
        assert completed(ReportJob, 10)(entries) and completed(OldJob, 20)(entries)
        assert {(e.queue, e.status) for e in entries if e.queue == "b"} == {("b", S.PENDING)}
        assert {e.queue for e in entries if e.command_type == command_type_name(ReportJob)} == {"reports"}

        async def resume(scheduler: CommandScheduler, _: ScheduledCommandStore) -> None:
            await scheduler.resume_queue("b")

        run(resume, store_url)
        entries = wait_for(store_url, completed(OldJob, 40), timeout=40)
    finally:
        logs = stop(workers)
    assert completed(OldJob, 40)(entries), logs[1][-2000:]
    assert started(a_out, OldJob) == list(range(20)) and started(a_out, ReportJob) == list(range(10))
    assert started(b_out, OldJob) == list(range(100, 120)) and started(b_out, ReportJob) == []


@pytest.mark.timeout(120)
def test_entries_sharing_a_lock_never_run_at_once_across_four_processes(any_store_url: str, tmp_path: Path) -> None:
    """200 entries of one lock, 4 processes of concurrency 10: one at a time (measured from the handlers), all
    complete, and waiting for the lock spent no attempt."""
    store_url = any_store_url

    async def schedule(scheduler: CommandScheduler, _: ScheduledCommandStore) -> None:
        jobs = [OldJob(n=n, seconds=0.002) for n in range(200)]
        await scheduler.schedule_many(jobs, ScheduleOptions(lock="customer:42"))

    run(schedule, store_url)
    outs = [tmp_path / f"worker-{i}.out" for i in range(4)]
    workers = [start_worker(store_url, out) for out in outs]
    try:
        entries = wait_for(store_url, completed(OldJob, 200), timeout=55)
    finally:
        logs = stop(workers)
    assert completed(OldJob, 200)(entries), logs[0][-2000:]
    assert {(e.attempt_count, e.retry_count) for e in entries} == {(1, 0)}
    events = sorted((ns, event) for out in outs for event, _, _, ns in runs(out))
    assert len(events) == 400
    running = peak = 0
    for _, event in events:
        running += 1 if event == "start" else -1
        peak = max(peak, running)
    assert peak == 1, "two entries of one lock ran at once"
    assert sum(1 for out in outs if runs(out)) >= 2, "the lock's entries moved between processes"
