"""The Entries page and ``GET /api/entries`` at 1,000,000 entries on PostgreSQL: every list variant, timed.

Builds a fresh ``bench_entries_*`` database through the public API: 20,000 entries run by a real
``ScheduledCommandService`` first (half complete, half fail once and are dead-lettered with an error naming their
order), then the rest with ``schedule_many`` in batches of 5,000, due 1 to 30 days ahead, one correlation id per
batch, the clock (a ``ManualClock``) moving a minute per batch so creation times spread over hours. Then
``VACUUM ANALYZE``, as autovacuum would do in time.

Each variant is requested through the dashboard app (``httpx.ASGITransport``, no network: page rendering included)
once to warm up, then ``--repeat`` times; the median and the worst are reported in ms, against the 200 ms target. The
error-text searches are timed with the ``pg_trgm`` trigram index and again without it (index dropped), when the
extension is available. Prints one JSON line; the database is dropped afterwards (``--keep`` keeps it).

    python bench/dashboard_entries.py [--entries 1000000] [--repeat 5] [--url postgresql://postgres@127.0.0.1:5432/]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

import httpx  # noqa: E402
import psycopg  # noqa: E402
from _entries_app import Charge, ChargeHandler, Ship, ShipHandler  # noqa: E402
from injector import Injector  # noqa: E402
from psycopg import sql  # noqa: E402
from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from mediator import MediatorModule  # noqa: E402
from scheduling import (  # noqa: E402
    CommandScheduler,
    ManualClock,
    ScheduledCommandService,
    ScheduleOptions,
    SchedulingModule,
)
from scheduling.web import DashboardSettings, create_dashboard_app  # noqa: E402
from stores.sql import SqlStore  # noqa: E402
from stores.sql._search_indexes import TRIGRAM_INDEX, create_search_indexes  # noqa: E402

TOKEN = "bench-token-0123456789"
START = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
FINISHED = 20_000
BATCH = 5_000
TARGET_MS = 200.0


def admin_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing a PostgreSQL server that is not local: {parsed.host}")
    return parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)


def store_url(url: str, name: str) -> str:
    return make_url(url).set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


async def build(store: SqlStore, clock: ManualClock, total: int) -> dict[str, float]:
    injector = Injector(
        [MediatorModule(handlers=[ShipHandler, ChargeHandler]), SchedulingModule(store=store, clock=clock)]
    )
    scheduler = injector.get(CommandScheduler)
    started = time.perf_counter()
    for start in range(0, FINISHED, 1_000):
        await scheduler.schedule_many([Ship(order=n) for n in range(start, start + 500)])
        await scheduler.schedule_many(
            [Charge(order=n) for n in range(start + 500, start + 1_000)], ScheduleOptions(max_retries=0)
        )
        clock.advance(timedelta(seconds=30))
    scheduled_finished = time.perf_counter()
    await injector.get(ScheduledCommandService).run_until_idle()
    ran = time.perf_counter()
    made = FINISHED
    batch_number = 0
    while made < total:
        size = min(BATCH, total - made)
        options = ScheduleOptions(delay=timedelta(days=1 + batch_number % 30), correlation_id=f"import-{batch_number}")
        await scheduler.schedule_many([Ship(order=n) for n in range(made, made + size)], options)
        made += size
        batch_number += 1
        clock.advance(timedelta(minutes=1))
    built = time.perf_counter()
    return {
        "finished_scheduled_s": round(scheduled_finished - started, 1),
        "finished_run_s": round(ran - scheduled_finished, 1),
        "schedule_many_s": round(built - ran, 1),
        "schedule_many_per_s": round((total - FINISHED) / max(built - ran, 1e-9)),
    }


async def sample(store: SqlStore) -> dict[str, str]:
    """Values the variants search for: an id's short form, a correlation id, times in the data."""
    async with store.engine.connect() as conn:
        middle = (
            await conn.execute(text("SELECT id FROM scheduled_commands ORDER BY seq OFFSET 500000 LIMIT 1"))
        ).first()
        newest = (await conn.execute(text("SELECT max(created_at) FROM scheduled_commands"))).scalar_one()
    return {"short_id": str(middle[0])[:8] if middle else "00000000", "newest": newest.isoformat()}


def variants(values: dict[str, str]) -> dict[str, str]:
    newest = datetime.fromisoformat(values["newest"])
    hour_ago = (newest - timedelta(hours=1)).isoformat()
    two_hours_ago = (newest - timedelta(hours=2)).isoformat()
    due_from, due_to = (START + timedelta(days=10)).isoformat(), (START + timedelta(days=10, hours=6)).isoformat()
    finished_from = START.isoformat()
    return {
        "page /entries": "/entries",
        "page status=FAILED": "/entries?status=FAILED",
        "page status=PENDING page 2": "/entries?status=PENDING&page=2",
        "page jump to page 1,000 (offset 49,950)": "/entries?page=1000",
        "page jump to page 10,000 (offset 499,950)": "/entries?page=10000",
        "page command_type": "/entries?command_type=_entries_app.Charge",
        "page correlation_id": "/entries?correlation_id=import-100",
        "page id prefix (short id)": f"/entries?id_prefix={values['short_id']}",
        "page error text, 10,000 match": "/entries?error=payment+gateway+timed+out",
        "page error text, one order": "/entries?error=charging+order+19999+",
        "page error text, no match": "/entries?error=no+such+error+text",
        "page created in the last hour": f"/entries?created_after={hour_ago}",
        "page created an hour, 2 h ago": f"/entries?created_after={two_hours_ago}&created_before={hour_ago}",
        "page due in 6 hours": f"/entries?due_after={due_from}&due_before={due_to}",
        "page finished since start": f"/entries?finished_after={finished_from}",
        "api /api/entries": "/api/entries",
        "api status=FAILED": "/api/entries?status=FAILED",
        "api error text": "/api/entries?error=payment+gateway+timed+out",
        "api created range": f"/api/entries?created_after={two_hours_ago}&created_before={hour_ago}",
    }


async def time_all(app: Any, paths: dict[str, str], repeat: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
        for name, path in paths.items():
            path = path.replace("+00:00", "%2B00:00")
            response = await client.get(path)  # warm-up
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                response = await client.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200
            total = response.json().get("total") if path.startswith("/api/") else None
            results[name] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
            if total is not None:
                results[name]["total"] = total
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    name = args.database or f"bench_entries_{os.getpid()}"
    assert name.startswith("bench_entries_"), name
    admin = admin_url(args.url)
    url = store_url(args.url, name)
    libpq = make_url(url).set(drivername="postgresql").render_as_string(False)
    clock = ManualClock(START)
    build_times: dict[str, float] = {}
    try:
        if args.database is None:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            with psycopg.connect(libpq, autocommit=True) as c, contextlib.suppress(psycopg.Error):
                c.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            logging.disable(logging.CRITICAL)  # 10,000 dead letters would log 10,000 errors
            async with SqlStore(url) as store:
                build_times = await build(store, clock, args.entries)
            logging.disable(logging.NOTSET)
            with psycopg.connect(libpq, autocommit=True) as c:
                began = time.perf_counter()
                c.execute("VACUUM ANALYZE scheduled_commands")
                build_times["vacuum_analyze_s"] = round(time.perf_counter() - began, 1)
        else:  # timing only, on a database kept by an earlier run (--keep)
            clock.advance(timedelta(days=1))
        with psycopg.connect(libpq, autocommit=True) as c:
            trigram = c.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone() is not None
        async with SqlStore(url) as store:  # reopened: the trigram index exists from the first open on
            values = await sample(store)
            app = create_dashboard_app(store, settings=DashboardSettings(token=TOKEN), clock=clock)
            paths = variants(values)
            timed = await time_all(app, paths, args.repeat)
            without: dict[str, dict[str, float]] = {}
            if trigram:
                async with store.engine.begin() as conn:
                    await conn.execute(text(f"DROP INDEX {TRIGRAM_INDEX}"))
                searches = {k: v for k, v in paths.items() if "error" in k}
                without = await time_all(app, searches, args.repeat)
                async with store.engine.begin() as conn:  # back, for a later run on a kept database
                    await create_search_indexes(conn)
        slowest = max(timed.items(), key=lambda item: item[1]["median_ms"])
        return {
            "bench": "dashboard_entries",
            "database_reused": args.database is not None,
            "date": datetime.now(UTC).date().isoformat(),
            "machine": "2 cores, 24 GiB, shared with other work",
            "python": platform.python_version(),
            "entries": args.entries,
            "repeat": args.repeat,
            "build": build_times,
            "pg_trgm_index": trigram,
            "target_ms": TARGET_MS,
            "variants": timed,
            "error_search_without_trigram_index": without,
            "slowest": slowest[0],
            "all_within_target": all(v["median_ms"] < TARGET_MS for v in timed.values()),
        }
    finally:
        if not args.keep and args.database is None:
            with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--keep", action="store_true", help="keep the database (for EXPLAIN, or another timing)")
    parser.add_argument("--database", help="time on this kept bench_entries_* database; build nothing")
    args = parser.parse_args()
    if args.entries < FINISHED:
        raise SystemExit(f"--entries must be at least {FINISHED}")
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
