"""What bounds ``schedule()`` one at a time on PostgreSQL: the same minutes, the same connection settings, one
autocommit statement at a time, measured side by side:

- ``select_1``: a round trip that writes nothing (no commit to flush).
- ``insert_minimal``: an INSERT of one integer into a table without indexes: the least a durable commit writes.
- ``ours``: the statement ``schedule()`` sends (``_INSERT_ONE_AND_NOTIFY``: the entry's INSERT and its NOTIFY),
  with the parameters the producer sends, without the scheduler's Python work.
- ``ours_without_notify``: the same INSERT alone.
- ``pgqueuer``: pgqueuer's single enqueue statement (its own SQL, read from the installed pgqueuer in the peers'
  virtualenv: the job INSERT, its log-table INSERT, and its statement trigger's NOTIFY), on its own tables.

Each prints one JSON line: statements per second, the server backend's CPU per statement (``/proc`` of the
connection's backend), and the WAL the statement itself writes (``EXPLAIN (ANALYZE, WAL)`` of one more execution,
rolled back, median of 5 after the timed runs: records, full-page images and bytes of its table writes, summed over its
ModifyTable nodes; without the commit record). ``synchronous_commit`` is left as the
server has it (``on``); the line says which it was. A last line compares each to ``insert_minimal``.

Run with ``.venv/bin/python bench/commit_flush.py --peers DIR [--n 1000] [--rounds 3]``; DIR is a copy of the peers'
harness with its virtualenv (for pgqueuer's SQL). Creates the database ``bench_commit_flush_<pid>`` and drops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from _meter import process_cpu_s
from scheduler_sql import DEFAULT_POSTGRES_URL, POSTGRES_ENV

from scheduling import ScheduleOptions
from scheduling._new_entry import new_entry
from stores import SqlStore
from stores.sql._pg_new_rows import _INSERT_ONE_AND_NOTIFY, _insert_parameters
from stores.sql._postgresql import NOTIFY_CHANNEL

_PGQUEUER_SQL = """
import json
from pgqueuer.adapters.persistence.qb import QueryBuilderEnvironment, QueryQueueBuilder
print(json.dumps({"install": QueryBuilderEnvironment().build_install_query(),
                  "enqueue": QueryQueueBuilder().build_enqueue_query()}))
"""

_WAL_FIELDS = ("WAL Records", "WAL FPI", "WAL Bytes")


def emit(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


def pgqueuer_sql(peers: Path) -> dict[str, str]:
    out = subprocess.run(
        [str(peers / ".venv" / "bin" / "python"), "-c", _PGQUEUER_SQL], check=True, capture_output=True, timeout=60
    )
    return dict(json.loads(out.stdout))


def our_statements() -> tuple[str, str]:
    """Our INSERT ... NOTIFY, and the INSERT alone."""
    insert_only = _INSERT_ONE_AND_NOTIFY.removeprefix("WITH inserted AS (").rsplit(") SELECT pg_notify", 1)[0]
    return _INSERT_ONE_AND_NOTIFY, insert_only


def our_params(with_notify: bool) -> list[Any]:
    now = datetime.now(UTC)
    entry = new_entry(
        "bench.Noop", '{"n":1}', ScheduleOptions(), scheduled_for=now, expires_at=None, now=now, default_max_retries=3
    )
    columns = _insert_parameters([entry])
    return [*columns, NOTIFY_CHANNEL, str(now.timestamp())] if with_notify else columns


def pgqueuer_params() -> list[Any]:
    return [[0], ["noop"], [b"1"], [timedelta(0)], [None], [None]]


class Workload:
    def __init__(self, name: str, statement: str, params: Any, raw: bool) -> None:
        self.name = name
        self.statement = statement
        self.params = params  # a callable giving one execution's parameters, or None
        self.raw = raw  # $n placeholders (pgqueuer's SQL), sent through a RawCursor


def run(conn: psycopg.Connection[Any], backend_pid: int, workload: Workload, n: int) -> dict[str, Any]:
    cursor: Any = psycopg.RawCursor(conn) if workload.raw else conn.cursor()
    params = [workload.params() if workload.params else None for _ in range(n + 1)]
    cursor.execute(workload.statement, params[n], prepare=True)  # prepared before the clock starts
    cpu_before = process_cpu_s(backend_pid) or 0.0
    start = time.perf_counter()
    for i in range(n):
        cursor.execute(workload.statement, params[i], prepare=True)
    elapsed = time.perf_counter() - start
    server = (process_cpu_s(backend_pid) or 0.0) - cpu_before
    return {"per_s": round(n / elapsed, 1), "server_us_per_statement": round(server / n * 1e6, 1)}


def wal_of(conn: psycopg.Connection[Any], workload: Workload) -> dict[str, Any]:
    """The WAL one more execution writes, from EXPLAIN (ANALYZE, WAL), rolled back."""
    cursor: Any = psycopg.RawCursor(conn) if workload.raw else conn.cursor()
    conn.execute("BEGIN")
    try:
        cursor.execute(
            f"EXPLAIN (ANALYZE, WAL, FORMAT JSON) {workload.statement}",
            workload.params() if workload.params else None,
        )
        plan = cursor.fetchone()[0][0]["Plan"]
    finally:
        conn.execute("ROLLBACK")
    return {field.lower().replace(" ", "_"): _sum_plan(plan, field) for field in _WAL_FIELDS}


def _sum_plan(plan: dict[str, Any], field: str) -> int:
    """The WAL of the statement's table writes: the sum over its ModifyTable nodes (each counts its own input, such
    as a ``nextval``; a data-modifying WITH is an InitPlan whose WAL the top node does not count)."""
    own = int(plan.get(field, 0)) if plan["Node Type"] == "ModifyTable" else 0
    return own + sum(_sum_plan(child, field) for child in plan.get("Plans", []))


async def prepare_schema(url: str) -> None:
    async with SqlStore(url):  # creates our tables and indexes
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peers", type=Path, required=True)
    parser.add_argument("--n", type=int, default=1000, help="statements per workload per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    url = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL).replace("postgresql+psycopg://", "postgresql://")
    server = url.rsplit("/", 1)[0]  # without the database
    database = f"bench_commit_flush_{os.getpid()}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {database}")
    try:
        dsn = f"{server}/{database}"
        asyncio.run(prepare_schema(dsn.replace("postgresql://", "postgresql+psycopg://")))
        pgq = pgqueuer_sql(args.peers)
        ours, ours_insert = our_statements()
        workloads = [
            Workload("select_1", "SELECT 1", None, raw=False),
            Workload("insert_minimal", "INSERT INTO flush_minimal VALUES (1)", None, raw=False),
            Workload("ours", ours, lambda: our_params(True), raw=False),
            Workload("ours_without_notify", ours_insert, lambda: our_params(False), raw=False),
            Workload("pgqueuer", pgq["enqueue"], pgqueuer_params, raw=True),
        ]
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(pgq["install"])
            conn.execute("CREATE TABLE flush_minimal (v integer)")
            backend_pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
            sync_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
            indexes = dict(
                conn.execute(
                    "SELECT c.relname, count(i.indexrelid) FROM pg_class c LEFT JOIN pg_index i ON i.indrelid = c.oid "
                    "WHERE c.relname IN ('scheduled_commands', 'pgqueuer', 'pgqueuer_log', 'flush_minimal') "
                    "GROUP BY c.relname"
                ).fetchall()
            )
            results: dict[str, list[dict[str, Any]]] = {w.name: [] for w in workloads}
            for round_ in range(1, args.rounds + 1):
                order = workloads[round_ - 1 :] + workloads[: round_ - 1]  # rotated: drift spreads over all
                for workload in order:
                    line = run(conn, backend_pid, workload, args.n)
                    results[workload.name].append(line)
                    load = round(os.getloadavg()[0], 1)
                    emit(
                        {"bench": "commit_flush", "round": round_, "workload": workload.name, "n": args.n}
                        | line
                        | {"load_1m": load, "synchronous_commit": sync_commit}
                    )
            # Median of 5: a first write to a page after a checkpoint adds a full-page image to one of them.
            wal = {
                w.name: {
                    field: statistics.median(run[field] for run in (wal_of(conn, w) for _ in range(5)))
                    for field in ("wal_records", "wal_fpi", "wal_bytes")
                }
                for w in workloads
            }
        summary: dict[str, Any] = {}
        minimal = statistics.median(r["per_s"] for r in results["insert_minimal"])
        for name, lines in results.items():
            rate = statistics.median(r["per_s"] for r in lines)
            summary[name] = {
                "per_s": rate,
                "of_insert_minimal": round(rate / minimal, 3),
                "server_us_per_statement": statistics.median(r["server_us_per_statement"] for r in lines),
                "wal": wal[name],
            }
        emit(
            {
                "bench": "commit_flush_summary",
                "n": args.n,
                "rounds": args.rounds,
                "synchronous_commit": sync_commit,
                "indexes": indexes,
                "workloads": summary,
            }
        )
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


if __name__ == "__main__":
    main()
