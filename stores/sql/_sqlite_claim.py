"""The claim on SQLite: the statements that find due entries and the walk that picks a batch of them.

SQLite runs one writer at a time, so the claim is several small statements inside the write transaction (``BEGIN
IMMEDIATE`` holds the write lock from its start): picking then updating is atomic, and a limited queue's counts hold
until the claim commits. Each statement names its index: without ``ANALYZE`` statistics SQLite's planner prefers the
``(status, ...)`` indexes, which read every pending row. It lives apart from the backend (``_sqlite.py``) as
PostgreSQL's one-statement claim does (``_pg_claim.py``): the backend only passes the claim on.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection

from stores.queues import Route

from . import _queues as queue_queries
from ._pg_worker import Record
from ._sqlite_driver import Binder, DriverCalls, RowReader
from ._tables import ENTRIES, UtcDateTime

__all__ = ["claim"]

# SQLite's claim reads, with the index named: without ANALYZE statistics its planner picks the
# (status, ...) indexes for "status = 'PENDING'", which read every pending row. The claim walks the routed index
# (queue, command_type, priority, scheduled_for, seq) as PostgreSQL's does: distinct queues, distinct types within
# each, distinct priorities within each, one probe each, then one range scan of due entries per priority.
_ROUTED = "scheduled_commands INDEXED BY ix_scheduled_commands_routed_due"
_NEXT_QUEUE = f"SELECT min(queue) FROM {_ROUTED} WHERE status = 'PENDING' AND queue > :after"
_NEXT_TYPE = (
    f"SELECT min(command_type) FROM {_ROUTED} WHERE status = 'PENDING' AND queue = :queue AND command_type > :after"
)
# The highest first, unbounded: a priority written as text (behind the library's back) sorts above every number in
# SQLite, and must be claimed (and dead-lettered as unreadable) rather than stranded.
_MAX_PRIORITY = (
    f"SELECT max(priority) FROM {_ROUTED} WHERE status = 'PENDING' AND queue = :queue AND command_type = :type"
)
_MAX_PRIORITY_BELOW = (
    f"SELECT max(priority) FROM {_ROUTED}"
    " WHERE status = 'PENDING' AND queue = :queue AND command_type = :type AND priority < :below"
)
_DUE_AT_PRIORITY = (
    f"SELECT seq, priority, scheduled_for, lock FROM {_ROUTED}"
    " WHERE status = 'PENDING' AND queue = :queue AND command_type = :type AND priority = :priority"
    " AND scheduled_for <= :now"
    " AND (lock IS NULL OR lock NOT IN ("
    "  SELECT lock FROM scheduled_commands INDEXED BY ux_scheduled_commands_lock"
    "  WHERE status = 'PROCESSING' AND lock IS NOT NULL))"
    " ORDER BY scheduled_for, seq LIMIT :limit OFFSET :offset"
)
#: The queues that are paused or limited (the others have no row, or one that says neither). ``paused`` as SQLite
#: reads it as a condition, as ``WHERE paused`` does (a value written behind the library's back, such as the text
#: 'false', is false there; Python would call it true).
_QUEUE_ROWS = (
    "SELECT name, CASE WHEN paused THEN 1 ELSE 0 END, max_running, rate_count, rate_per_us FROM scheduled_queues"
    " WHERE paused OR max_running IS NOT NULL OR rate_count IS NOT NULL"
)
#: Below every command type and queue name (names are never empty).
_BEFORE_ALL = ""

#: The claimed entries, leased under a new token each, and all their columns.
_RETURNING = ", ".join(f'"{column.name}"' for column in ENTRIES.c)


@functools.lru_cache(maxsize=64)
def _lease_statement(count: int) -> str:
    seqs = ", ".join(f":seq_{i}" for i in range(count))
    return (
        "UPDATE scheduled_commands SET status = 'PROCESSING', started_at = :claimed_at, lease_owner = :owner,"
        " lease_token = lower(hex(randomblob(16))), lease_expires_at = :expires"
        f" WHERE seq IN ({seqs}) RETURNING {_RETURNING}"
    )


_READ_ENTRY = RowReader(list(ENTRIES.c))
_DATETIME = Binder(UtcDateTime())


class _Candidate(NamedTuple):
    seq: int
    priority: Any  # an integer, unless written behind the library's back
    scheduled_for: Any  # its text, as stored
    lock: Any


def _one(calls: DriverCalls, statement: str, parameters: dict[str, Any]) -> Any:
    rows = calls.fetch(statement, parameters)
    return rows[0][0] if rows else None


def _claim_order(row: _Candidate) -> tuple[int, int, str, int]:
    """Priority descending, then due time, then scheduling order; a priority that is no integer (written behind the
    library's back: SQLite sorts text above numbers) first, to be dead-lettered as unreadable."""
    priority = row.priority
    if isinstance(priority, int):
        return (1, -priority, str(row.scheduled_for), row.seq)
    return (0, 0, str(row.scheduled_for), row.seq)


def claim(
    conn: Connection,
    *,
    now: datetime,
    limit: int,
    worker_id: str,
    lease_expires_at: datetime,
    route: Route,
    limited: bool = False,
) -> list[Record]:
    """``Backend.claim`` on SQLite (the backend's own): lease up to ``limit`` due PENDING entries that ``route``
    allows, in ``conn``'s write transaction, highest priority first, none of a paused queue, none whose lock is held,
    one per lock, none past its queue's limits; ``limited`` changes nothing (every claim keeps the limits).

    Synchronous: the worker's claim runs whole on the backend's own thread and connection (one hop from the event
    loop, ``_sqlite_direct.py``); on an engine the caller built it runs through ``AsyncConnection.run_sync``."""
    # The transaction holds SQLite's write lock, so picking then updating is atomic. Per allowed (queue, type),
    # one index range scan per distinct PENDING priority, highest first, until that route has a batch; then the
    # batch is the best ``limit`` of them, one per lock.
    # A route's candidates count once per lock (only the first of a lock can be claimed), so each route yields
    # its best ``limit`` claimable entries, and the best ``limit`` of all are among them.
    # The walk's reads compare values as SQLite stores them: no conversion but the due time's, to its stored text.
    calls = DriverCalls(conn)
    candidates: list[_Candidate] = []
    queue_of: dict[int, str] = {}
    queue_rows = calls.fetch(_QUEUE_ROWS, {})
    routes = _routes(calls, route, paused={row[0] for row in queue_rows if row[1]})
    # Limited queues: what each may start now (the write lock makes the counts hold until the claim commits).
    routed = {queue for queue, _ in routes}
    limits = {
        name: queue_queries.limits_of(max_running, rate_count, rate_per_us)
        for name, _, max_running, rate_count, rate_per_us in queue_rows
        if name in routed and (max_running is not None or rate_count is not None)
    }
    left = {name: queue_queries.allowance(conn, name, of, now) for name, of in limits.items()}
    now_text = _DATETIME(calls.dialect, now)
    for queue, command_type in routes:
        if left.get(queue, limit) <= 0:
            continue
        found, offset, route_locks = 0, 0, set()
        parameters = {"queue": queue, "type": command_type, "now": now_text}
        priority = _one(calls, _MAX_PRIORITY, parameters)
        while priority is not None and found < limit:
            wanted = limit - found
            page = {**parameters, "priority": priority, "limit": wanted, "offset": offset}
            rows = [_Candidate(*row) for row in calls.fetch(_DUE_AT_PRIORITY, page)]
            candidates.extend(rows)
            queue_of.update((row.seq, queue) for row in rows)
            for row in rows:
                if row.lock is None or row.lock not in route_locks:
                    found += 1
                    route_locks.add(row.lock)
            if len(rows) == wanted:  # more may wait at this priority
                offset += wanted
                continue
            offset = 0
            priority = _one(calls, _MAX_PRIORITY_BELOW, {**parameters, "below": priority})
    candidates.sort(key=_claim_order)
    seqs: list[int] = []
    locks: set[str] = set()
    for row in candidates:
        if row.lock is not None and row.lock in locks:
            continue
        queue = queue_of[row.seq]
        if queue in left:
            if left[queue] <= 0:
                continue
            left[queue] -= 1
        if row.lock is not None:
            locks.add(row.lock)
        seqs.append(row.seq)
        if len(seqs) == limit:
            break
    if not seqs:
        return []
    for name, of in limits.items():
        taken = sum(1 for seq in seqs if queue_of[seq] == name)
        if of.rate is not None and taken:
            queue_queries.take_starts(conn, name, of.rate, taken, now)
    lease = {
        "claimed_at": _DATETIME(calls.dialect, now),
        "owner": worker_id,
        "expires": _DATETIME(calls.dialect, lease_expires_at),
        **{f"seq_{i}": seq for i, seq in enumerate(seqs)},
    }
    return _READ_ENTRY(calls.dialect, calls.fetch(_lease_statement(len(seqs)), lease))


def _routes(calls: DriverCalls, route: Route, *, paused: set[Any]) -> list[tuple[str, str]]:
    """The (queue, command type) pairs with PENDING entries that ``route`` allows, of unpaused queues."""
    queues, types = route.queues, route.command_types
    pairs: list[tuple[str, str]] = []
    queue = _one(calls, _NEXT_QUEUE, {"after": _BEFORE_ALL})
    while queue is not None:
        if (queues is None or queue in queues) and queue not in paused:
            command_type = _one(calls, _NEXT_TYPE, {"queue": queue, "after": _BEFORE_ALL})
            while command_type is not None:
                if types is None or command_type in types:
                    pairs.append((queue, command_type))
                command_type = _one(calls, _NEXT_TYPE, {"queue": queue, "after": command_type})
        queue = _one(calls, _NEXT_QUEUE, {"after": queue})
    return pairs
