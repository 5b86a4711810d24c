"""The worker's own CPU per command: an in-process drain of no-op commands, on the memory, SQLite, Redis and
PostgreSQL stores.

Run from the repository root (never part of ``make test``)::

    .venv/bin/python bench/worker_cpu.py [--n 5000] [--pairs 5] [--baseline DIR]
        [--stores memory,sqlite,redis,postgresql] [--concurrency 10,100] [--redis redis://127.0.0.1:6379/0]
        [--profile FILE]

Each drain schedules ``--n`` no-op commands (outside the measurement), then runs the service as the worker command
does (``run_worker``: it opens the store and serves) until every handler has run, stops it with SIGTERM
(gracefully: every outcome written), and divides this process's CPU time (``time.process_time()``) over that window
by ``--n`` (and the part of it the cyclic garbage collector took, ``gc_ms_per_command``). Only the worker's own CPU:
a Redis or PostgreSQL server's is not counted. Each drain runs in a fresh interpreter; with ``--baseline DIR`` (another
checkout of the project) every round runs the same drain once with that checkout first on ``PYTHONPATH`` and once
with this one, the order alternating from round to round, so a shared machine's drift spreads over both. Prints one
JSON line per drain and a last line with the medians (CPU ms per command) and the ratio this / baseline.

``--profile FILE``: one drain of the first store and concurrency only, under cProfile, its stats written to FILE.
The Redis store uses a key prefix of its own, deleted afterwards; SQLite a temporary file; PostgreSQL a new
``bench_*`` database on the local server (``$BENCH_POSTGRES_URL``, else the benchmarks' default), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))  # _noop_app (the bench folder is not a package)


async def drain(store_name: str, concurrency: int, n: int, redis_url: str, profile: str | None) -> dict[str, Any]:
    """One drain in this process (the project is imported from whatever ``sys.path`` finds first)."""
    from _noop_app import Count, Noop, NoopHandler
    from injector import Injector

    from mediator import MediatorModule
    from scheduling import CommandScheduler, ScheduledCommandStatus, SchedulerSettings, SchedulingModule
    from scheduling._worker import run_worker
    from stores import MemoryStore
    from stores.base import ScheduledCommandStore

    Count.target = n
    Count.done = done = asyncio.Event()

    tmp = tempfile.TemporaryDirectory(prefix="bench-worker-cpu-")
    prefix = f"bench-worker-cpu-{uuid.uuid4().hex[:12]}"
    store: ScheduledCommandStore
    if store_name == "memory":
        store = MemoryStore()
    elif store_name == "sqlite":
        from stores.sql import SqlStore

        store = SqlStore(f"sqlite:///{tmp.name}/drain.db")
    elif store_name == "redis":
        from stores.redis import RedisStore

        store = RedisStore(redis_url, prefix=prefix)
    elif store_name == "postgresql":
        from scheduler_sql import DEFAULT_POSTGRES_URL, POSTGRES_ENV, Postgres

        from stores.sql import SqlStore

        postgres = Postgres(os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL))
        database = f"bench_worker_cpu_{prefix[-12:]}"
        store = SqlStore(postgres.create(database))
    else:
        raise SystemExit(f"unknown store {store_name!r}")
    settings = SchedulerSettings(max_concurrency=concurrency, batch_size=concurrency)
    injector = Injector([MediatorModule(handlers=[NoopHandler]), SchedulingModule(store=store, settings=settings)])
    scheduler = injector.get(CommandScheduler)
    try:
        async with store:
            for start in range(0, n, 1000):
                await scheduler.schedule_many([Noop(n=i) for i in range(start, min(start + 1000, n))])
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        gc_cpu = [0.0, 0.0]  # total, start of the current collection

        def gc_timer(phase: str, info: dict[str, Any]) -> None:
            if phase == "start":
                gc_cpu[1] = time.process_time()
            else:
                gc_cpu[0] += time.process_time() - gc_cpu[1]

        gc.callbacks.append(gc_timer)
        cpu = time.process_time()
        wall = time.perf_counter()
        # As the worker command runs it (opening the store, serving, stopping gracefully on SIGTERM).
        worker = asyncio.create_task(run_worker(injector))
        await asyncio.wait_for(done.wait(), timeout=300)
        os.kill(os.getpid(), signal.SIGTERM)
        await worker
        cpu = time.process_time() - cpu
        wall = time.perf_counter() - wall
        gc.callbacks.remove(gc_timer)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        async with store:
            completed = (await store.count_by_status())[ScheduledCommandStatus.COMPLETED]
    finally:
        if store_name == "redis":
            from redis.asyncio import Redis

            client = Redis.from_url(redis_url)
            keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
            for i in range(0, len(keys), 500):
                await client.delete(*keys[i : i + 500])
            await client.aclose()
        if store_name == "postgresql":
            postgres.drop(database)
        tmp.cleanup()
    return {
        "store": store_name,
        "concurrency": concurrency,
        "n": n,
        "ran": Count.ran,
        "completed": completed,
        "cpu_ms_per_command": round(cpu / n * 1000, 5),
        "gc_ms_per_command": round(gc_cpu[0] / n * 1000, 5),
        "wall_s": round(wall, 3),
    }


def child(args: argparse.Namespace) -> None:
    # As the worker command does: INFO records go to a handler (here one that writes nowhere).
    handler = logging.StreamHandler(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    store_name, concurrency = args.one.split(",")
    result = asyncio.run(drain(store_name, int(concurrency), args.n, args.redis, args.profile))
    print(json.dumps(result), flush=True)


def run_one(checkout: Path, store_name: str, concurrency: int, args: argparse.Namespace) -> dict[str, Any]:
    env = os.environ | {"PYTHONPATH": str(checkout)}
    command = [sys.executable, str(Path(__file__).resolve()), "--one", f"{store_name},{concurrency}"]
    command += ["--n", str(args.n), "--redis", args.redis]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True, timeout=900).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--baseline", type=Path, help="another checkout of the project, drained in the same rounds")
    parser.add_argument("--stores", default="memory,sqlite,redis")
    parser.add_argument("--concurrency", default="10,100")
    parser.add_argument("--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--profile", help="one drain (the first store and concurrency) under cProfile, into FILE")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        child(args)
        return
    stores = args.stores.split(",")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if args.profile:
        args.one = f"{stores[0]},{concurrencies[0]}"
        child(args)
        return
    systems = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    samples: dict[tuple[str, int, str], list[float]] = defaultdict(list)
    for round_number in range(args.pairs):
        order = list(systems.items())
        if round_number % 2:
            order.reverse()
        for store_name in stores:
            for concurrency in concurrencies:
                for system, checkout in order:
                    result = run_one(checkout, store_name, concurrency, args)
                    if result["completed"] != args.n or result["ran"] != args.n:
                        raise SystemExit(f"drain incomplete: {result}")
                    samples[(store_name, concurrency, system)].append(result["cpu_ms_per_command"])
                    line = {"bench": "worker_cpu", "round": round_number + 1, "system": system} | result
                    line["load_average_1m"] = round(os.getloadavg()[0], 1)
                    print(json.dumps(line), flush=True)
    rows: dict[str, Any] = {}
    for store_name in stores:
        for concurrency in concurrencies:
            row = {s: round(statistics.median(samples[(store_name, concurrency, s)]), 4) for s in systems}
            if "baseline" in row:
                row["this_over_baseline"] = round(row["this"] / row["baseline"], 3)
            rows[f"{store_name}, concurrency {concurrency}"] = row
    env = {"python": sys.version.split()[0], "n": args.n, "pairs": args.pairs, "load_average": os.getloadavg()}
    print(json.dumps({"bench": "worker_cpu_summary", "env": env, "cpu_ms_per_command": rows}), flush=True)


if __name__ == "__main__":
    main()
