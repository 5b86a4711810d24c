"""What one command writes on PostgreSQL, per stage, read from the WAL itself: ours (with the indexes of schema
version 12, and of version 11 for comparison, in the same run) beside pgqueuer's.

PostgreSQL keeps no counter of index entries inserted (``pg_stat_user_indexes`` counts scans, and an index's tuple
count shrinks again through deduplication and bottom-up deletion), so this reads every WAL record of the measured
database between two ``pg_current_wal_flush_lsn()`` positions with ``pg_walinspect`` (``pg_get_wal_records_info``) and
attributes each to the relation of its first block reference (by relfilenode; records of other databases of the
shared server are left out). Per command:

- ``row_versions``: heap INSERT, UPDATE and HOT_UPDATE records (and the tuples of MULTI_INSERT): every version of a
  row written; ``hot`` of them HOT (no index entry); ``deletes``; ``locks`` (row locks, e.g. ``FOR UPDATE``);
- ``index_entries``: B-tree leaf inserts (INSERT_LEAF, INSERT_POST, and leaf page splits, which carry the new
  item) and GIN inserts (pending-list appends and entry-tree inserts), also per index in ``per_index``;
- ``wal_bytes``: the length of those records (full-page images included) plus the commit records of their
  transactions; ``wal_fpi_bytes`` of them full-page images (they depend on checkpoint timing: noisy).

Stages, ours: ``schedule`` (one ``add()`` of one entry at a time, what ``schedule()`` sends), ``claim``
(``claim_due(limit=10)``, the default concurrency), ``complete`` (``complete()`` one at a time, with its attempt
record). pgqueuer: ``enqueue`` (its single enqueue, one at a time), ``drain`` (``QueueManager.run()`` with its
defaults: dequeue, then its completion, which deletes the job and logs it, buffered).

Run with ``.venv/bin/python bench/write_amplification.py [--n 1000] [--peers DIR]``; DIR is a copy of the peers'
harness with a virtualenv holding pgqueuer (without it, only our lines). Prints one JSON line per system and
schema. Creates the databases ``bench_indexes_wa_<pid>_*`` and drops them; autovacuum is off on the measured tables
(a vacuum's records would land in a stage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from scheduler_sql import DEFAULT_POSTGRES_URL, POSTGRES_ENV
from sqlalchemy.engine import make_url

from scheduling import ScheduleOptions
from scheduling._new_entry import new_entry
from stores import SqlStore
from stores.entries import AttemptRecord, ScheduledCommandEntry

#: The indexes of schema version 11 that version 12 replaced (see stores/sql/_lean_indexes.py), without the
#: trigram index (``pg_trgm`` is not installed here).
_VERSION_11 = (
    "DROP INDEX ux_scheduled_commands_id",
    "DROP INDEX ix_scheduled_commands_finished_at",
    "ALTER TABLE scheduled_commands ADD UNIQUE (id)",
    "CREATE INDEX ix_scheduled_commands_finished ON scheduled_commands (status, completed_at)",
    "CREATE INDEX ix_scheduled_commands_id_pattern ON scheduled_commands (id text_pattern_ops)",
)

_PGQUEUER = """
import asyncio, sys
import asyncpg
from pgqueuer import QueueManager
from pgqueuer.queries import Queries

async def main(dsn, stage, n):
    conn = await asyncpg.connect(dsn)
    q = Queries.from_asyncpg_connection(conn)
    if stage == "install":
        await q.install()
    elif stage == "enqueue":
        for i in range(n):
            await q.enqueue("noop", str(i).encode())
    else:
        done = asyncio.Event()
        count = 0
        qm = QueueManager(q)

        @qm.entrypoint("noop")
        async def noop(job):
            nonlocal count
            count += 1
            if count >= n:
                done.set()

        worker = asyncio.create_task(qm.run())
        await asyncio.wait_for(done.wait(), 120)
        other = await asyncpg.connect(dsn)
        for _ in range(1200):
            if await other.fetchval("SELECT count(*) FROM pgqueuer") == 0:
                break
            await asyncio.sleep(0.05)
        qm.shutdown.set()
        await asyncio.wait_for(worker, 30)
        await other.close()
    await conn.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""

_BLOCK = re.compile(r"rel \d+/(\d+)/(\d+)")
_NTUPLES = re.compile(r"ntuples: (\d+)")
_ROW_VERSIONS = {"INSERT", "INSERT+INIT", "UPDATE", "UPDATE+INIT", "HOT_UPDATE", "HOT_UPDATE+INIT"}
_BTREE_INSERTS = {"INSERT_LEAF", "INSERT_POST"}
_WAL_RECORDS = """
SELECT resource_manager, record_type, record_length, fpi_length, description, block_ref, xid
FROM pg_get_wal_records_info(%s::pg_lsn, %s::pg_lsn)
"""


def emit(document: dict[str, Any]) -> None:
    print(json.dumps(document), flush=True)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class Wal:
    """The WAL records of one database between two positions, attributed to its relations."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        row = self.conn.execute("SELECT oid FROM pg_database WHERE datname = current_database()").fetchone()
        assert row is not None
        self.database = str(row[0])

    def lsn(self) -> str:
        row = self.conn.execute("SELECT pg_current_wal_flush_lsn()::text").fetchone()
        assert row is not None
        return str(row[0])

    def relations(self) -> dict[str, str]:
        rows = self.conn.execute(
            "SELECT pg_relation_filenode(oid)::text, relname FROM pg_class WHERE pg_relation_filenode(oid) IS NOT NULL"
        ).fetchall()
        return {str(node): str(name) for node, name in rows}

    def start(self) -> None:
        """Begin a stage: from the current WAL position."""
        self.names = self.relations()
        self.position = self.lsn()
        self.counts: Counter[str] = Counter()
        self.per_index: Counter[str] = Counter()
        self.xids: set[int] = set()
        self.commits: list[tuple[int, int]] = []

    def read(self) -> None:
        """Read the records written since the last read (often: the shared server's other writers make the server
        recycle WAL segments within minutes)."""
        end = self.lsn()
        if end == self.position:
            return
        names, counts, per_index = self.names, self.counts, self.per_index
        xids, commits = self.xids, self.commits
        records = self.conn.execute(_WAL_RECORDS, (self.position, end)).fetchall()
        self.position = end
        for manager, kind, length, fpi, description, blocks, xid in records:
            if manager == "Transaction" and kind.startswith("COMMIT"):
                commits.append((int(xid), int(length)))
                continue
            found = _BLOCK.search(blocks or "")
            if found is None or found.group(1) != self.database:
                continue
            xids.add(int(xid))
            relation = names.get(found.group(2), f"relfilenode {found.group(2)}")
            counts["wal_bytes"] += int(length)
            counts["wal_fpi_bytes"] += int(fpi)
            if manager == "Heap":
                if kind in _ROW_VERSIONS:
                    counts["row_versions"] += 1
                    counts["hot"] += kind.startswith("HOT_UPDATE")
                counts["deletes"] += kind == "DELETE"
                counts["locks"] += kind == "LOCK"
            elif manager == "Heap2" and kind.startswith("MULTI_INSERT"):
                tuples = _NTUPLES.search(description or "")
                counts["row_versions"] += int(tuples.group(1)) if tuples else 1
            elif (
                manager == "Btree"
                and (kind in _BTREE_INSERTS or (kind.startswith("SPLIT_") and "level: 0" in (description or "")))
            ) or (manager == "Gin" and kind in {"INSERT", "UPDATE_META_PAGE"}):
                counts["index_entries"] += 1
                per_index[relation] += 1

    def cost(self, commands: int) -> dict[str, Any]:
        """The stage's writes per command, up to now."""
        self.read()
        counts, per_index = Counter(self.counts), self.per_index
        counts["wal_bytes"] += sum(length for xid, length in self.commits if xid in self.xids)
        counts["transactions"] = sum(1 for xid, _ in self.commits if xid in self.xids)
        return {
            "per_command": {name: round(value / commands, 2) for name, value in sorted(counts.items())},
            "per_index": {name: round(value / commands, 2) for name, value in sorted(per_index.items())},
        }


def database(base: str, name: str) -> str:
    with psycopg.connect(libpq(base), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def drop(base: str, name: str) -> None:
    with psycopg.connect(libpq(base), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def no_autovacuum(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for (table,) in conn.execute("SELECT relname FROM pg_stat_user_tables").fetchall():
            conn.execute(f'ALTER TABLE "{table}" SET (autovacuum_enabled = false)')


def total(stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    summed: defaultdict[str, float] = defaultdict(float)
    indexes: defaultdict[str, float] = defaultdict(float)
    for stage in stages.values():
        for name, value in stage["per_command"].items():
            summed[name] += value
        for name, value in stage["per_index"].items():
            indexes[name] += value
    return {
        "per_command": {name: round(value, 2) for name, value in sorted(summed.items())},
        "per_index": {name: round(value, 2) for name, value in sorted(indexes.items())},
    }


async def ours(base: str, n: int, schema: str) -> dict[str, Any]:
    name = f"bench_indexes_wa_{os.getpid()}_{schema}"
    url = database(base, name)
    try:
        dsn = libpq(url)
        stages: dict[str, dict[str, Any]] = {}
        async with SqlStore(url) as store:
            await store.open()
            if schema == "v11":  # once open (opening creates every index of this version that is missing)
                with psycopg.connect(dsn, autocommit=True) as conn:
                    for statement in _VERSION_11:
                        conn.execute(statement)
            no_autovacuum(dsn)
            wal = Wal(dsn)
            now = datetime.now(UTC)
            wal.start()
            for number in range(n):
                entry = new_entry(
                    "bench.Noop",
                    '{"n":1}',
                    ScheduleOptions(),
                    scheduled_for=now,
                    expires_at=None,
                    now=now,
                    default_max_retries=3,
                )
                await store.add([entry])
                if number % 50 == 49:
                    wal.read()
            stages["schedule"] = wal.cost(n)
            wal.start()
            claimed: list[ScheduledCommandEntry] = []
            while len(claimed) < n:
                got = await store.claim_due(
                    now=now + timedelta(seconds=1), limit=10, worker_id="w", lease_duration=timedelta(minutes=5)
                )
                assert got, "nothing left to claim"
                claimed.extend(got)
                if len(claimed) % 50 == 0:
                    wal.read()
            stages["claim"] = wal.cost(n)
            wal.start()
            for number, entry in enumerate(claimed):
                assert entry.lease_token is not None
                attempt = AttemptRecord(
                    attempt=1,
                    worker_id="w",
                    started_at=now,
                    finished_at=now + timedelta(seconds=2),
                    outcome="completed",
                )
                assert await store.complete(entry.id, entry.lease_token, result_payload=None, attempt=attempt)
                if number % 50 == 49:
                    wal.read()
            stages["complete"] = wal.cost(n)
        wal.conn.close()
        return {"system": "ours", "indexes": schema, "n": n, "total": total(stages), "stages": stages}
    finally:
        drop(base, name)


def pgqueuer(base: str, n: int, peers: Path) -> dict[str, Any]:
    name = f"bench_indexes_wa_{os.getpid()}_pgqueuer"
    url = database(base, name)
    dsn = libpq(url)
    python = str(peers / ".venv" / "bin" / "python")

    def run(stage: str, wal: Wal | None = None) -> None:
        process = subprocess.Popen([python, "-c", _PGQUEUER, dsn, stage, str(n)])
        deadline = time.monotonic() + 300
        while process.poll() is None:
            if time.monotonic() > deadline:
                process.kill()
            if wal is not None:
                wal.read()
            time.sleep(0.2)
        if process.wait() != 0:
            raise RuntimeError(f"pgqueuer's {stage} failed with exit status {process.returncode}")

    try:
        run("install")
        no_autovacuum(dsn)
        wal = Wal(dsn)
        stages: dict[str, dict[str, Any]] = {}
        for stage in ("enqueue", "drain"):
            wal.start()
            run(stage, wal)
            stages[stage] = wal.cost(n)
        wal.conn.close()
        return {"system": "pgqueuer", "n": n, "total": total(stages), "stages": stages}
    finally:
        drop(base, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="commands per system (default 1000)")
    parser.add_argument("--peers", type=Path, help="a copy of the peers' harness with a virtualenv holding pgqueuer")
    args = parser.parse_args()
    if not 1 <= args.n <= 100_000:
        parser.error(f"--n must be between 1 and 100000, not {args.n}")
    base = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES_URL)
    with psycopg.connect(libpq(base), autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
    assert row is not None
    for schema in ("v11", "v12"):
        emit({"bench": "write_amplification", "server": row[0]} | asyncio.run(ours(base, args.n, schema)))
    if args.peers is not None:
        emit({"bench": "write_amplification", "server": row[0]} | pgqueuer(base, args.n, args.peers))


if __name__ == "__main__":
    main()
