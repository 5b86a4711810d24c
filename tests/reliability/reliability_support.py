"""Helpers of the reliability tests: worker processes, databases of their own, reading what happened, and the
scaffolding of the property-based tests.

Worker processes run ``cqrs-scheduling worker`` with an application of ``tests/support`` or of this directory;
each one appends the job numbers it executed to a file of its own (``WORKER_APP_OUT``, flushed per line, so a
killed process loses nothing it reported), and writes its log to a file (a pipe nobody reads could fill up and
block a worker that logs a lot, which is exactly what workers under chaos do).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import psycopg
import pytest
from empty_postgres import empty_postgres_async
from hypothesis import HealthCheck, settings
from injector import Injector
from postgres_servers import admin_conninfo, postgres_database
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from worker_app import Job, JobHandler

from mediator import MediatorModule
from scheduling import CommandScheduler, ScheduledCommandStatus, SchedulingModule
from stores import MemoryStore, RedisStore, ScheduledCommandStore, SqlStore
from stores.urls import store_from_url

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SUPPORT = ROOT / "tests" / "support"


# -- databases -----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_postgres_database(base_url: str, hint: str) -> Iterator[str]:
    """A database of its own on the test server, dropped afterwards (the workers create the schema)."""
    with postgres_database(base_url, f"rel_{hint}") as url:
        yield url


def wait_for_postgres(url: str, timeout: float) -> bool:
    """Wait until the server accepts connections again; whether it did within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(admin_conninfo(url, "postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)


def sync_url(store_url: str) -> str:
    """The store URL with a synchronous driver, for reading tables directly."""
    parsed = make_url(store_url)
    backend = parsed.get_backend_name()
    return parsed.set(drivername="postgresql+psycopg" if backend == "postgresql" else "sqlite").render_as_string(
        hide_password=False
    )


def query(store_url: str, sql: str, **parameters: object) -> list[tuple[object, ...]]:
    """Run one statement against the store's database directly; the rows it returns."""
    engine = create_engine(sync_url(store_url))
    try:
        with engine.begin() as conn:
            result = conn.execute(text(sql), parameters)
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        engine.dispose()


def redis_attempts(store_url: str) -> dict[str, list[str]]:
    """A RedisStore's audit trail read directly: the outcomes of each entry's attempts, by entry id."""
    import json

    import redis

    store = RedisStore(store_url)
    trail: dict[str, list[str]] = {}
    with redis.Redis.from_url(store_url.split("?", 1)[0], decode_responses=True) as client:
        lists = f"{store.prefix}:a:"
        for key in client.scan_iter(match=f"{lists}*", count=1000):
            trail[key[len(lists) :]] = [json.loads(a)["outcome"] for a in client.lrange(key, 0, -1)]
    return trail


def attempt_outcomes(store_url: str) -> Counter[str]:
    """How many attempts the audit trail holds, by outcome."""
    if store_url.startswith("redis"):
        return Counter(outcome for outcomes in redis_attempts(store_url).values() for outcome in outcomes)
    rows = query(store_url, "SELECT outcome, count(*) FROM scheduled_command_attempts GROUP BY outcome")
    return Counter({str(outcome): int(str(count)) for outcome, count in rows})


def entries_completed_twice(store_url: str) -> int:
    """Entries with more than one ``completed`` attempt: the fence should make this zero."""
    if store_url.startswith("redis"):
        return sum(outcomes.count("completed") > 1 for outcomes in redis_attempts(store_url).values())
    rows = query(
        store_url,
        "SELECT count(*) FROM (SELECT entry_id FROM scheduled_command_attempts WHERE outcome = 'completed'"
        " GROUP BY entry_id HAVING count(*) > 1) AS twice",
    )
    return int(str(rows[0][0]))


async def open_store(kind: str, directory: Path, request: pytest.FixtureRequest) -> ScheduledCommandStore:
    """A fresh, opened store: a MemoryStore, an SQLite file in ``directory``, the test module's PostgreSQL
    database, emptied, or Redis under a key prefix of the test's own."""
    if kind == "memory":
        return MemoryStore()
    if kind == "redis":
        redis_store = RedisStore(request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix"))
        await redis_store.open()
        return redis_store
    if kind == "sqlite":
        store = SqlStore(f"sqlite:///{directory / 'store.db'}")
        await store.open()
        return store
    store = SqlStore(request.getfixturevalue("module_postgres_url"))
    await empty(store)
    return store


async def empty(store: SqlStore) -> None:
    """Open the store and delete every row but the schema version (see tests/support/empty_postgres.py)."""
    await store.open()
    async with store.engine.begin() as conn:
        await empty_postgres_async(conn)


# -- property-based tests ------------------------------------------------------------------------------------------

StoreT = TypeVar("StoreT", bound=ScheduledCommandStore)


async def memory_store(_: Path) -> MemoryStore:
    return MemoryStore()


async def sqlite_store(directory: Path) -> SqlStore:
    """An opened store on a new SQLite file in ``directory``."""
    store = SqlStore(f"sqlite:///{directory / 'property.db'}")
    await store.open()
    return store


def postgresql_store(url: str) -> Callable[[Path], Awaitable[SqlStore]]:
    """Makes an opened store on the database at ``url``, emptied."""

    async def make(_: Path) -> SqlStore:
        store = SqlStore(url)
        await empty(store)
        return store

    return make


def property_settings(max_examples: int, *suppressed: HealthCheck) -> settings:
    """Hypothesis settings of a property test: a bounded number of examples with no time limit per example (a
    loaded machine must not fail them), no example database written into the repository, and slow data generation
    accepted (each example runs a worker), plus the ``suppressed`` health checks."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, *suppressed],
    )


@contextlib.contextmanager
def store_for_examples(make_store: Callable[[Path], Awaitable[StoreT]]) -> Iterator[tuple[asyncio.Runner, StoreT]]:
    """One event loop and one store, made in a temporary directory, for all of a property's examples (an example
    runs its coroutines with ``runner.run``); the store is closed and the directory removed afterwards, also when an
    example fails."""
    with tempfile.TemporaryDirectory() as directory, asyncio.Runner() as runner:
        store = runner.run(make_store(Path(directory)))
        try:
            yield runner, store
        finally:
            runner.run(store.close())


# -- scheduling and waiting ----------------------------------------------------------------------------------------


async def schedule_jobs(store_url: str, count: int, seconds: float = 0.0) -> None:
    """Schedule ``Job(n)`` for n in 0..count-1, due now, in batches of a thousand."""
    async with store_from_url(store_url) as store:
        scheduler = Injector([MediatorModule([JobHandler]), SchedulingModule(store=store)]).get(CommandScheduler)
        for start in range(0, count, 1000):
            await scheduler.schedule_many([Job(n=n, seconds=seconds) for n in range(start, min(start + 1000, count))])


async def store_counts(store_url: str) -> dict[ScheduledCommandStatus, int]:
    async with store_from_url(store_url) as store:
        return await store.count_by_status()


async def wait_until_completed(store_url: str, count: int, timeout: float) -> dict[ScheduledCommandStatus, int]:
    """Poll the store until ``count`` entries are COMPLETED or ``timeout`` seconds passed; the last counts."""
    deadline = time.monotonic() + timeout
    async with store_from_url(store_url) as store:
        while True:
            try:
                counts = await store.count_by_status()
            except Exception:  # noqa: BLE001 - the database may be restarting: ask again
                counts = {}
            if counts.get(ScheduledCommandStatus.COMPLETED) == count or time.monotonic() > deadline:
                return counts
            await asyncio.sleep(0.2)


def executions(outputs: list[Path]) -> Counter[int]:
    """How many times each job number was executed, over every worker's output file."""
    counter: Counter[int] = Counter()
    for out in outputs:
        if out.exists():
            counter.update(int(line) for line in out.read_text().split())
    return counter


def executed_lines(outputs: list[Path]) -> int:
    return sum(out.read_bytes().count(b"\n") for out in outputs if out.exists())


# -- worker processes ----------------------------------------------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    out: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Fleet:
    """Worker processes on one store, each with its own output and log file in ``directory``."""

    store_url: str
    directory: Path
    app: str = "chaos_app:build_injector"
    concurrency: int = 10
    workers: list[Worker] = field(default_factory=list)

    def start(self) -> Worker:
        index = len(self.workers)
        out, log = self.directory / f"worker-{index}.out", self.directory / f"worker-{index}.log"
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join([str(HERE), str(SUPPORT), str(ROOT)]),
            "WORKER_APP_OUT": str(out),
        }
        with log.open("wb") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "scheduling",
                    "worker",
                    "--app",
                    self.app,
                    "--store",
                    self.store_url,
                    "--concurrency",
                    str(self.concurrency),
                    "--log-format",
                    "json",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        worker = Worker(process, out, log)
        self.workers.append(worker)
        return worker

    @property
    def alive(self) -> list[Worker]:
        return [w for w in self.workers if w.process.poll() is None]

    @property
    def outputs(self) -> list[Path]:
        return [w.out for w in self.workers]

    def kill(self, worker: Worker) -> None:
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM every live worker and wait for it (SIGKILL after 30 s).

        A worker still starting (a replacement spawned just before) is first given up to 30 s to start its service:
        a SIGTERM that arrives before its signal handlers exist would end it with -15 instead of a graceful stop.
        """
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any('"action": "start"' not in w.log_text() for w in self.alive):
            time.sleep(0.05)
        for worker in self.alive:
            worker.process.send_signal(signal.SIGTERM)
        for worker in self.workers:
            try:
                worker.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()

    def logs(self) -> str:
        return "\n".join(w.log_text() for w in self.workers)
