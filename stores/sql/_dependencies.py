"""The SQL of dependencies (``ScheduleOptions.after``, groups), the same on both backends; the rule they apply is
``stores/dependencies.py``'s.

Race-freedom on PostgreSQL (READ COMMITTED): adding a dependant first sets ``has_dependants`` on its parents with an
``UPDATE ... RETURNING status``, which takes their row locks. A parent's outcome either committed before (the
UPDATE waits for it and returns the outcome, so the dependant is resolved at insert) or comes after: the batched
outcome statement leaves rows with ``has_dependants`` out (re-checked on the locked row's newest version); the store
ends those that complete in one statement that also releases their dependants, and that ends only rows its snapshot
saw at their newest version (``_pg_finish.py``), and the others in a transaction of their own whose later statements
(``resolve``) see every committed pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, case, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.dependencies import Dependency, UnknownParentError, cancel_reason, parent_meets
from stores.entries import TERMINAL_STATUSES, ScheduledCommandEntry, ScheduledCommandStatus

from ._backend import CHANGED_COLUMNS, Backend
from ._postgresql import FINISHED_CHANNEL, FINISHED_PER_NOTIFY, NOTIFY_CHANNEL
from ._rows import entry_to_row, readable
from ._sessions import AsyncExecutor
from ._tables import DEPENDENCIES, ENTRIES, UtcDateTime

__all__ = ["Resolution", "add_dependants", "children_of", "parents_of", "resolve"]

WAITING = ScheduledCommandStatus.WAITING.value
PENDING = ScheduledCommandStatus.PENDING.value
CANCELLED = ScheduledCommandStatus.CANCELLED.value
#: Ids per ``IN (...)`` (SQLite's parameter limit is far above; PostgreSQL's planner likes short lists).
_CHUNK = 500


@dataclass
class Resolution:
    """What parents' outcomes did to their dependants: made PENDING (their due times), or CANCELLED (their ids, and
    the entries as the same transaction left them, for the store's ``DependantsCancelledListener``)."""

    released: list[tuple[str, datetime]] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    cancelled_entries: list[ScheduledCommandEntry] = field(default_factory=list)

    def extend(self, other: Resolution) -> None:
        self.released += other.released
        self.cancelled += other.cancelled
        self.cancelled_entries += other.cancelled_entries


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[start : start + _CHUNK]) for start in range(0, len(ids), _CHUNK)]


async def add_dependants(
    conn: AsyncConnection,
    backend: Backend,
    entries: Sequence[ScheduledCommandEntry],
    after: Mapping[str, Dependency],
    shown_url: str,
) -> Resolution:
    """Insert ``entries`` (the dependants among them WAITING, PENDING or CANCELLED by their parents' statuses now)
    and their pairs, in ``conn``'s transaction; see ``ScheduledCommandStore.add_dependants``."""
    batch_status: dict[str, str] = {}
    for entry in entries:
        if entry.idempotency_key is not None:
            raise ValueError(f"entry {entry.id} has an idempotency key; a dependant cannot have one")
        if entry.id in batch_status:
            raise ValueError(f"the id {entry.id!r} appears twice in the batch")
        batch_status[entry.id] = ""
    wanted = {parent for dependency in after.values() for parent in dependency.parents}
    outside = sorted(wanted - set(batch_status))
    held: dict[str, str] = {}
    for chunk in _chunks(outside):  # the parents' row locks: see the module docstring
        statement = (
            update(ENTRIES)
            .where(ENTRIES.c.id.in_(chunk))
            .values(has_dependants=True)
            .returning(ENTRIES.c.id, ENTRIES.c.status)
        )
        held.update((str(row.id), str(row.status)) for row in await conn.execute(statement))
    for parent in outside:
        if parent not in held:
            raise UnknownParentError(parent, shown_url)
    plain = [entry for entry in entries if entry.id not in after]
    if plain:
        await backend.insert_new(AsyncExecutor(conn), plain)
    inside = sorted(wanted & {entry.id for entry in plain})  # parents among the dependants: set at their insert
    for chunk in _chunks(inside):
        await conn.execute(update(ENTRIES).where(ENTRIES.c.id.in_(chunk)).values(has_dependants=True))
    status_of = dict(held)
    status_of.update((entry.id, PENDING) for entry in plain)
    rows: list[dict[str, Any]] = []
    pairs: list[dict[str, Any]] = []
    resolution = Resolution()
    for entry in entries:
        dependency = after.get(entry.id)
        if dependency is None:
            continue
        pending, reason = 0, None
        for parent in dependency.parents:
            if parent not in status_of:
                raise ValueError(f"entry {entry.id} names {parent} as a parent before it is placed")
            met = parent_meets(ScheduledCommandStatus(status_of[parent]), on_success_only=dependency.on_success_only)
            if met is None:
                pending += 1
            elif not met and reason is None:
                reason = cancel_reason(parent, status_of[parent])
            pairs.append(
                {
                    "parent_id": parent,
                    "child_id": entry.id,
                    "on_success_only": dependency.on_success_only,
                    "resolved": met is not None,
                }
            )
        row = entry_to_row(entry) | {"pending_parents": 0, "has_dependants": entry.id in wanted}
        if reason is not None:
            row.update(status=CANCELLED, completed_at=entry.created_at, error_message=reason)
            resolution.cancelled.append(entry.id)
        elif pending:
            row.update(status=WAITING, pending_parents=pending)
        else:
            resolution.released.append((entry.id, entry.scheduled_for))
        status_of[entry.id] = row["status"]
        rows.append(row)
    await conn.execute(insert(ENTRIES), rows)
    await conn.execute(insert(DEPENDENCIES), pairs)
    await _tell(conn, backend, resolution)
    await _read_cancelled(conn, resolution)
    return resolution


async def resolve(conn: AsyncConnection, backend: Backend, finished: Sequence[tuple[str, str, datetime]]) -> Resolution:
    """Count the outcomes ``(id, status, at)`` of parents that reached a terminal status for their WAITING
    dependants, in ``conn``'s transaction: one fewer pending parent (PENDING at zero), or CANCELLED with the reason
    (then their own dependants, in turn). Each pair counts once. Wakes workers and waiters at commit."""
    resolution = Resolution()
    frontier = {entry_id: (status, at) for entry_id, status, at in finished if status in _TERMINAL}
    if backend.name == "postgresql":
        while frontier:  # one statement per round; another round only for cancelled dependants that have their own
            changed = (await conn.execute(_RESOLVE_ROUND_PG, _round_parameters(frontier))).all()
            resolution.released += [(str(row.id), row.scheduled_for) for row in changed if row.status == PENDING]
            cancelled = [row for row in changed if row.status == CANCELLED]
            resolution.cancelled += [str(row.id) for row in cancelled]
            frontier = {str(row.id): (CANCELLED, row.completed_at) for row in cancelled if row.has_dependants}
        await _read_cancelled(conn, resolution)
        return resolution
    while frontier:
        pairs: list[Any] = []
        for chunk in _chunks(sorted(frontier)):
            statement = (
                update(DEPENDENCIES)
                .where(DEPENDENCIES.c.parent_id.in_(chunk), DEPENDENCIES.c.resolved.is_(False))
                .values(resolved=True)
                .returning(DEPENDENCIES.c.parent_id, DEPENDENCIES.c.child_id, DEPENDENCIES.c.on_success_only)
            )
            pairs += (await conn.execute(statement)).all()
        doomed: dict[str, tuple[str, datetime]] = {}
        counted: dict[str, int] = {}
        for parent_id, child_id, on_success_only in sorted(pairs, key=lambda pair: (pair[1], pair[0])):
            status, at = frontier[parent_id]
            if parent_meets(ScheduledCommandStatus(status), on_success_only=bool(on_success_only)):
                counted[child_id] = counted.get(child_id, 0) + 1
            elif child_id not in doomed:
                doomed[child_id] = (cancel_reason(parent_id, status), at)
        frontier = {}
        for child_id, (reason, at) in doomed.items():
            cancelled = await conn.execute(_CANCEL_WAITING, {"child": child_id, "reason": reason, "at": at})
            if cancelled.first() is not None:
                resolution.cancelled.append(child_id)
                frontier[child_id] = (CANCELLED, at)
        by_count: dict[int, list[str]] = {}
        for child_id, count in counted.items():
            if child_id not in doomed:
                by_count.setdefault(count, []).append(child_id)
        for count, children in sorted(by_count.items()):
            for chunk in _chunks(sorted(children)):
                rows = await conn.execute(_count_parents(chunk), {"count": count})
                resolution.released += [(str(row.id), row.scheduled_for) for row in rows if row.status == PENDING]
    await _tell(conn, backend, resolution)
    await _read_cancelled(conn, resolution)
    return resolution


async def _read_cancelled(conn: AsyncConnection, resolution: Resolution) -> None:
    """Read the dependants ``resolution`` cancelled, in its transaction (so exactly as cancelled, whatever commits
    next): the application announces them like an operator's cancel. A statement only when something was
    cancelled, which the chain step's common case (a parent that completed) never pays for."""
    for chunk in _chunks(resolution.cancelled):
        rows = (await conn.execute(select(ENTRIES).where(ENTRIES.c.id.in_(chunk)).order_by(ENTRIES.c.seq))).all()
        resolution.cancelled_entries += readable(rows, "cancelled after its parent")


_TERMINAL = frozenset(status.value for status in TERMINAL_STATUSES)

#: A WAITING dependant whose condition can no longer hold.
_CANCEL_WAITING = (
    update(ENTRIES)
    .where(ENTRIES.c.id == bindparam("child"), ENTRIES.c.status == WAITING)
    .values(
        status=CANCELLED,
        completed_at=bindparam("at", type_=UtcDateTime()),
        error_message=bindparam("reason"),
        pending_parents=0,
    )
    .returning(ENTRIES.c.id)
)


def _count_parents(children: list[str]) -> Any:
    """``count`` parents of each of ``children`` (WAITING) met the condition: PENDING when none is left. The CASE
    reads the count before the update (SQL evaluates every SET expression on the old row)."""
    remaining = ENTRIES.c.pending_parents - bindparam("count")
    released = remaining <= 0
    return (
        update(ENTRIES)
        .where(ENTRIES.c.id.in_(children), ENTRIES.c.status == WAITING)
        .values(pending_parents=case((released, 0), else_=remaining), status=case((released, PENDING), else_=WAITING))
        .returning(ENTRIES.c.id, ENTRIES.c.status, ENTRIES.c.scheduled_for)
    )


def _round_parameters(frontier: Mapping[str, tuple[str, datetime]]) -> dict[str, Any]:
    ids = sorted(frontier)
    return {
        "parents": ids,
        "statuses": [frontier[i][0] for i in ids],
        "ats": [frontier[i][1] for i in ids],
        "due_channel": NOTIFY_CHANNEL,
        "finished_channel": FINISHED_CHANNEL,
    }


#: PostgreSQL: a round of ``resolve`` in ONE statement (the other backend's three): mark the pairs of these parents
#: resolved, count per dependant the parents that met its condition and the first that broke it, update the WAITING
#: dependants (released, cancelled naming that parent, or one count lower), and NOTIFY the workers (released) and
#: the waiters (cancelled) at commit. Every SET expression reads the row before the update. The reason's text is
#: ``cancel_reason``'s.
_RESOLVE_ROUND_PG = text(
    f"""
WITH f AS (
    SELECT * FROM unnest(CAST(:parents AS text[]), CAST(:statuses AS text[]), CAST(:ats AS timestamptz[]))
        AS f(id, status, at)
),
pairs AS (
    UPDATE scheduled_command_dependencies AS d SET resolved = true
    FROM f WHERE d.parent_id = f.id AND NOT d.resolved
    RETURNING d.parent_id, d.child_id, d.on_success_only, f.status, f.at
),
verdicts AS (
    SELECT child_id,
           count(*) FILTER (WHERE status = 'COMPLETED' OR NOT on_success_only) AS met,
           min(parent_id) FILTER (WHERE status <> 'COMPLETED' AND on_success_only) AS broken_by
    FROM pairs GROUP BY child_id
),
reasons AS (
    SELECT v.child_id, v.met, v.broken_by, p.status AS broken_status, p.at AS broken_at
    FROM verdicts AS v LEFT JOIN pairs AS p ON p.child_id = v.child_id AND p.parent_id = v.broken_by
),
changed AS (
    UPDATE scheduled_commands AS c
    SET status = CASE WHEN r.broken_by IS NOT NULL THEN 'CANCELLED'
                      WHEN c.pending_parents - r.met <= 0 THEN 'PENDING' ELSE 'WAITING' END,
        pending_parents = CASE WHEN r.broken_by IS NOT NULL OR c.pending_parents - r.met <= 0 THEN 0
                               ELSE c.pending_parents - r.met END,
        completed_at = CASE WHEN r.broken_by IS NOT NULL THEN r.broken_at ELSE c.completed_at END,
        error_message = CASE WHEN r.broken_by IS NOT NULL
                             THEN 'ParentNotCompleted: parent ' || r.broken_by || ' ended ' || r.broken_status
                             ELSE c.error_message END
    FROM reasons AS r
    WHERE c.id = r.child_id AND c.status = 'WAITING'
    RETURNING c.id, c.status, c.scheduled_for, c.completed_at, c.has_dependants
)
SELECT changed.id, changed.status, changed.scheduled_for, changed.completed_at, changed.has_dependants
FROM changed CROSS JOIN (
    SELECT (SELECT pg_notify(:due_channel, extract(epoch FROM min(r.scheduled_for))::text)
            FROM changed AS r WHERE r.status = 'PENDING' HAVING count(*) > 0),
           (SELECT count(pg_notify(:finished_channel, chunk.ids)) FROM (
                SELECT CAST(json_agg(x.id) AS text) AS ids
                FROM (SELECT id, row_number() OVER () - 1 AS n FROM changed WHERE status = 'CANCELLED') AS x
                GROUP BY x.n / {FINISHED_PER_NOTIFY}) AS chunk)
) AS side
"""
).columns(*CHANGED_COLUMNS)


async def _tell(conn: AsyncConnection, backend: Backend, resolution: Resolution) -> None:
    """Wake other processes' workers (released entries) and waiters (cancelled ones) when the transaction commits."""
    executor = AsyncExecutor(conn)
    if resolution.released:
        await backend.notify(executor, min(due for _, due in resolution.released))
    if resolution.cancelled:
        await backend.notify_finished(executor, resolution.cancelled)


async def parents_of(conn: AsyncConnection, entry_id: str) -> list[str]:
    rows = await conn.execute(
        select(DEPENDENCIES.c.parent_id).where(DEPENDENCIES.c.child_id == entry_id).order_by(DEPENDENCIES.c.seq)
    )
    return [str(parent) for parent in rows.scalars()]


async def children_of(conn: AsyncConnection, entry_id: str) -> list[str]:
    rows = await conn.execute(
        select(DEPENDENCIES.c.child_id).where(DEPENDENCIES.c.parent_id == entry_id).order_by(DEPENDENCIES.c.seq)
    )
    return [str(child) for child in rows.scalars()]
