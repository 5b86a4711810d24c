"""What one ``SyncScheduler.schedule()`` costs against one ``await CommandScheduler.schedule()``, on SQLite (a
temporary file) and PostgreSQL (a ``bench_*`` database created and dropped on 127.0.0.1).

Run with ``.venv/bin/python bench/sync_schedule.py [--calls N] [--repeats R]`` (never part of ``make test``). Prints
one JSON line to stdout. Per backend, microseconds per call (median of ``repeats`` rounds, each round timing
``calls`` calls of every variant, the variants interleaved so that noise hits them alike):

- ``async``: ``await scheduler.schedule(cmd)`` one at a time, in one event loop (the store already open);
- ``sync``: ``sync_scheduler.schedule(cmd)`` one at a time, no event loop (the engine already open);
- ``sync_in_session``: ``sync_scheduler.schedule(cmd, session=session)`` then ``session.commit()``, the caller's
  transaction (a SQLAlchemy ``Session`` on the same database);
- ``asyncio_run``: ``asyncio.run(scheduler.schedule(cmd))`` per call, what synchronous code did before (measured
  on ``calls // 10`` calls: it is slow).

``ratio_sync_to_async`` is ``sync / async``; the target is at most 2.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from _bench_app import Noop, NoopHandler
from injector import Injector
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from mediator import MediatorModule
from scheduling import CommandScheduler, SchedulingModule
from scheduling.sync import SyncScheduler
from stores import SqlStore

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _injector(url: str) -> Injector:
    return Injector([MediatorModule(handlers=[NoopHandler]), SchedulingModule(store=SqlStore(url))])


def _blocking_url(url: str) -> str:
    parsed = make_url(url)
    driver = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


def _per_call_us(calls: int, run: Callable[[int], None]) -> float:
    started = time.perf_counter()
    run(calls)
    return (time.perf_counter() - started) / calls * 1e6


def measure(url: str, calls: int, repeats: int) -> dict[str, float]:
    injector = _injector(url)
    scheduler = injector.get(CommandScheduler)
    sync_scheduler = injector.get(SyncScheduler)
    engine = create_engine(_blocking_url(url))
    loop = asyncio.new_event_loop()
    rounds: dict[str, list[float]] = {"async": [], "sync": [], "sync_in_session": [], "asyncio_run": []}

    async def async_calls(n: int) -> None:
        for i in range(n):
            await scheduler.schedule(Noop(n=i))

    def sync_calls(n: int) -> None:
        for i in range(n):
            sync_scheduler.schedule(Noop(n=i))

    def session_calls(n: int) -> None:
        for i in range(n):
            with Session(engine) as session:
                sync_scheduler.schedule(Noop(n=i), session=session)
                session.commit()

    def asyncio_run_calls(n: int) -> None:
        for i in range(n):
            fresh = _injector(url).get(CommandScheduler)  # a store belongs to one event loop: one per call

            async def once(command: Noop, target: CommandScheduler = fresh) -> None:
                await target.schedule(command)
                await target.store.close()

            asyncio.run(once(Noop(n=i)))

    try:
        loop.run_until_complete(async_calls(20))  # warm up: open the store, compile statements
        sync_calls(20)
        session_calls(20)
        for _ in range(repeats):
            rounds["async"].append(_per_call_us(calls, lambda n: loop.run_until_complete(async_calls(n))))
            rounds["sync"].append(_per_call_us(calls, sync_calls))
            rounds["sync_in_session"].append(_per_call_us(calls, session_calls))
            rounds["asyncio_run"].append(_per_call_us(max(calls // 10, 5), asyncio_run_calls))
    finally:
        loop.run_until_complete(scheduler.store.close())
        loop.close()
        sync_scheduler.close()
        engine.dispose()
    result = {name: round(statistics.median(values), 1) for name, values in rounds.items()}
    result["ratio_sync_to_async"] = round(result["sync"] / result["async"], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL))
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as directory:
        print("sqlite ...", file=sys.stderr)
        results["sqlite"] = measure(f"sqlite:///{Path(directory) / 'bench.db'}", args.calls, args.repeats)
    admin = make_url(args.postgres).set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"bench_sync_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        print("postgresql ...", file=sys.stderr)
        url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
        results["postgresql"] = measure(url, args.calls, args.repeats)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    line = {
        "benchmark": "sync_schedule",
        "date": dt.date.today().isoformat(),
        "python": platform.python_version(),
        "calls": args.calls,
        "repeats": args.repeats,
        "us_per_call": results,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
