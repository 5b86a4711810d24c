"""PostgreSQL claim time and drain rate with one queue versus four queues with routing on (issue #15).

Run with ``.venv/bin/python bench/fleet_claim.py [--quick] [--sizes 10000,1000000] [--layouts single,routed]``
(never part of ``make test``). Prints one JSON line per measurement to stdout, progress to stderr.

For each pending-set size, the layouts are measured one after the other on databases of their own (interleaved
A/B in one run, ``--rounds`` times):

- ``single``: every entry in the ``default`` queue, one command type; the claim passes no route (as a worker
  without ``--queue``; the code of releases before queues takes no route at all, so this layout also runs there).
- ``routed``: entries spread round-robin over 4 queues and 4 command types; the claim names the 4 queues and the 4
  types (a worker started with ``--queue`` x4 that handles every type).
- ``limited``: as ``single``, the queue limited (``max_running`` 10,000 and 1,000,000 starts per hour, neither
  reached): the one-statement claim that holds limits (``CLAIM_LIMITED``), taking running and start slots.

The rows are built with one ``INSERT ... SELECT generate_series`` per 250,000 (then ``VACUUM ANALYZE``), never through
``schedule()``. Measured per layout and size:

- ``claim``: median of ``store.claim_due(limit=batch)`` from the caller's side, each followed by releasing what it
  claimed so the pending set keeps its size; and the server-side time of the claim statement (``EXPLAIN (ANALYZE,
  BUFFERS)`` in rolled-back transactions, median), with its shared buffers and the rows its range scans of the
  routed index returned (``due_rows_read``): both independent of the machine's load.
- ``drain``: ``drain`` entries claimed ``batch`` at a time and completed one by one (``store.complete``) from one
  process, as entries/s: the store's share of a worker's drain, without handlers or process start-up.

Every ``bench_*`` database created is dropped. ``PYTHONPATH`` decides which code is measured (the A/B against an
older release runs this file with ``PYTHONPATH`` pointing at that release's tree, ``--layouts single``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import statistics
import sys
import time
from typing import Any

import psycopg
from scheduler_sql import DEFAULT_POSTGRES_URL, POSTGRES_ENV, Postgres, libpq

from stores import SqlStore
from stores.entries import AttemptRecord

QUEUES = ("q0", "q1", "q2", "q3")
TYPES = tuple(f"bench.fleet.Job{i}" for i in range(4))

_INSERT = """
INSERT INTO scheduled_commands
    (id, command_type, payload, status, priority, scheduled_for, created_at, retry_count, attempt_count, max_retries
     {queue_column})
SELECT 'bench-' || i, (%(types)s::text[])[1 + i %% cardinality(%(types)s::text[])], '{{"n":' || i || '}}', 'PENDING',
       0, %(now)s::timestamptz - interval '1 hour' + i * interval '1 microsecond', %(now)s::timestamptz, 0, 0, 3
       {queue_value}
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""


@dataclasses.dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = (10_000, 1_000_000)
    batch: int = 50
    claims: int = 30
    warmup: int = 5
    explain_runs: int = 5
    drain: int = 2_000
    rounds: int = 1


def progress(message: str) -> None:
    print(f"[{dt.datetime.now(dt.UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def fill(url: str, layout: str, size: int, now: dt.datetime) -> None:
    routed = layout == "routed"
    statement = _INSERT.format(
        queue_column=", queue" if routed else "",
        queue_value=", (%(queues)s::text[])[1 + (i / 4) %% cardinality(%(queues)s::text[])]" if routed else "",
    )
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        for first in range(1, size + 1, 250_000):
            params = {"types": list(TYPES if routed else TYPES[:1]), "queues": list(QUEUES), "now": now}
            conn.execute(statement.encode(), params | {"first": first, "last": min(first + 249_999, size)})
        conn.execute("VACUUM ANALYZE scheduled_commands")


def route_for(layout: str) -> dict[str, Any]:
    if layout != "routed":
        return {}
    from stores.queues import Route

    return {"route": Route.of(QUEUES, TYPES)}


def this_claim(layout: str) -> str | None:
    """The claim statement the store of the code measured runs for the layout's route (``None``: none to EXPLAIN)."""
    from stores.sql import _postgresql as sql_store

    pick = getattr(sql_store, "claim_statement", None)
    if pick is not None:
        from stores.queues import Route

        route = Route.of(QUEUES, TYPES) if layout == "routed" else Route.of(None, None)
        return str(pick(route, limited=layout == "limited"))
    statement = getattr(sql_store, "CLAIM_LIMITED" if layout == "limited" else "CLAIM", None)
    return statement if isinstance(statement, str) else None


def explain(url: str, layout: str, now: dt.datetime, c: Config, statement: object = None) -> dict[str, Any] | None:
    from scheduler_sql import _psycopg_placeholders

    from stores.sql import _postgresql as sql_store

    if statement is None:
        statement = this_claim(layout)
    if not isinstance(statement, str):
        return None
    routed = layout == "routed"
    params = {
        "now": now,
        "limit": c.batch,
        "window": c.batch * getattr(sql_store, "CLAIM_WINDOW_FACTOR", 4),
        "worker_id": "bench-explain",
        "lease_expires_at": now + dt.timedelta(minutes=5),
        "queues": list(QUEUES) if routed else None,
        "types": list(TYPES) if routed else None,
        "limited": False,
    }
    query = ("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + _psycopg_placeholders(statement)).encode()
    planning: list[float] = []
    execution: list[float] = []
    buffers: list[int] = []
    rows_read: list[int] = []
    with psycopg.connect(libpq(url)) as conn:
        conn.execute("SET jit = off")
        conn.commit()
        for _ in range(c.explain_runs):
            row = conn.execute(query, {k: v for k, v in params.items() if f":{k}" in statement}).fetchone()
            conn.rollback()
            assert row is not None
            [plan] = row[0]
            planning.append(plan["Planning Time"])
            execution.append(plan["Execution Time"])
            buffers.append(plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"])
            rows_read.append(due_rows_read(plan["Plan"]))
    return {
        "planning_ms": round(statistics.median(planning), 3),
        "execution_ms": round(statistics.median(execution), 3),
        "buffers": int(statistics.median(buffers)),
        "due_rows_read": int(statistics.median(rows_read)),
        "samples": {"execution_ms": execution, "buffers": buffers},
    }


_PREPARED_WARMUP = 6


def server_cpu(
    url: str, layout: str, now: dt.datetime, c: Config, statements: dict[str, str]
) -> dict[str, list[float]]:
    """CPU milliseconds the server process spent on each claim statement (``/proc/PID/schedstat`` of the connection's
    backend, so PostgreSQL must run on this machine): ``c.explain_runs`` runs of each of ``statements``, alternating,
    each rolled back, after ``_PREPARED_WARMUP`` runs of each not counted. Much less moved by other processes' load
    than elapsed time: a process waiting for a core accrues none."""
    from scheduler_sql import _psycopg_placeholders

    routed = layout == "routed"
    params = {
        "now": now,
        "limit": c.batch,
        "window": c.batch * 4,
        "worker_id": "bench-cpu",
        "lease_expires_at": now + dt.timedelta(minutes=5),
        "queues": list(QUEUES) if routed else None,
        "types": list(TYPES) if routed else None,
    }
    samples: dict[str, list[float]] = {label: [] for label in statements}
    with psycopg.connect(libpq(url)) as conn:
        conn.execute("SET jit = off")
        conn.commit()
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        stat = f"/proc/{row[0]}/schedstat"
        if not os.path.exists(stat):
            return {}
        # Prepared, and past PostgreSQL's first five custom plans, as on a worker's long-lived connections.
        for run in range(_PREPARED_WARMUP + c.explain_runs):
            for label, statement in statements.items():
                query = _psycopg_placeholders(statement).encode()
                bound = {k: v for k, v in params.items() if f":{k}" in statement}
                before = run_ns(stat)
                conn.execute(query, bound, prepare=True).fetchall()
                after = run_ns(stat)
                conn.rollback()
                if run >= _PREPARED_WARMUP:
                    samples[label].append((after - before) / 1e6)
    return samples


def database_cpu_ns(postgres: Postgres, database: str) -> int:
    """Nanoseconds the server processes connected to ``database`` have run on a CPU, together (read from their
    ``/proc/PID/schedstat``: PostgreSQL on this machine; a process that ended meanwhile is not counted)."""
    with psycopg.connect(postgres.admin, autocommit=True, connect_timeout=5) as conn:
        pids = [row[0] for row in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,))]
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += run_ns(f"/proc/{pid}/schedstat")
    return total


def run_ns(schedstat: str) -> int:
    """Nanoseconds a process has run on a CPU (the first field of its ``schedstat``)."""
    with open(schedstat) as f:
        return int(f.read().split()[0])


def due_rows_read(node: dict[str, Any]) -> int:
    """Rows the plan node and its children returned from range scans of the routed index (not its loose probes)."""
    own = 0
    if node.get("Index Name") == "ix_scheduled_commands_routed_due" and node.get("Node Type") == "Index Scan":
        own = int(node["Actual Rows"] * node["Actual Loops"])
    return own + sum(due_rows_read(child) for child in node.get("Plans", []))


async def claims(store: SqlStore, layout: str, now: dt.datetime, c: Config) -> dict[str, Any]:
    samples: list[float] = []
    for i in range(c.warmup + c.claims):
        start = time.perf_counter()
        claimed = await store.claim_due(
            now=now, limit=c.batch, worker_id="bench", lease_duration=dt.timedelta(minutes=5), **route_for(layout)
        )
        elapsed = time.perf_counter() - start
        if len(claimed) != c.batch:
            raise RuntimeError(f"claimed {len(claimed)}, expected {c.batch}")
        for entry in claimed:
            if not await store.release(entry.id, entry.lease_token or ""):
                raise RuntimeError("a release failed")
        if i >= c.warmup:
            samples.append(elapsed * 1000)
    return {"median_ms": round(statistics.median(samples), 3), "min_ms": round(min(samples), 3), "samples": samples}


async def drain(store: SqlStore, layout: str, now: dt.datetime, c: Config) -> dict[str, float]:
    done = 0
    start = time.perf_counter()
    while done < c.drain:
        claimed = await store.claim_due(
            now=now, limit=c.batch, worker_id="bench", lease_duration=dt.timedelta(minutes=5), **route_for(layout)
        )
        if not claimed:
            raise RuntimeError(f"nothing left to claim after {done}")
        for entry in claimed:
            attempt = AttemptRecord(attempt=1, worker_id="bench", started_at=now, finished_at=now, outcome="completed")
            if not await store.complete(entry.id, entry.lease_token or "", result_payload=None, attempt=attempt):
                raise RuntimeError("a completion failed")
        done += len(claimed)
    seconds = time.perf_counter() - start
    return {"entries": done, "seconds": round(seconds, 2), "per_s": round(done / seconds, 1)}


async def measure(
    postgres: Postgres, layout: str, size: int, round_: int, c: Config, code: str, prefix: str
) -> dict[str, Any]:
    name = f"{prefix}_{os.getpid()}_{layout}_{size}_{round_}"
    url = postgres.create(name)
    try:
        async with SqlStore(url) as store:  # the schema
            if layout == "limited":
                from stores.queues import QueueLimits, RateLimit

                rate = RateLimit(count=1_000_000, per=dt.timedelta(hours=1))
                await store.set_queue_limits("default", QueueLimits(max_running=10_000, rate=rate))
        now = dt.datetime.now(dt.UTC)
        progress(f"{code} {layout} {size}: inserting")
        started = time.perf_counter()
        await asyncio.to_thread(fill, url, layout, size, now)
        insert_s = time.perf_counter() - started
        now = dt.datetime.now(dt.UTC)
        progress(f"{code} {layout} {size}: inserted in {insert_s:.1f}s; claiming")
        async with SqlStore(url) as store:
            claim = await claims(store, layout, now, c)
            claim["explain"] = await asyncio.to_thread(explain, url, layout, now, c)
            drained = await drain(store, layout, now, c)
    finally:
        postgres.drop(name)
    return {
        "bench": "fleet_claim",
        "code": code,
        "layout": layout,
        "pending": size,
        "round": round_,
        "batch": c.batch,
        "insert_s": round(insert_s, 1),
        "claim": claim,
        "drain": drained,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
    }


def load_statement(path: str) -> str:
    """``CLAIM`` of another version of ``_pg_claim.py`` (a file path), to EXPLAIN beside this tree's on one database."""
    spec = importlib.util.spec_from_file_location("other_pg_claim", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.CLAIM)


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def quartile(values: list[float]) -> float:
    return round(statistics.quantiles(values, n=4)[0], 3) if len(values) > 1 else values[0]


async def interleaved(
    postgres: Postgres, layouts: list[str], size: int, c: Config, code: str, prefix: str, other: str | None
) -> list[dict[str, Any]]:
    """Every layout's database filled first, then ``c.rounds`` cycles alternating between them (A/B, then B/A):
    each cycle times ``c.claims`` claims, runs ``c.explain_runs`` EXPLAINs (and as many of ``other``, the claim
    statement of another version, when given) and drains ``c.drain`` entries, on every layout in turn."""
    names = {layout: f"{prefix}_{os.getpid()}_{layout}_{size}" for layout in layouts}
    urls: dict[str, str] = {}
    try:
        now = dt.datetime.now(dt.UTC)
        for layout, name in names.items():
            urls[layout] = postgres.create(name)
            async with SqlStore(urls[layout]):  # the schema
                pass
            progress(f"{code} {layout} {size}: inserting")
            await asyncio.to_thread(fill, urls[layout], layout, size, now)
        now = dt.datetime.now(dt.UTC)
        stores = {layout: SqlStore(urls[layout]) for layout in layouts}
        for store in stores.values():
            await store.__aenter__()
        samples: dict[str, dict[str, list[float]]] = {layout: {} for layout in layouts}
        try:
            for layout in layouts:  # the heads of the groups carry dead index entries, as a busy queue's do
                await claims(stores[layout], layout, now, dataclasses.replace(c, warmup=0, claims=40))
            for round_ in range(c.rounds):
                progress(f"{code} {size}: cycle {round_ + 1} of {c.rounds}")
                for layout in layouts if round_ % 2 == 0 else list(reversed(layouts)):
                    got = samples[layout]
                    claim = await claims(stores[layout], layout, now, c)
                    plan = await asyncio.to_thread(explain, urls[layout], layout, now, c)
                    assert plan is not None
                    figures: dict[str, list[float]] = {"claim_ms": claim["samples"]}
                    figures["server_ms"] = plan["samples"]["execution_ms"]
                    figures["buffers"] = plan["samples"]["buffers"]
                    figures["due_rows"] = [plan["due_rows_read"]]
                    if other is not None:
                        before = await asyncio.to_thread(explain, urls[layout], layout, now, c, other)
                        assert before is not None
                        figures["other_server_ms"] = before["samples"]["execution_ms"]
                        figures["other_buffers"] = before["samples"]["buffers"]
                    statements = {"cpu_ms": this_claim(layout) or ""} | ({"other_cpu_ms": other} if other else {})
                    figures |= await asyncio.to_thread(server_cpu, urls[layout], layout, now, c, statements)
                    server_before = database_cpu_ns(postgres, names[layout])
                    client_before = time.process_time()
                    drained = await drain(stores[layout], layout, now, c)
                    client_ms = (time.process_time() - client_before) * 1000
                    server_ms = (database_cpu_ns(postgres, names[layout]) - server_before) / 1e6
                    figures["drain_per_s"] = [drained["per_s"]]
                    figures["drain_server_cpu_ms_per_entry"] = [server_ms / drained["entries"]]
                    figures["drain_client_cpu_ms_per_entry"] = [client_ms / drained["entries"]]
                    for key, values in figures.items():
                        got.setdefault(key, []).extend(values)
        finally:
            for store in stores.values():
                await store.__aexit__(None, None, None)
    finally:
        for name in names.values():
            postgres.drop(name)
    return [
        {
            "bench": "fleet_claim",
            "mode": "interleaved",
            "code": code,
            "layout": layout,
            "pending": size,
            "cycles": c.rounds,
            "batch": c.batch,
            "medians": {key: median(values) for key, values in samples[layout].items()},
            "lower_quartiles": {key: quartile(values) for key, values in samples[layout].items()},
            "minimums": {key: round(min(values), 3) for key, values in samples[layout].items()},
            "samples": samples[layout],
            "load_average": os.getloadavg(),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
        }
        for layout in layouts
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke check")
    parser.add_argument("--sizes", default="10000,1000000", help="comma-separated pending-set sizes")
    parser.add_argument("--layouts", default="single,routed", help="comma-separated subset of single, routed, limited")
    parser.add_argument("--rounds", type=int, default=1, help="A/B rounds (each measures every layout once)")
    parser.add_argument("--code", default="this tree", help="a label for the code measured (the JSON's 'code')")
    parser.add_argument("--postgres", default=os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL))
    parser.add_argument("--db-prefix", default="bench_fleet", help="names of the databases created (bench_...)")
    parser.add_argument(
        "--interleaved",
        action="store_true",
        help="fill every layout's database first, then alternate between them within each round",
    )
    parser.add_argument("--other", help="with --interleaved: also EXPLAIN the CLAIM of this _pg_claim.py file")
    args = parser.parse_args()
    if not args.db_prefix.startswith("bench_"):
        parser.error("--db-prefix must start with bench_")
    sizes = tuple(int(s) for s in args.sizes.split(",") if s)
    layouts = [layout for layout in args.layouts.split(",") if layout]
    if set(layouts) - {"single", "routed", "limited"}:
        parser.error(f"unknown layouts: {args.layouts}")
    c = Config(sizes=sizes, rounds=args.rounds)
    if args.quick:
        c = dataclasses.replace(c, sizes=(2_000,), claims=5, warmup=1, explain_runs=1, drain=200)
    postgres = Postgres(args.postgres)
    if args.interleaved:
        c = dataclasses.replace(c, claims=5, warmup=1, explain_runs=5, drain=c.drain // 8)
        other = load_statement(args.other) if args.other else None
        for size in c.sizes:
            for result in asyncio.run(interleaved(postgres, layouts, size, c, args.code, args.db_prefix, other)):
                print(json.dumps(result), flush=True)
        return
    for size in c.sizes:
        for round_ in range(c.rounds):
            for layout in layouts if round_ % 2 == 0 else reversed(layouts):
                result = asyncio.run(measure(postgres, layout, size, round_, c, args.code, args.db_prefix))
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
