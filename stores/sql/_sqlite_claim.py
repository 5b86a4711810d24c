"""The claim on SQLite: the statements that find due entries and the walk that picks a batch of them.

SQLite runs one writer at a time, so the claim is several small statements inside the write transaction (``BEGIN
IMMEDIATE`` holds the write lock from its start): picking then updating is atomic, and a limited queue's counts hold
until the claim commits. Each statement names its index: without ``ANALYZE`` statistics SQLite's planner prefers the
``(status, ...)`` indexes, which read every pending row. It lives apart from the backend (``_sqlite.py``) as
PostgreSQL's one-statement claim does (``_pg_claim.py``): the backend only passes the claim on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.entries import ScheduledCommandStatus
from stores.queues import Route

from . import _queues as queue_queries
from ._tables import ENTRIES, UtcDateTime

__all__ = ["claim"]

# SQLite's claim reads, with the index named: without ANALYZE statistics its planner picks the
# (status, ...) indexes for "status = 'PENDING'", which read every pending row. The claim walks the routed index
# (queue, command_type, priority, scheduled_for, seq) as PostgreSQL's does: distinct queues, distinct types within
# each, distinct priorities within each, one probe each, then one range scan of due entries per priority.
_ROUTED = "scheduled_commands INDEXED BY ix_scheduled_commands_routed_due"
_NEXT_QUEUE = text(f"SELECT min(queue) FROM {_ROUTED} WHERE status = 'PENDING' AND queue > :after")
_NEXT_TYPE = text(
    f"SELECT min(command_type) FROM {_ROUTED} WHERE status = 'PENDING' AND queue = :queue AND command_type > :after"
)
# The highest first, unbounded: a priority written as text (behind the library's back) sorts above every number in
# SQLite, and must be claimed (and dead-lettered as unreadable) rather than stranded.
_MAX_PRIORITY = text(
    f"SELECT max(priority) FROM {_ROUTED} WHERE status = 'PENDING' AND queue = :queue AND command_type = :type"
)
_MAX_PRIORITY_BELOW = text(
    f"SELECT max(priority) FROM {_ROUTED}"
    " WHERE status = 'PENDING' AND queue = :queue AND command_type = :type AND priority < :below"
)
_DUE_AT_PRIORITY = text(
    f"SELECT seq, priority, scheduled_for, lock FROM {_ROUTED}"
    " WHERE status = 'PENDING' AND queue = :queue AND command_type = :type AND priority = :priority"
    " AND scheduled_for <= :now"
    " AND (lock IS NULL OR lock NOT IN ("
    "  SELECT lock FROM scheduled_commands INDEXED BY ux_scheduled_commands_lock"
    "  WHERE status = 'PROCESSING' AND lock IS NOT NULL))"
    " ORDER BY scheduled_for, seq LIMIT :limit OFFSET :offset"
).bindparams(bindparam("now", type_=UtcDateTime))
_PAUSED = text("SELECT name FROM scheduled_queues WHERE paused")
#: Below every command type and queue name (names are never empty).
_BEFORE_ALL = ""


def _claim_order(row: Row[Any]) -> tuple[int, int, str, int]:
    """Priority descending, then due time, then scheduling order; a priority that is no integer (written behind the
    library's back: SQLite sorts text above numbers) first, to be dead-lettered as unreadable."""
    priority = row.priority
    if isinstance(priority, int):
        return (1, -priority, str(row.scheduled_for), row.seq)
    return (0, 0, str(row.scheduled_for), row.seq)


async def claim(
    conn: AsyncConnection,
    *,
    now: datetime,
    limit: int,
    worker_id: str,
    lease_expires_at: datetime,
    route: Route,
    limited: bool = False,
) -> Sequence[Row[Any]]:
    """``Backend.claim`` on SQLite (the backend's own): lease up to ``limit`` due PENDING entries that ``route``
    allows, in ``conn``'s write transaction, highest priority first, none of a paused queue, none whose lock is held,
    one per lock, none past its queue's limits; ``limited`` changes nothing (every claim keeps the limits)."""
    # The transaction holds SQLite's write lock, so picking then updating is atomic. Per allowed (queue, type),
    # one index range scan per distinct PENDING priority, highest first, until that route has a batch; then the
    # batch is the best ``limit`` of them, one per lock.
    # A route's candidates count once per lock (only the first of a lock can be claimed), so each route yields
    # its best ``limit`` claimable entries, and the best ``limit`` of all are among them.
    candidates: list[Row[Any]] = []
    queue_of: dict[int, str] = {}
    routes = await _routes(conn, route)
    # Limited queues: what each may start now (the write lock makes the counts hold until the claim commits).
    limits = await queue_queries.limited_queues(conn, {queue for queue, _ in routes})
    left = {name: await queue_queries.allowance(conn, name, of, now) for name, of in limits.items()}
    for queue, command_type in routes:
        if left.get(queue, limit) <= 0:
            continue
        found, offset, route_locks = 0, 0, set()
        parameters = {"queue": queue, "type": command_type, "now": now}
        priority = (await conn.execute(_MAX_PRIORITY, parameters)).scalar_one_or_none()
        while priority is not None and found < limit:
            wanted = limit - found
            page = {**parameters, "priority": priority, "limit": wanted, "offset": offset}
            rows = (await conn.execute(_DUE_AT_PRIORITY, page)).all()
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
            priority = (await conn.execute(_MAX_PRIORITY_BELOW, {**parameters, "below": priority})).scalar_one_or_none()
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
            await queue_queries.take_starts(conn, name, of.rate, taken, now)
    result = await conn.execute(
        update(ENTRIES)
        .where(ENTRIES.c.seq.in_(seqs))
        .values(
            status=ScheduledCommandStatus.PROCESSING.value,
            started_at=now,
            lease_owner=worker_id,
            lease_token=func.lower(func.hex(func.randomblob(16))),
            lease_expires_at=lease_expires_at,
        )
        .returning(*ENTRIES.c)
    )
    return list(result.all())


async def _routes(conn: AsyncConnection, route: Route) -> list[tuple[str, str]]:
    """The (queue, command type) pairs with PENDING entries that ``route`` allows, of unpaused queues."""
    paused = set((await conn.execute(_PAUSED)).scalars())
    queues, types = route.queues, route.command_types
    pairs: list[tuple[str, str]] = []
    queue = (await conn.execute(_NEXT_QUEUE, {"after": _BEFORE_ALL})).scalar_one_or_none()
    while queue is not None:
        if (queues is None or queue in queues) and queue not in paused:
            command_type = (await conn.execute(_NEXT_TYPE, {"queue": queue, "after": _BEFORE_ALL})).scalar_one_or_none()
            while command_type is not None:
                if types is None or command_type in types:
                    pairs.append((queue, command_type))
                command_type = (
                    await conn.execute(_NEXT_TYPE, {"queue": queue, "after": command_type})
                ).scalar_one_or_none()
        queue = (await conn.execute(_NEXT_QUEUE, {"after": queue})).scalar_one_or_none()
    return pairs
