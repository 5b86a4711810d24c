"""The metrics gauges' store reading at 1,000,000 entries on PostgreSQL: ``read_gauges`` exact and bounded.

Run with ``.venv/bin/python bench/store_gauges.py [--entries 1000000] [--runs 15]`` (never part of ``make test``).
Prints one JSON line to stdout, progress to stderr.

The rows are written by ``INSERT ... SELECT generate_series`` per 250,000 (then ``VACUUM ANALYZE``), as
``bench/overview_history.py`` does. Per 1,000 entries: 5 PENDING (half of them due), 1 PROCESSING (half of those
under an expired lease), 50 FAILED, 20 EXPIRED, the rest COMPLETED.

Measured (median of ``--runs``, milliseconds): ``store.read_gauges(now=...)`` counting every status exactly (a scan
of every row), ``store.read_gauges(now=..., exact_up_to=10,000)`` (each status counted through its index up to the
bound, a larger one estimated from PostgreSQL's statistics), and ``StoreGauges.refresh()`` with
``exact_up_to=None`` and with its default (what a scrape pays). The counts of both readings are printed side by
side (exact, bounded, whether estimated). The ``bench_*`` database is dropped at the end.
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

import psycopg
from prometheus_client import CollectorRegistry
from scheduler_sql import DEFAULT_POSTGRES_URL, Postgres, libpq

from scheduling.clock import ManualClock
from scheduling.metrics import DEFAULT_EXACT_UP_TO, StoreGauges
from stores import SqlStore

BOUND = DEFAULT_EXACT_UP_TO


def progress(message: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


ENTRIES = """
INSERT INTO scheduled_commands (id, command_type, payload, status, priority, scheduled_for, created_at,
    completed_at, lease_owner, lease_expires_at, retry_count, attempt_count, max_retries)
SELECT 'bench-' || i, 'bench.gauges.Job' || (i %% 8), '{}', s.status, 0,
       %(now)s::timestamptz + CASE WHEN i %% 2 = 0 THEN interval '-1 minute' ELSE interval '1 hour' END,
       %(now)s::timestamptz - interval '1 day',
       CASE WHEN s.status IN ('PENDING', 'PROCESSING') THEN NULL ELSE %(now)s::timestamptz END,
       CASE WHEN s.status = 'PROCESSING' THEN 'bench' END,
       CASE WHEN s.status = 'PROCESSING'
            THEN %(now)s::timestamptz
                 + CASE WHEN i %% 2000 < 1000 THEN interval '1 minute' ELSE interval '-1 minute' END
       END,
       0, CASE WHEN s.status = 'PENDING' THEN 0 ELSE 1 END, 3
FROM (SELECT i, CASE WHEN i %% 1000 < 5 THEN 'PENDING' WHEN i %% 1000 < 6 THEN 'PROCESSING'
                     WHEN i %% 1000 < 56 THEN 'FAILED' WHEN i %% 1000 < 76 THEN 'EXPIRED' ELSE 'COMPLETED' END AS status
      FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i) AS s
"""


def build(url: str, entries: int, now: dt.datetime) -> None:
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        for first in range(0, entries, 250_000):
            last = min(entries, first + 250_000) - 1
            conn.execute(ENTRIES, {"now": now, "first": first, "last": last})
            progress(f"inserted {last + 1:,} entries")
        conn.execute("VACUUM ANALYZE")


async def timed(call: Any, runs: int) -> float:
    await call()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await call()
        times.append(time.perf_counter() - started)
    return ms(statistics.median(times))


async def measure(url: str, now: dt.datetime, runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with SqlStore(url) as store:
        results["read_gauges_exact_ms"] = await timed(lambda: store.read_gauges(now=now), runs)
        results["read_gauges_bounded_ms"] = await timed(lambda: store.read_gauges(now=now, exact_up_to=BOUND), runs)
        exact = await store.read_gauges(now=now)
        bounded = await store.read_gauges(now=now, exact_up_to=BOUND)
        results["counts_exact_bounded_estimated"] = {
            s.value: [n, bounded.counts[s], s in bounded.estimated] for s, n in exact.counts.items()
        }
        results["running"] = [exact.running, bounded.running]
        exact_gauges = StoreGauges(store, CollectorRegistry(), clock=ManualClock(now), exact_up_to=None)
        results["store_gauges_refresh_exact_ms"] = await timed(exact_gauges.refresh, runs)
        gauges = StoreGauges(store, CollectorRegistry(), clock=ManualClock(now))
        results["store_gauges_refresh_ms"] = await timed(gauges.refresh, runs)
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()

    postgres = Postgres(args.postgres)
    name = "bench_store_gauges"
    url = postgres.create(name)
    try:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        async with SqlStore(url):  # the schema, as the store creates it
            pass
        started = time.perf_counter()
        build(url, args.entries, now)
        build_s = round(time.perf_counter() - started, 1)
        results = await measure(url, now, args.runs)
        print(
            json.dumps(
                {
                    "bench": "store_gauges",
                    "backend": "postgresql",
                    "server": postgres.version(),
                    "entries": args.entries,
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
