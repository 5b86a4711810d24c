"""The SQL of queues: pausing and resuming one, and listing them with their depth, running entries and limits.

A queue has a row in ``scheduled_queues`` only once it is paused or limited; the others are known from their
entries. Depth and running are counted per queue through the routed index (PENDING) and the lease index
(PROCESSING).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.entries import ScheduledCommandStatus
from stores.queues import QueueInfo, RateLimit, check_queue_name

from ._backend import Backend
from ._tables import ENTRIES, QUEUES

__all__ = ["list_queues", "set_paused"]


async def set_paused(conn: AsyncConnection, backend: Backend, name: str, paused: bool) -> None:
    """Insert the queue's row or set its ``paused``, in the caller's transaction."""
    check_queue_name(name)
    now = datetime.now(UTC)
    await conn.execute(
        backend.insert_ignoring_conflicts(QUEUES, "name").values(name=name, paused=paused, updated_at=now)
    )
    await conn.execute(update(QUEUES).where(QUEUES.c.name == name).values(paused=paused, updated_at=now))


async def list_queues(conn: AsyncConnection) -> list[QueueInfo]:
    counts: dict[str, dict[str, int]] = {}
    statement = (
        select(ENTRIES.c.queue, ENTRIES.c.status, func.count())
        .where(ENTRIES.c.status.in_([ScheduledCommandStatus.PENDING.value, ScheduledCommandStatus.PROCESSING.value]))
        .group_by(ENTRIES.c.queue, ENTRIES.c.status)
    )
    for queue, status, count in (await conn.execute(statement)).all():
        counts.setdefault(str(queue), {})[str(status)] = int(count)
    rows = {
        str(row.name): row
        for row in (await conn.execute(select(QUEUES))).all()
        if row.paused or row.max_running is not None or row.rate_count is not None
    }
    infos = []
    for name in sorted(counts.keys() | rows.keys()):
        row = rows.get(name)
        rate = None
        if row is not None and row.rate_count is not None and row.rate_per_us is not None:
            rate = RateLimit(count=row.rate_count, per=timedelta(microseconds=row.rate_per_us))
        infos.append(
            QueueInfo(
                name=name,
                paused=bool(row.paused) if row is not None else False,
                depth=counts.get(name, {}).get(ScheduledCommandStatus.PENDING.value, 0),
                running=counts.get(name, {}).get(ScheduledCommandStatus.PROCESSING.value, 0),
                max_running=row.max_running if row is not None else None,
                rate=rate,
            )
        )
    return infos
