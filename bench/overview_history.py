"""The dashboard's overview at 1,000,000 finished entries on PostgreSQL: page and API times, outcomes per range.

Run with ``.venv/bin/python bench/overview_history.py [--entries 1000000] [--days 7] [--runs 15]`` (never part of
``make test``). Prints one JSON line to stdout, progress to stderr.

The rows are written by ``INSERT ... SELECT generate_series`` per 250,000 (then ``VACUUM ANALYZE``), as
``bench/fleet_claim.py`` does: the store's own calls (``claim_due`` then ``complete``, ``retry_later``,
``dead_letter``, ``expire``) write 500 to 2,000 a second on this shared machine, so a million through them takes
longer than the benchmark is worth. Spread evenly over the last ``--days`` days by ``completed_at``, over 8 command
types: 92 % COMPLETED (8 % of them after one retried attempt), 5 % FAILED after a retry (dead letters), 3 % EXPIRED;
each finished entry has the attempts rows the worker would have written (outcome ``failed`` for the retried and the
dead-lettering attempt, ``completed`` for the last of a completed entry).

Measured (median of ``--runs``, milliseconds), from the caller's side, through the dashboard app over ASGI (no
network): ``GET /`` (the overview page) for each range 1h, 24h, 7d, ``GET /api/overview`` and ``GET /api/outcomes``
per range; the first 7 d question on a fresh database (which rolls up every settled hour: once per database), and
``store.count_finished_since`` over 7 days by the hour (what an aggregate without the rollup reads), and the
overview's two biggest reads: ``count_by_status`` and the dead letters per command type. The
``bench_*`` database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import sys
import time
from typing import Any

import httpx
import psycopg
from scheduler_sql import DEFAULT_POSTGRES_URL, Postgres, libpq

from scheduling.admin import EXACT_COUNT_LIMIT
from scheduling.web import DashboardSettings, create_dashboard_app
from stores import SqlStore
from stores.entries import ScheduledCommandStatus
from stores.outcomes import HOUR

TYPES = tuple(f"bench.overview.Job{i}" for i in range(8))
TOKEN = "bench-token"


def progress(message: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


ENTRIES = """
INSERT INTO scheduled_commands (id, command_type, payload, status, priority, scheduled_for, created_at, started_at,
    completed_at, retry_count, attempt_count, max_retries, error_message)
SELECT 'bench-' || i, 'bench.overview.Job' || (i %% 8), '{}',
       CASE WHEN i %% 100 < 5 THEN 'FAILED' WHEN i %% 100 < 8 THEN 'EXPIRED' ELSE 'COMPLETED' END,
       0, t, t, t, t,
       CASE WHEN i %% 100 < 5 THEN 1 WHEN i %% 100 >= 92 THEN 1 ELSE 0 END,
       CASE WHEN i %% 100 < 5 THEN 2 WHEN i %% 100 < 8 THEN 0 WHEN i %% 100 >= 92 THEN 2 ELSE 1 END,
       3, NULL
FROM (SELECT i, %(start)s::timestamptz + (i::float8 / %(n)s) * %(span)s::interval AS t
      FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i) AS s
"""
ATTEMPTS = """
INSERT INTO scheduled_command_attempts (entry_id, attempt, worker_id, started_at, finished_at, outcome, error)
SELECT id, a, 'bench', completed_at - interval '1 second' * (attempt_count - a + 1),
       completed_at - interval '1 second' * (attempt_count - a),
       CASE WHEN a < attempt_count OR status = 'FAILED' THEN 'failed' ELSE 'completed' END,
       CASE WHEN a < attempt_count OR status = 'FAILED' THEN 'RuntimeError: bench' END
FROM scheduled_commands, generate_series(1, attempt_count) AS a
WHERE seq BETWEEN %(first)s AND %(last)s
"""


def build(url: str, entries: int, days: int, now: dt.datetime) -> None:
    """``entries`` finished entries over the ``days`` days before ``now`` (see the module docstring)."""
    start = now - dt.timedelta(days=days)
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        for first in range(0, entries, 250_000):
            last = min(entries, first + 250_000) - 1
            span = dt.timedelta(days=days)
            conn.execute(ENTRIES, {"start": start, "n": entries, "span": span, "first": first, "last": last})
            conn.execute(ATTEMPTS, {"first": first + 1, "last": last + 1})
            progress(f"inserted {last + 1:,} entries and their attempts")
        conn.execute("VACUUM ANALYZE")


async def timed(call: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return ms(statistics.median(times))


async def measure(url: str, now: dt.datetime, runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with SqlStore(url) as store:
        started = time.perf_counter()
        await store.count_outcomes(now - dt.timedelta(days=7), now, unit=HOUR)
        results["first_7d_rollup_ms"] = ms(time.perf_counter() - started)
        results["count_finished_since_7d_hourly_ms"] = await timed(
            lambda: store.count_finished_since(now - dt.timedelta(days=7), bucket=HOUR), max(3, runs // 3)
        )
        results["count_by_status_ms"] = await timed(store.count_by_status, runs)
        results["count_by_status_estimated_ms"] = await timed(
            lambda: store.count_by_status_estimated(exact_up_to=EXACT_COUNT_LIMIT), runs
        )
        estimated = await store.count_by_status_estimated(exact_up_to=EXACT_COUNT_LIMIT)
        exact = await store.count_by_status()
        results["status_counts"] = {s.value: [exact[s], c.count, c.exact] for s, c in estimated.items()}
        results["dead_letters_by_type_ms"] = await timed(
            lambda: store.count_by_command_type(ScheduledCommandStatus.FAILED), runs
        )
        app = create_dashboard_app(store, settings=DashboardSettings(token=TOKEN))
        transport = httpx.ASGITransport(app=app)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:

            async def get(path: str) -> None:
                response = await client.get(path)
                assert response.status_code == 200, (path, response.status_code, response.text[:200])

            for range_ in ("1h", "24h", "7d"):
                await get(f"/?range={range_}")  # warm
                results[f"page_overview_{range_}_ms"] = await timed(lambda r=range_: get(f"/?range={r}"), runs)
                results[f"api_outcomes_{range_}_ms"] = await timed(
                    lambda r=range_: get(f"/api/outcomes?range={r}"), runs
                )
            results["api_overview_ms"] = await timed(lambda: get("/api/overview"), runs)
            body = (await client.get("/api/outcomes?range=7d", headers=headers)).json()
            results["outcomes_7d_totals"] = body["totals"]
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()

    postgres = Postgres(args.postgres)
    name = "bench_overview_history"
    url = postgres.create(name)
    try:
        now = dt.datetime.now(dt.UTC)
        async with SqlStore(url):  # the schema, as the store creates it
            pass
        started = time.perf_counter()
        build(url, args.entries, args.days, now)
        build_s = round(time.perf_counter() - started, 1)
        results = await measure(url, now, args.runs)
        print(
            json.dumps(
                {
                    "bench": "overview_history",
                    "backend": "postgresql",
                    "server": postgres.version(),
                    "entries": args.entries,
                    "days": args.days,
                    "build_s": build_s,
                    "runs": args.runs,
                    **results,
                }
            )
        )
    finally:
        postgres.drop(name)


if __name__ == "__main__":
    asyncio.run(main())
