"""CPU time and PostgreSQL write cost around a measured interval, for ``bench/side_by_side.py``.

Imported both by the benchmark (our virtualenv) and by ``_peer_shim.py`` inside the peers' virtualenv, so it needs
nothing but the standard library and psycopg 3, and runs on Python 3.11.

- Process CPU: ``utime + stime`` of ``/proc/<pid>/stat`` (world-readable on Linux, read while the process runs).
- Server CPU: the same for every client backend connected to the measured database, found through
  ``pg_stat_activity`` (``backend_type = 'client backend'``, the sampling connection itself excluded). A backend that
  exits between two snapshots is lost, so snapshots are taken while the measured connections are still open.
  PostgreSQL's background processes (WAL writer, checkpointer, background writer, autovacuum) are not counted.
- Write cost: ``pg_stat_user_tables`` row counters per table and summed, the index entries they imply (``(inserts +
  non-HOT updates) x indexes of the table``, an upper bound where an index is partial: PostgreSQL keeps no counter
  of index inserts) and WAL bytes from ``pg_current_wal_lsn()`` (server-wide: writes to other databases of the
  server count too).
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
#: A backend's table counters reach ``pg_stat_user_tables`` when it flushes: at the end of a transaction at most
#: once a second, at exit, or 10 s after it went idle (PostgreSQL 15's PGSTAT_IDLE_INTERVAL).
STATS_IDLE_FLUSH_S = 11.0

COUNTED = {
    "bench_cpu_s": "the benchmark process (time.process_time(): all its threads)",
    "worker_cpu_s": "worker processes, utime+stime from /proc/<pid>/stat",
    "server_cpu_s": "PostgreSQL client backends connected to the measured database (pg_stat_activity), "
    "utime+stime from /proc/<pid>/stat; background processes (WAL writer, checkpointer, autovacuum) not counted",
}

_TABLE_STATS = """
SELECT t.relname, t.n_tup_ins, t.n_tup_upd, t.n_tup_del, t.n_tup_hot_upd,
       (t.n_tup_ins + t.n_tup_upd - t.n_tup_hot_upd) * (SELECT count(*) FROM pg_index i WHERE i.indrelid = t.relid)
FROM pg_stat_user_tables t
"""
_COUNTERS = ("n_tup_ins", "n_tup_upd", "n_tup_del", "n_tup_hot_upd", "index_entries")

_BACKENDS = """
SELECT pid FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND pid <> pg_backend_pid()
"""


def process_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a running process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    # Fields 14 and 15 of proc(5) (utime, stime); the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def processes_cpu_s(pids: list[int]) -> dict[int, float]:
    found = {pid: process_cpu_s(pid) for pid in pids}
    return {pid: cpu for pid, cpu in found.items() if cpu is not None}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two per-pid readings: pids new in ``after`` count from zero."""
    return round(sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items()), 3)


class PgProbe:
    """Snapshots of one database's backends' CPU, its table counters and the server's WAL position."""

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)

    def close(self) -> None:
        self.conn.close()

    def backends(self) -> list[int]:
        return [int(row[0]) for row in self.conn.execute(_BACKENDS).fetchall()]

    def table_stats(self) -> dict[str, dict[str, int]]:
        """Per table, the row counters and the index entries they imply."""
        self.conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = self.conn.execute(_TABLE_STATS).fetchall()
        return {str(row[0]): dict(zip(_COUNTERS, (int(value) for value in row[1:]), strict=True)) for row in rows}

    def wal_lsn(self) -> int:
        row = self.conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        assert row is not None
        return int(row[0])

    def snapshot(self, *, stats: bool = True) -> dict[str, Any]:
        """The backends' CPU now (and the table counters and WAL position unless ``stats`` is off)."""
        taken: dict[str, Any] = {"server_cpu": processes_cpu_s(self.backends())}
        if stats:
            taken["wal_lsn"] = self.wal_lsn()
            taken["tables"] = self.table_stats()
        return taken

    def settle(self, table: str, min_inserts: int, limit_s: float = STATS_IDLE_FLUSH_S) -> bool:
        """Wait until ``table``'s counters show ``min_inserts`` row inserts (earlier writes flushed), at most
        ``limit_s``; False if they never did."""
        deadline = time.monotonic() + limit_s
        while self.table_stats().get(table, {}).get("n_tup_ins", 0) < min_inserts:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def wait_backends_gone(self, limit_s: float = 10.0) -> bool:
        """Until no client backend but this one is connected (they flush their counters when they exit)."""
        deadline = time.monotonic() + limit_s
        while self.backends():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True


def write_cost(before: dict[str, Any], after: dict[str, Any], commands: int) -> dict[str, Any]:
    """Per-command row versions, implied index entries and WAL bytes between two snapshots, with the per-table
    totals."""
    tables = {
        table: {name: counters[name] - before["tables"].get(table, {}).get(name, 0) for name in _COUNTERS}
        for table, counters in after["tables"].items()
    }
    tables = {table: counters for table, counters in tables.items() if any(counters.values())}
    totals = {name: sum(counters[name] for counters in tables.values()) for name in _COUNTERS}
    wal = after["wal_lsn"] - before["wal_lsn"]
    per = {name: round(value / commands, 3) for name, value in totals.items()}
    row_versions = totals["n_tup_ins"] + totals["n_tup_upd"]
    return {
        "per_command": per | {"row_versions": round(row_versions / commands, 3), "wal_bytes": round(wal / commands, 1)},
        "totals": totals | {"wal_bytes": wal},
        "per_table": tables,
        "notes": "row_versions = inserts + updates (each update writes a new row version; deletes only mark one); "
        "index_entries = (inserts + non-HOT updates) x the table's indexes, an upper bound (a partial index gets an "
        "entry only for rows its predicate matches); wal_bytes is server-wide",
    }
