"""Scheduler throughput, latency and claim scaling on ``SqlStore`` (SQLite, a temporary file, and PostgreSQL) and on
``RedisStore`` (the local Redis, under a ``bench-*`` key prefix deleted afterwards; no claim scaling).

Run with ``.venv/bin/python bench/scheduler_sql.py [--quick]`` (never part of ``make test``). Prints one JSON line
per measurement to stdout and progress to stderr:

- ``schedule_rate`` (per backend): commands/s for ``schedule()`` one at a time and ``schedule_many()`` in batches,
  median of ``repeats`` runs, each on a fresh database.
- ``drain_rate`` (per backend): ``commands`` no-op commands due now (scheduled beforehand, untimed) drained by worker
  PROCESSES (``python -m scheduling worker --app _bench_app:build_injector``), for several process counts and
  settings. Three clocks: from spawning the processes until the parent sees every entry COMPLETED (polling every
  ``poll_s``; includes interpreter start-up), the handler window (first handler start to last handler end, as
  recorded by the workers, so start-up is excluded), and from the first handler start until the parent sees
  everything COMPLETED (the handler window plus the last outcomes' commit).
- ``due_to_start_latency`` (per backend and scheduling process): one worker process with default settings;
  ``commands`` commands due at uniformly spread times over ``spread_s``, starting ``lead_s`` after scheduling
  starts, scheduled one at a time in random due order either by the parent process (wake-ups cross processes:
  LISTEN/NOTIFY on PostgreSQL, the ``data_version`` watcher on SQLite) or inside the worker process. Latency is the
  handler's wall-clock start minus ``scheduled_for``.
- ``claim_scaling`` (per backend): median time of ``store.claim_due(limit=50)`` with a small and a large PENDING
  set (inserted directly with SQL), each claim followed by releasing what it claimed so the pending set keeps its
  size, for two shapes: ``backlog`` (everything due) and ``future`` (everything due later except ``due_set``
  entries at three priorities). PostgreSQL also reports the server-side execution time of the claim statement
  (``EXPLAIN ANALYZE`` in a rolled-back transaction).

``drain_rate`` also reports CPU seconds per 1,000 commands: the worker processes' user+system time (interpreter
start-up included), and for Redis the server's, read from ``INFO cpu`` (shared with anything else using it).

Every measurement runs on 127.0.0.1 and is bounded in time; databases named ``bench_*`` are created and dropped.
``--profile-dir DIR`` runs the worker processes under cProfile and keeps one profile per process there.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import json
import os
import platform
import random
import re
import resource
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import psycopg
from _bench_app import GRACE_ENV, OUT_ENV, Noop, NoopHandler, ScheduleTimed, ScheduleTimedHandler, Timed, TimedHandler
from _bench_app import due_plan as make_due_plan
from injector import Injector
from psycopg import sql
from sqlalchemy.engine import make_url

from mediator import MediatorModule
from scheduling import CommandScheduler, ScheduledCommandStatus, ScheduleOptions, SchedulerSettings, SchedulingModule
from stores import ScheduledCommandStore, SqlStore
from stores.urls import store_from_url

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
POSTGRES_ENV = "BENCH_POSTGRES_URL"
APP = "_bench_app:build_injector"
COMMAND_TYPE = f"{Noop.__module__}.{Noop.__qualname__}"
COMPLETED = ScheduledCommandStatus.COMPLETED
SEED = 20_260_101
BACKENDS = ("sqlite", "postgresql", "redis")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
REDIS_ENV = "BENCH_REDIS_URL"
MEASUREMENTS = ("schedule", "drain", "latency", "claim")

SCHEDULE_TARGET_PER_S = {"postgresql": 30_000}
DRAIN_TARGETS = {"sqlite": (1, 3_000), "postgresql": (4, 5_000), "redis": (4, 6_000)}  # (processes, commands/s)
LATENCY_TARGET_P99_MS = 20.0
WAKE_UPS = {"sqlite": "data_version watcher", "postgresql": "LISTEN/NOTIFY", "redis": "pub/sub"}
CLAIM_TARGET_RATIO = 2.0


@dataclasses.dataclass(frozen=True)
class Config:
    repeats: int = 3
    schedule_one: int = 2_000
    schedule_many: int = 50_000
    schedule_batch: int = 1_000
    drain_commands: int = 20_000
    drain_repeats: int = 2
    drain_processes: dict[str, tuple[int, ...]] = dataclasses.field(
        default_factory=lambda: {"sqlite": (1, 2), "postgresql": (1, 4), "redis": (1, 4)}
    )
    #: (max_concurrency, batch_size): the defaults, then a higher concurrency.
    drain_settings: tuple[tuple[int, int], ...] = ((10, 50), (100, 100))
    drain_poll_s: float = 0.05
    drain_timeout_s: float = 100.0
    latency_commands: int = 500
    latency_spread_s: float = 5.0
    #: Longer than the burst of ``commands`` schedule() calls, so no command is due before it is stored.
    latency_lead_s: float = 2.0
    #: Due-now latency: commands scheduled due at once, one at a time, this many, a random 0..2x gap apart.
    latency_now_commands: int = 300
    latency_now_gap_s: float = 0.01
    claim_sizes: dict[str, tuple[int, int]] = dataclasses.field(
        default_factory=lambda: {"sqlite": (10_000, 1_000_000), "postgresql": (10_000, 1_000_000)}
    )
    claim_limit: int = 50
    claim_warmup: int = 5
    claim_iterations: int = 50
    claim_due_set: int = 100
    claim_priorities: tuple[int, ...] = (0, 5, 10)
    explain_runs: int = 5


QUICK = Config(
    repeats=1,
    schedule_one=200,
    schedule_many=2_000,
    drain_commands=1_000,
    drain_repeats=1,
    drain_settings=((10, 50),),
    latency_commands=50,
    latency_spread_s=1.0,
    latency_lead_s=0.5,
    latency_now_commands=30,
    claim_sizes={"sqlite": (1_000, 10_000), "postgresql": (1_000, 10_000)},
    claim_warmup=2,
    claim_iterations=5,
    explain_runs=1,
)


# -- output ----------------------------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def emit(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


class Env:
    """What every JSON line says about where it was measured."""

    def __init__(self, postgres: Postgres | None, redis_url: str = DEFAULT_REDIS_URL) -> None:
        self.postgres = postgres
        self.redis_url = redis_url
        self._pg_version: str | None = None

    def header(self, bench: str, backend: str) -> dict[str, Any]:
        document: dict[str, Any] = {
            "bench": bench,
            "backend": backend,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpu_count": os.cpu_count(),
        }
        if backend == "postgresql" and self.postgres is not None:
            if self._pg_version is None:
                self._pg_version = self.postgres.version()
            document["postgres_version"] = self._pg_version
        if backend == "sqlite":
            document["sqlite_version"] = sqlite3.sqlite_version
        if backend == "redis":
            document["redis_version"] = redis_info(self.redis_url, "server")["redis_version"]
        return document


def rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else float("inf")


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def percentiles(values_ms: list[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    if len(ordered) < 2:
        return {"min": ordered[0], "p50": ordered[0], "max": ordered[0]} if ordered else {}
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "min": round(ordered[0], 3),
        "p50": round(cuts[49], 3),
        "p95": round(cuts[94], 3),
        "p99": round(cuts[98], 3),
        "max": round(ordered[-1], 3),
    }


# -- databases ---------------------------------------------------------------------------------------------------


class Postgres:
    """The local server: fresh ``bench_*`` databases, dropped afterwards."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit(f"refusing a PostgreSQL server that is not local: {parsed.host}")
        self.url = parsed
        self.admin = parsed.set(drivername="postgresql").render_as_string(hide_password=False)

    def version(self) -> str:
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def create(self, name: str) -> str:
        assert name.startswith("bench_"), name
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        assert name.startswith("bench_"), name
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_path(url: str) -> str:
    database = make_url(url).database
    assert database is not None
    return database


def redis_info(url: str, section: str) -> dict[str, Any]:
    import redis

    with redis.Redis.from_url(url, decode_responses=True) as client:
        info: dict[str, Any] = client.info(section)
    return info


def redis_cpu_s(url: str) -> float:
    """The Redis server's CPU seconds so far (user + system, main thread and the others)."""
    info = redis_info(url, "cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def delete_redis_prefix(url: str, prefix: str) -> None:
    import redis

    assert prefix.startswith("bench-"), prefix
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.unlink(*keys[start : start + 1000])


def children_cpu_s() -> float:
    """CPU seconds of the child processes waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Bench:
    def __init__(
        self,
        config: Config,
        postgres: Postgres | None,
        tmp: Path,
        profile_dir: Path | None,
        redis_url: str = DEFAULT_REDIS_URL,
    ) -> None:
        self.config = config
        self.postgres = postgres
        self.redis_url = redis_url
        self.tmp = tmp
        self.profile_dir = profile_dir
        self.env = Env(postgres, redis_url)
        self._counter = 0

    def _next(self, label: str) -> str:
        self._counter += 1
        return f"bench_{label}_{os.getpid()}_{self._counter}"

    @contextlib.asynccontextmanager
    async def fresh_url(self, backend: str, label: str) -> AsyncIterator[str]:
        """The URL of an empty database of its own: a new SQLite file, or a new PostgreSQL database."""
        name = self._next(label)
        if backend == "redis":
            prefix = name.replace("_", "-")
            try:
                yield f"{self.redis_url}?prefix={prefix}"
            finally:
                delete_redis_prefix(self.redis_url, prefix)
        elif backend == "postgresql":
            assert self.postgres is not None
            url = self.postgres.create(name)
            try:
                yield url
            finally:
                self.postgres.drop(name)
        else:
            path = self.tmp / f"{name}.db"
            try:
                yield f"sqlite:///{path}"
            finally:
                _remove_sqlite_files(path)


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def scheduler_for(store: ScheduledCommandStore) -> CommandScheduler:
    injector = Injector(
        [
            MediatorModule(handlers=[NoopHandler, TimedHandler, ScheduleTimedHandler]),
            SchedulingModule(store=store, settings=SchedulerSettings()),
        ]
    )
    return injector.get(CommandScheduler)


async def schedule_noops(scheduler: CommandScheduler, count: int, batch: int) -> None:
    for start in range(0, count, batch):
        await scheduler.schedule_many([Noop(n=n) for n in range(start, min(start + batch, count))])


# -- worker processes --------------------------------------------------------------------------------------------


def _open_log(path: Path) -> IO[bytes]:
    return path.open("ab")


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


class Workers:
    """Worker processes of ``_bench_app``, each with its own output file and log."""

    def __init__(self, bench: Bench, url: str, label: str, root: Path = ROOT) -> None:
        self.bench = bench
        self.url = url
        self.label = label
        self.root = root  # the source tree the workers import (another export of the project for an A/B)
        self.processes: list[asyncio.subprocess.Process] = []
        self.outputs: list[Path] = []
        self.logs: list[Path] = []

    async def start(self, count: int, *, concurrency: int | None = None, batch_size: int | None = None) -> None:
        for _ in range(count):
            index = len(self.processes)
            out = self.bench.tmp / f"{self.label}-{index}.out"
            log = self.bench.tmp / f"{self.label}-{index}.log"
            # Both afresh: a log left by an earlier run of the same label holds its start line, which
            # ``wait_started`` would take for this worker's (it then timed commands before the worker was up).
            out.unlink(missing_ok=True)
            log.unlink(missing_ok=True)
            env = os.environ | {
                "PYTHONPATH": os.pathsep.join(
                    [str(BENCH_DIR), str(self.root), *filter(None, [os.environ.get("PYTHONPATH")])]
                ),
                OUT_ENV: str(out),
                GRACE_ENV: "5",
            }
            profile: list[str] = []
            if self.bench.profile_dir is not None:
                profile = ["-m", "cProfile", "-o", str(self.bench.profile_dir / f"{self.label}-{index}.prof")]
            args = [*profile, "-m", "scheduling", "worker", "--app", APP, "--store", self.url, "--log-format", "json"]
            if concurrency is not None:
                args += ["--concurrency", str(concurrency)]
            if batch_size is not None:
                args += ["--batch-size", str(batch_size)]
            log_file = _open_log(log)
            try:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, *args, env=env, cwd=self.root, stdout=asyncio.subprocess.DEVNULL, stderr=log_file
                )
            finally:
                log_file.close()
            self.processes.append(process)
            self.outputs.append(out)
            self.logs.append(log)

    async def wait_started(
        self, limit_s: float = 30.0, poll_s: float = 0.02, on_started: Callable[[int], None] | None = None
    ) -> None:
        """Until every worker has logged that its service started; ``on_started(pid)`` as each one is seen."""
        deadline = time.monotonic() + limit_s
        seen: set[int] = set()
        while True:
            for process, log in zip(self.processes, self.logs, strict=True):
                if process.pid not in seen and '"action": "start"' in _read_text(log):
                    seen.add(process.pid)
                    if on_started is not None:
                        on_started(process.pid)
            if len(seen) == len(self.processes):
                return
            for process, log in zip(self.processes, self.logs, strict=True):
                if process.returncode is not None:
                    raise RuntimeError(f"worker exited with {process.returncode}: {_read_text(log)[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not start")
            await asyncio.sleep(poll_s)

    async def stop(self) -> list[int | None]:
        """SIGTERM (graceful), then wait; a worker still running after 30 s is killed."""
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        codes: list[int | None] = []
        for process in self.processes:
            try:
                codes.append(await asyncio.wait_for(process.wait(), timeout=30))
            except TimeoutError:
                process.kill()
                codes.append(await process.wait())
        return codes

    def lines(self) -> list[list[list[str]]]:
        """Per process, the fields of each line it wrote."""
        return [[line.split() for line in _read_text(out).splitlines() if line.strip()] for out in self.outputs]

    def log_tail(self) -> str:
        return "\n".join(_read_text(log)[-1500:] for log in self.logs)


class CompletedCounter:
    """How many entries are COMPLETED, read from the parent process.

    PostgreSQL: while any entry is PENDING or PROCESSING, only that (two probes of partial indexes, on a connection
    of its own), then ``count_by_status()``: counting every status scans the table (2-3 ms of the server's CPU at
    10,000 entries, every 50 ms, about 8 % of a drain's server CPU, billed to the drain measured). SQLite: a plain
    read on its own connection, because ``count_by_status()`` on SQLite takes the write lock (``BEGIN IMMEDIATE``)
    and polling it every 50 ms would slow the workers measured.
    """

    def __init__(self, backend: str, url: str, store: ScheduledCommandStore | None) -> None:
        self.backend = backend
        self.store = store
        self.conn: sqlite3.Connection | None = None
        self.pg: psycopg.Connection[Any] | None = None
        if backend == "sqlite":
            self.conn = sqlite3.connect(f"file:{sqlite_path(url)}?mode=ro", uri=True, isolation_level=None)
        elif backend == "postgresql":
            self.pg = psycopg.connect(libpq(url), autocommit=True)

    async def count(self) -> int:
        if self.conn is not None:
            row = self.conn.execute("SELECT count(*) FROM scheduled_commands WHERE status = 'COMPLETED'").fetchone()
            return int(row[0])
        if self.pg is not None and self._unfinished() > 0:
            return 0  # not all finished yet: the workers' progress is not needed, only the end
        assert self.store is not None
        return (await self.store.count_by_status())[COMPLETED]

    def _unfinished(self) -> int:
        assert self.pg is not None
        row = self.pg.execute(
            "SELECT (SELECT count(*) FROM scheduled_commands WHERE status = 'PENDING')"
            " + (SELECT count(*) FROM scheduled_commands WHERE status = 'PROCESSING')"
        ).fetchone()
        assert row is not None
        return int(row[0])

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.pg is not None:
            self.pg.close()

    async def wait_for(self, count: int, *, limit_s: float, poll_s: float) -> tuple[float | None, int]:
        """``time.time()`` when ``count`` entries were first seen COMPLETED (None after ``limit_s``), and the last
        count."""
        deadline = time.monotonic() + limit_s
        while True:
            seen = await self.count()
            if seen >= count:
                return time.time(), seen
            if time.monotonic() > deadline:
                if self.pg is not None and self.store is not None:  # the poll skipped counting: count now
                    seen = (await self.store.count_by_status())[COMPLETED]
                return None, seen
            await asyncio.sleep(poll_s)


# -- 1. scheduling ---------------------------------------------------------------------------------------------


async def timed(run: Callable[[], Awaitable[None]]) -> float:
    gc.collect()
    start = time.perf_counter()
    await run()
    return time.perf_counter() - start


async def schedule_rate(bench: Bench, backend: str) -> dict[str, Any]:
    c = bench.config
    one: list[float] = []
    many: list[float] = []
    for repeat in range(c.repeats):
        progress(f"schedule_rate {backend}: run {repeat + 1}/{c.repeats}")
        async with bench.fresh_url(backend, "schedule") as url, store_from_url(url) as store:
            scheduler = scheduler_for(store)
            commands = [Noop(n=n) for n in range(c.schedule_one)]

            async def one_by_one(scheduler: CommandScheduler = scheduler, commands: list[Noop] = commands) -> None:
                for command in commands:
                    await scheduler.schedule(command)

            one.append(rate(c.schedule_one, await timed(one_by_one)))
        async with bench.fresh_url(backend, "schedule") as url, store_from_url(url) as store:
            scheduler = scheduler_for(store)
            commands = [Noop(n=n) for n in range(c.schedule_many)]

            async def in_batches(scheduler: CommandScheduler = scheduler, commands: list[Noop] = commands) -> None:
                for start in range(0, len(commands), c.schedule_batch):
                    await scheduler.schedule_many(commands[start : start + c.schedule_batch])

            many.append(rate(c.schedule_many, await timed(in_batches)))
    target = SCHEDULE_TARGET_PER_S.get(backend)
    return {
        **bench.env.header("schedule_rate", backend),
        "params": {
            "repeats": c.repeats,
            "schedule_commands": c.schedule_one,
            "schedule_many_commands": c.schedule_many,
            "schedule_many_batch": c.schedule_batch,
            "options": "none (due now)",
            "database": "fresh per run",
            "commands_built_before_timing": True,
        },
        "schedule_per_s": statistics.median(one),
        "schedule_many_per_s": statistics.median(many),
        "samples": {"schedule_per_s": one, "schedule_many_per_s": many},
        "target_schedule_many_per_s": target,
        "meets_target": None if target is None else statistics.median(many) >= target,
    }


# -- 2. draining -----------------------------------------------------------------------------------------------


class DrainMeter(Protocol):
    """Hooks around one drain, for measuring what it costs (``bench/side_by_side.py``)."""

    async def before_start(self, url: str) -> None:
        """The commands are stored; no worker runs yet."""

    def worker_started(self, pid: int) -> None:
        """The worker process ``pid`` has just logged that its service started (it may have begun draining)."""

    async def completed(self, pids: list[int]) -> None:
        """The parent saw every entry COMPLETED; the workers still run."""

    async def stopped(self) -> None:
        """The workers have exited."""


async def drain_once(
    bench: Bench,
    backend: str,
    processes: int,
    concurrency: int,
    batch: int,
    meter: DrainMeter | None = None,
    root: Path = ROOT,
    started: bool = False,
) -> dict[str, Any]:
    """One drain of ``drain_commands`` no-op commands by worker processes. ``started``: the workers start first
    and the commands are scheduled once every worker has logged its start, in one ``schedule_many()`` (one
    transaction or script run), so that the drain measured overlaps no process's start-up."""
    c = bench.config
    count = c.drain_commands
    async with bench.fresh_url(backend, "drain") as url, store_from_url(url) as store:
        if not started:
            await schedule_noops(scheduler_for(store), count, c.schedule_batch)
        counter = CompletedCounter(backend, url, store)
        workers = Workers(bench, url, f"drain-{backend}-{processes}-{concurrency}", root)
        cpu_before = children_cpu_s()
        server_before = redis_cpu_s(bench.redis_url) if backend == "redis" else None
        try:
            if meter is not None:
                await meter.before_start(url)
            spawned = time.time()
            await workers.start(processes, concurrency=concurrency, batch_size=batch)
            if started:
                await workers.wait_started(limit_s=c.drain_timeout_s)
                await schedule_noops(scheduler_for(store), count, count)
            if meter is not None:
                await workers.wait_started(poll_s=0.005, on_started=meter.worker_started)
            done_at, seen = await counter.wait_for(count, limit_s=c.drain_timeout_s, poll_s=c.drain_poll_s)
            if meter is not None and done_at is not None:
                await meter.completed([process.pid for process in workers.processes])
        finally:
            server_cpu = redis_cpu_s(bench.redis_url) - server_before if server_before is not None else None
            codes = await workers.stop()
            counter.close()
        workers_cpu = children_cpu_s() - cpu_before
        if meter is not None:
            await meter.stopped()
        if done_at is None:
            progress(f"drain {backend} timed out at {seen}/{count}; worker logs:\n{workers.log_tail()}")
    per_process = workers.lines()
    records = [fields for lines in per_process for fields in lines]
    executed = Counter(int(fields[0]) for fields in records)
    first_start = min((float(f[1]) for f in records), default=float("nan"))
    last_end = max((float(f[2]) for f in records), default=float("nan"))
    result: dict[str, Any] = {
        "completed": seen,
        "timed_out": done_at is None,
        "executions": len(records),
        "ran_twice": sum(1 for n in executed.values() if n > 1),
        "per_process": [len(lines) for lines in per_process],
        "exit_codes": codes,
        "startup_s": round(first_start - spawned, 3),
        "worker_cpu_s_per_1000": round(workers_cpu / count * 1000, 4),
    }
    if server_cpu is not None:
        result["server_cpu_s_per_1000"] = round(server_cpu / count * 1000, 4)
    if done_at is not None:
        result |= {
            "spawn_to_completed_s": round(done_at - spawned, 3),
            "handler_window_s": round(last_end - first_start, 3),
            "first_start_to_completed_s": round(done_at - first_start, 3),
        }
    return result


async def drain_rate(bench: Bench, backend: str) -> dict[str, Any]:
    c = bench.config
    results: list[dict[str, Any]] = []
    target_processes, target = DRAIN_TARGETS[backend]
    best_at_target = 0.0
    for processes in c.drain_processes[backend]:
        for concurrency, batch in c.drain_settings:
            runs = []
            for repeat in range(c.drain_repeats):
                progress(
                    f"drain_rate {backend}: {processes} process(es), concurrency {concurrency}, batch {batch}, "
                    f"run {repeat + 1}/{c.drain_repeats}"
                )
                runs.append(await drain_once(bench, backend, processes, concurrency, batch))
            ok = [r for r in runs if not r["timed_out"]]
            rates = {
                name: [rate(c.drain_commands, r[f"{name}_s"]) for r in ok]
                for name in ("spawn_to_completed", "handler_window", "first_start_to_completed")
            }
            summary: dict[str, Any] = {
                "processes": processes,
                "settings": {"max_concurrency": concurrency, "batch_size": batch},
            }
            for name, values in rates.items():
                summary[f"{name}_per_s"] = statistics.median(values) if values else None
            summary["startup_s"] = statistics.median(r["startup_s"] for r in runs)
            summary["worker_cpu_s_per_1000"] = statistics.median(r["worker_cpu_s_per_1000"] for r in runs)
            if backend == "redis":
                summary["server_cpu_s_per_1000"] = statistics.median(r["server_cpu_s_per_1000"] for r in runs)
            summary["samples"] = {f"{name}_per_s": values for name, values in rates.items()}
            summary["runs"] = [
                {k: r[k] for k in ("completed", "timed_out", "executions", "ran_twice", "per_process", "exit_codes")}
                for r in runs
            ]
            if processes == target_processes and rates["first_start_to_completed"]:
                best_at_target = max(best_at_target, statistics.median(rates["first_start_to_completed"]))
            results.append(summary)
    return {
        **bench.env.header("drain_rate", backend),
        "params": {
            "commands": c.drain_commands,
            "repeats": c.drain_repeats,
            "scheduled_with": f"schedule_many, batches of {c.schedule_batch}, due now (not timed)",
            "workers": f"python -m scheduling worker --app {APP} (separate processes)",
            "poll_s": c.drain_poll_s,
            "database": "fresh per run",
        },
        "target": {"processes": target_processes, "per_s": target, "clock": "first_start_to_completed"},
        "results": results,
        "meets_target": best_at_target >= target,
    }


# -- 3. latency ------------------------------------------------------------------------------------------------


async def latency(bench: Bench, backend: str, scheduled_by: str) -> dict[str, Any]:
    c = bench.config
    count = c.latency_commands
    burst_ms: float | None = None
    stored_at: dict[int, float] = {}  # n -> time.time() when schedule() returned
    progress(f"due_to_start_latency {backend}: scheduled by the {scheduled_by} process")
    async with bench.fresh_url(backend, "latency") as url, store_from_url(url) as store:
        scheduler = scheduler_for(store)
        counter = CompletedCounter(backend, url, store)
        workers = Workers(bench, url, f"latency-{backend}-{scheduled_by}")
        try:
            await workers.start(1)
            await workers.wait_started()
            await asyncio.sleep(0.3)  # let the worker reach its first sleep
            expected = count
            if scheduled_by == "parent":
                base = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=c.latency_lead_s)
                burst = time.perf_counter()
                for n, offset in enumerate(make_due_plan(count, c.latency_spread_s, SEED)):
                    due = base + dt.timedelta(seconds=offset)
                    await scheduler.schedule(Timed(n=n, due=due.timestamp()), ScheduleOptions(scheduled_for=due))
                    stored_at[n] = time.time()
                burst_ms = ms(time.perf_counter() - burst)
            else:
                command = ScheduleTimed(count=count, spread_s=c.latency_spread_s, lead_s=c.latency_lead_s, seed=SEED)
                await scheduler.schedule(command)
                expected += 1
            timeout = c.latency_lead_s + c.latency_spread_s + 15
            _, seen = await counter.wait_for(expected, limit_s=timeout, poll_s=0.1)
        finally:
            codes = await workers.stop()
            counter.close()
    [lines] = workers.lines()
    stored_at |= {int(f[1]): float(f[2]) for f in lines if f[0] == "s"}
    started = [(int(f[0]), float(f[1]), float(f[2])) for f in lines if f[0] != "s"]
    latencies = [(start - due) * 1000 for _, due, start in started]
    late = percentiles(latencies)
    stored_late = sum(1 for n, due, _ in started if stored_at.get(n, 0.0) > due)
    # Start minus the later of the due time and the moment schedule() returned: the worker's own reaction time.
    from_available = [(start - max(due, stored_at.get(n, due))) * 1000 for n, due, start in started]
    if stored_at and burst_ms is None:
        burst_ms = ms(max(stored_at.values()) - min(stored_at.values()))
    return {
        **bench.env.header("due_to_start_latency", backend),
        "params": {
            "commands": count,
            "spread_s": c.latency_spread_s,
            "lead_s": c.latency_lead_s,
            "scheduled_by": scheduled_by,
            "wake_up": ("in-process" if scheduled_by == "worker" else WAKE_UPS[backend]),
            "distribution": "uniform random (seeded), scheduled one at a time with schedule() in random due order",
            "worker": "1 process, default settings",
            "settings": {"max_concurrency": 10, "batch_size": 50, "polling_interval_s": 5.0},
        },
        "scheduling_burst_ms": burst_ms,
        "completed": seen,
        "started": len(latencies),
        "exit_codes": codes,
        "latency_ms": late,
        "stored_after_due": stored_late,
        "latency_from_max_due_stored_ms": percentiles(from_available),
        "target_p99_ms": LATENCY_TARGET_P99_MS,
        "meets_target": len(latencies) == count and late.get("p99", float("inf")) <= LATENCY_TARGET_P99_MS,
    }


async def latency_due_now(bench: Bench, backend: str) -> dict[str, Any]:
    """Commands due the moment they are scheduled, by the parent process: the wake-up crosses processes and the
    claim's round trip is part of the latency (nothing can be claimed ahead)."""
    c = bench.config
    count = c.latency_now_commands
    rng = random.Random(SEED)
    stored_at: dict[int, float] = {}  # n -> time.time() when schedule() returned (its commit done)
    progress(f"due_to_start_latency {backend}: due now, scheduled by the parent process")
    async with bench.fresh_url(backend, "latency") as url, store_from_url(url) as store:
        scheduler = scheduler_for(store)
        counter = CompletedCounter(backend, url, store)
        workers = Workers(bench, url, f"latency-now-{backend}")
        try:
            await workers.start(1)
            await workers.wait_started()
            await asyncio.sleep(0.3)
            for n in range(count):
                due = dt.datetime.now(dt.UTC)
                await scheduler.schedule(Timed(n=n, due=due.timestamp()), ScheduleOptions(scheduled_for=due))
                stored_at[n] = time.time()
                await asyncio.sleep(rng.uniform(0, 2 * c.latency_now_gap_s))
            _, seen = await counter.wait_for(count, limit_s=15, poll_s=0.1)
        finally:
            codes = await workers.stop()
            counter.close()
    [lines] = workers.lines()
    started = [(int(f[0]), float(f[1]), float(f[2])) for f in lines if f[0] != "s"]
    latencies = [(start - due) * 1000 for _, due, start in started]
    late = percentiles(latencies)
    # The two parts of each latency: schedule() itself (its commit) and the worker's reaction after it returned.
    calls = [(stored_at[n] - due) * 1000 for n, due, _ in started if n in stored_at]
    reactions = [(start - stored_at[n]) * 1000 for n, _, start in started if n in stored_at]
    return {
        **bench.env.header("due_to_start_latency", backend),
        "params": {
            "commands": count,
            "scheduled_by": "parent",
            "due": "at the moment schedule() is called (scheduled_for = now)",
            "gap_s": f"uniform 0..{2 * c.latency_now_gap_s} between schedule() calls",
            "wake_up": WAKE_UPS[backend],
            "worker": "1 process, default settings",
        },
        "completed": seen,
        "started": len(latencies),
        "exit_codes": codes,
        "latency_ms": late,
        "schedule_call_ms": percentiles(calls),
        "latency_after_schedule_returned_ms": percentiles(reactions),
        "target_p99_ms": None,
        "note": (
            "includes the schedule() commit, the cross-process wake-up and one claim round trip; schedule_call_ms "
            "is the first part, latency_after_schedule_returned_ms the rest"
        ),
    }


# -- 4. claim scaling ------------------------------------------------------------------------------------------

_PG_INSERT = """
INSERT INTO scheduled_commands
    (id, command_type, payload, status, priority, scheduled_for, created_at, retry_count, attempt_count, max_retries)
SELECT 'bench-' || i, %(type)s, '{"n":' || i || '}', 'PENDING',
       (%(priorities)s::int[])[1 + i %% cardinality(%(priorities)s::int[])],
       CASE WHEN %(shape)s = 'backlog' OR i <= %(due_set)s
            THEN %(now)s::timestamptz - interval '1 hour' + i * interval '1 microsecond'
            ELSE %(now)s::timestamptz + interval '1 hour' + i * interval '1 millisecond' END,
       %(now)s::timestamptz, 0, 0, 3
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""

_SQLITE_INSERT = """
WITH RECURSIVE s(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM s WHERE i < ?)
INSERT INTO scheduled_commands
    (id, command_type, payload, status, priority, scheduled_for, created_at, retry_count, attempt_count, max_retries)
SELECT 'bench-' || i, ?, '{"n":' || i || '}', 'PENDING',
       CASE i % 3 WHEN 0 THEN ? WHEN 1 THEN ? ELSE ? END,
       strftime('%Y-%m-%d %H:%M:%S', d / 1000000, 'unixepoch') || printf('.%06d', d % 1000000),
       ?, 0, 0, 3
FROM (SELECT i, CASE WHEN ? = 'backlog' OR i <= ? THEN ? - 3600000000 + i ELSE ? + 3600000000 + i * 1000 END AS d
      FROM s)
"""


def _sqlite_text(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def fill_postgresql(url: str, shape: str, size: int, now: dt.datetime, c: Config) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        chunk = 250_000
        for first in range(1, size + 1, chunk):
            conn.execute(
                _PG_INSERT,
                {
                    "type": COMMAND_TYPE,
                    "priorities": list(c.claim_priorities),
                    "shape": shape,
                    "due_set": c.claim_due_set,
                    "now": now,
                    "first": first,
                    "last": min(first + chunk - 1, size),
                },
            )
        conn.execute("VACUUM ANALYZE scheduled_commands")


def fill_sqlite(url: str, shape: str, size: int, now: dt.datetime, c: Config) -> None:
    now_us = int(now.timestamp()) * 1_000_000 + now.microsecond
    conn = sqlite3.connect(sqlite_path(url), isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=30000")
        chunk = 250_000
        for first in range(1, size + 1, chunk):
            p0, p1, p2 = c.claim_priorities
            due = (c.claim_due_set, now_us, now_us)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                _SQLITE_INSERT,
                [first, min(first + chunk - 1, size), COMMAND_TYPE, p0, p1, p2, _sqlite_text(now), shape, *due],
            )
            conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _psycopg_placeholders(statement: str) -> str:
    """SQLAlchemy's ``:name`` parameters as psycopg's ``%(name)s`` (casts like ``::text`` stay)."""
    return re.sub(r"(?<![:\w]):([a-z_]+)\b", r"%(\1)s", statement.replace("%", "%%"))


def explain_claim_ms(url: str, now: dt.datetime, c: Config) -> dict[str, Any] | None:
    """Server-side planning and execution time of the store's claim statement, in rolled-back transactions."""
    from stores.sql import _postgresql as sql_store

    statement = getattr(sql_store, "CLAIM", None)
    factor = getattr(sql_store, "CLAIM_WINDOW_FACTOR", 4)
    if not isinstance(statement, str):
        return None
    query = "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + _psycopg_placeholders(statement)
    params = {
        "now": now,
        "limit": c.claim_limit,
        "window": c.claim_limit * factor,
        "worker_id": "bench-explain",
        "lease_expires_at": now + dt.timedelta(minutes=5),
        "queues": None,  # every queue and command type, as a worker without --queue that handles everything
        "types": None,
        "limited": False,  # limited queues are claimed apart (SqlStore.claim_due)
    }
    planning: list[float] = []
    execution: list[float] = []
    buffers: list[int] = []
    with psycopg.connect(libpq(url)) as conn:
        conn.execute("SET jit = off")  # as the store's own connections (committed: the runs roll back)
        conn.commit()
        for _ in range(c.explain_runs):
            row = conn.execute(query.encode(), params).fetchone()
            conn.rollback()
            assert row is not None
            [plan] = row[0]
            planning.append(plan["Planning Time"])
            execution.append(plan["Execution Time"])
            buffers.append(plan["Plan"].get("Shared Hit Blocks", 0) + plan["Plan"].get("Shared Read Blocks", 0))
    return {
        "planning_ms": round(statistics.median(planning), 3),
        "execution_ms": round(statistics.median(execution), 3),
        "top_node_shared_blocks": statistics.median(buffers),
    }


async def measure_claims(store: SqlStore, now: dt.datetime, c: Config) -> dict[str, Any]:
    samples: list[float] = []
    for i in range(c.claim_warmup + c.claim_iterations):
        start = time.perf_counter()
        claimed = await store.claim_due(
            now=now, limit=c.claim_limit, worker_id="bench-claim", lease_duration=dt.timedelta(minutes=5)
        )
        elapsed = time.perf_counter() - start
        if len(claimed) != c.claim_limit:
            raise RuntimeError(f"claimed {len(claimed)}, expected {c.claim_limit}")
        released = await asyncio.gather(*(store.release(e.id, e.lease_token or "") for e in claimed))
        if not all(released):
            raise RuntimeError("a release failed")
        if i >= c.claim_warmup:
            samples.append(elapsed * 1000)
    return {
        "median_ms": round(statistics.median(samples), 3),
        "p90_ms": round(statistics.quantiles(samples, n=10)[8], 3) if len(samples) > 1 else samples[0],
        "min_ms": round(min(samples), 3),
    }


async def claim_scaling(bench: Bench, backend: str) -> dict[str, Any]:
    c = bench.config
    small, large = c.claim_sizes[backend]
    results: dict[str, dict[str, Any]] = {}
    ratios: dict[str, float] = {}
    fill = fill_postgresql if backend == "postgresql" else fill_sqlite
    for shape in ("backlog", "future"):
        results[shape] = {}
        for size in (small, large):
            async with bench.fresh_url(backend, "claim") as url:
                async with SqlStore(url):  # creates the schema
                    pass
                progress(f"claim_scaling {backend}: {shape}, inserting {size} entries")
                now = dt.datetime.now(dt.UTC)
                start = time.perf_counter()
                await asyncio.to_thread(fill, url, shape, size, now, c)
                insert_s = time.perf_counter() - start
                now = dt.datetime.now(dt.UTC)
                progress(f"claim_scaling {backend}: {shape}, {size} entries inserted in {insert_s:.1f}s; claiming")
                async with SqlStore(url) as store:
                    measured = await measure_claims(store, now, c)
                measured["insert_s"] = round(insert_s, 1)
                if backend == "postgresql":
                    measured["explain"] = await asyncio.to_thread(explain_claim_ms, url, now, c)
                results[shape][str(size)] = measured
        ratios[shape] = round(results[shape][str(large)]["median_ms"] / results[shape][str(small)]["median_ms"], 2)
        if backend == "postgresql":
            explained = [results[shape][str(n)].get("explain") for n in (small, large)]
            if explained[0] and explained[1]:
                ratios[f"{shape}_server_execution"] = round(
                    explained[1]["execution_ms"] / explained[0]["execution_ms"], 2
                )
    return {
        **bench.env.header("claim_scaling", backend),
        "params": {
            "sizes": [small, large],
            "limit": c.claim_limit,
            "iterations": c.claim_iterations,
            "warmup": c.claim_warmup,
            "after_each_claim": "release() of every claimed entry (pending set keeps its size)",
            "insert": "one INSERT ... SELECT over a generated series, in chunks of 250,000"
            + ("; then VACUUM ANALYZE" if backend == "postgresql" else "; no ANALYZE (the store never runs one)"),
            "shapes": {
                "backlog": f"every entry due (1 h ago .. now), priorities cycling over {list(c.claim_priorities)}",
                "future": f"{c.claim_due_set} entries due, the rest due from 1 h ahead, priorities cycling over "
                f"{list(c.claim_priorities)}",
            },
            "timed": "store.claim_due() from the caller's side (statement, rows and entry validation)",
        },
        "results": results,
        "ratio_large_over_small": ratios,
        "target_ratio": CLAIM_TARGET_RATIO,
        "meets_target": all(ratios[shape] <= CLAIM_TARGET_RATIO for shape in ("backlog", "future")),
    }


# -- main --------------------------------------------------------------------------------------------------------


async def run(bench: Bench, measurements: Sequence[str], backends: Sequence[str]) -> None:
    for measurement in measurements:
        for backend in backends:
            if measurement == "schedule":
                emit(await schedule_rate(bench, backend))
            elif measurement == "drain":
                emit(await drain_rate(bench, backend))
            elif measurement == "latency":
                for scheduled_by in ("parent", "worker"):
                    emit(await latency(bench, backend, scheduled_by))
                emit(await latency_due_now(bench, backend))
            elif measurement == "claim" and backend != "redis":  # claim scaling fills tables with SQL
                emit(await claim_scaling(bench, backend))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke check")
    parser.add_argument(
        "--only", default=",".join(MEASUREMENTS), help=f"comma-separated subset of {', '.join(MEASUREMENTS)}"
    )
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="comma-separated subset of sqlite, postgresql, redis"
    )
    parser.add_argument(
        "--postgres",
        default=os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL),
        help=f"a local PostgreSQL URL whose server may get bench_* databases (default ${POSTGRES_ENV}, then "
        f"{DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get(REDIS_ENV, DEFAULT_REDIS_URL),
        help=f"the Redis server whose bench-* key prefixes the benchmark may use (default ${REDIS_ENV}, then "
        f"{DEFAULT_REDIS_URL})",
    )
    parser.add_argument("--profile-dir", type=Path, help="run worker processes under cProfile, profiles kept here")
    args = parser.parse_args()
    measurements = [m for m in args.only.split(",") if m]
    backends = [b for b in args.backends.split(",") if b]
    unknown = (set(measurements) - set(MEASUREMENTS)) | (set(backends) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown: {', '.join(sorted(unknown))}")
    postgres = Postgres(args.postgres) if "postgresql" in backends else None
    if args.profile_dir is not None:
        args.profile_dir.mkdir(parents=True, exist_ok=True)
    config = QUICK if args.quick else Config()
    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp:
        bench = Bench(config, postgres, Path(tmp), args.profile_dir, args.redis)
        asyncio.run(run(bench, measurements, backends))


if __name__ == "__main__":
    main()
