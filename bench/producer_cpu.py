"""The producer's CPU per command: ``schedule()`` one at a time, 100 coroutines calling it, ``schedule_many(N)``.

Run with ``.venv/bin/python bench/producer_cpu.py [--n N] [--backends memory,sqlite,postgresql] [--profile DIR]``
(never part of ``make test``). Each measurement runs on a fresh store (a new SQLite file, a new ``bench_*``
PostgreSQL database dropped afterwards) in this process and prints one JSON line: the rate, this process's CPU
(``time.process_time()``) per command and, on PostgreSQL, its backends' CPU per command (from ``/proc``). The
memory store isolates the scheduler's own work from a database's. ``--profile DIR`` writes one cProfile file per
measurement (the timed part only) instead of timing it.

Meant to be run alternately against another checkout (``PYTHONPATH`` pointing at it) for an A/B comparison: the
script imports ``scheduling`` and ``stores`` from wherever ``PYTHONPATH`` says.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from _bench_app import Noop
from _meter import PgProbe, cpu_delta
from _side_by_side_ours import PRODUCERS
from _side_by_side_ours import workload as side_by_side_workload
from scheduler_sql import DEFAULT_POSTGRES_URL, POSTGRES_ENV, Postgres, libpq, scheduler_for

from scheduling import CommandScheduler
from stores import MemoryStore, ScheduledCommandStore, SqlStore

MEASUREMENTS = ("single", f"concurrent_{PRODUCERS}", "many")


def workload(measurement: str, scheduler: CommandScheduler, commands: list[Noop]) -> Callable[[], Awaitable[None]]:
    """The timed part: the side-by-side benchmark's scheduling workloads (``single``, ``many``, else 100 producers)."""
    return side_by_side_workload(f"schedule_{measurement}", scheduler, commands)


@contextlib.asynccontextmanager
async def fresh_store(backend: str, postgres: Postgres | None, tmp: Path, label: str) -> AsyncIterator[Any]:
    """A new empty store of ``backend`` and, on PostgreSQL, a probe of its backends' CPU."""
    if backend == "memory":
        yield MemoryStore(), None
        return
    name = f"bench_producercpu_{os.getpid()}_{label}"
    if backend == "sqlite":
        path = tmp / f"{name}.db"
        try:
            async with SqlStore(f"sqlite:///{path}") as store:
                yield store, None
        finally:
            _remove_sqlite_files(path)
        return
    assert postgres is not None
    url = postgres.create(name)
    try:
        async with SqlStore(url) as store:
            probe = PgProbe(libpq(url))
            try:
                yield store, probe
            finally:
                probe.close()
    finally:
        postgres.drop(name)


async def measure(
    backend: str, measurement: str, n: int, postgres: Postgres | None, tmp: Path, profile_dir: Path | None
) -> dict[str, Any]:
    commands = [Noop(n=i) for i in range(n)]
    async with fresh_store(backend, postgres, tmp, measurement) as (store, probe):
        scheduler = scheduler_for(store)
        await scheduler.schedule(Noop(n=-1))  # warm: connections opened, statements prepared, caches filled
        work = workload(measurement, scheduler, commands)
        gc.collect()
        profiler = cProfile.Profile() if profile_dir is not None else None
        server_before = probe.snapshot(stats=False)["server_cpu"] if probe else {}
        cpu_before = time.process_time()
        start = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        await work()
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu_before
        server = cpu_delta(server_before, probe.snapshot(stats=False)["server_cpu"]) if probe else None
        stored = await _stored(store)
    if profiler is not None and profile_dir is not None:
        profiler.dump_stats(profile_dir / f"{backend}_{measurement}.prof")
    document: dict[str, Any] = {
        "bench": "producer_cpu",
        "backend": backend,
        "measurement": measurement,
        "n": n,
        "per_s": round(n / elapsed, 1),
        "process_us_per_command": round(cpu / n * 1e6, 1),
        "stored": stored,
        "load_1m": round(os.getloadavg()[0], 2),
        "profiled": profiler is not None,
    }
    if server is not None:
        document["server_us_per_command"] = round(server / n * 1e6, 1)
        document["total_us_per_command"] = round((cpu + server) / n * 1e6, 1)
    return document


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def _stored(store: ScheduledCommandStore) -> int:
    return sum((await store.count_by_status()).values()) - 1  # less the warm-up entry


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--backends", default="memory,sqlite,postgresql")
    parser.add_argument("--only", default=",".join(MEASUREMENTS), help="measurements, comma-separated")
    parser.add_argument("--profile", type=Path, default=None, help="write cProfile files here instead of timing")
    args = parser.parse_args()
    backends = args.backends.split(",")
    postgres = Postgres(os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL)) if "postgresql" in backends else None
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="producer-cpu-") as tmp:
        for backend in backends:
            for measurement in args.only.split(","):
                document = await measure(backend, measurement, args.n, postgres, Path(tmp), args.profile)
                sys.stdout.write(json.dumps(document) + "\n")
                sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
