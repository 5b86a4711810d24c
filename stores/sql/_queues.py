"""The SQL of queues: pausing and resuming one, and listing them with their depth, running entries and limits.

A queue has a row in ``scheduled_queues`` only once it is paused or limited; the others are known from their
entries. Depth and running are counted per queue through the routed index (PENDING) and the lease index
(PROCESSING).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.entries import ScheduledCommandStatus
from stores.queues import QueueInfo, QueueLimits, RateLimit, check_queue_name

from ._backend import Backend
from ._tables import ENTRIES, QUEUE_STARTS, QUEUES

__all__ = [
    "allowance",
    "limited_queues",
    "limits_of",
    "list_queues",
    "next_start_at",
    "set_limits",
    "set_paused",
    "take_starts",
]


async def set_paused(conn: AsyncConnection, backend: Backend, name: str, paused: bool) -> None:
    """Insert the queue's row or set its ``paused``, in the caller's transaction."""
    check_queue_name(name)
    now = datetime.now(UTC)
    await conn.execute(
        backend.insert_ignoring_conflicts(QUEUES, "name").values(name=name, paused=paused, updated_at=now)
    )
    await conn.execute(update(QUEUES).where(QUEUES.c.name == name).values(paused=paused, updated_at=now))


async def set_limits(conn: AsyncConnection, backend: Backend, name: str, limits: QueueLimits) -> None:
    """Insert the queue's row or set its limits (both; ``None`` clears one), in the caller's transaction."""
    check_queue_name(name)
    now = datetime.now(UTC)
    rate = limits.rate
    values = {
        "max_running": limits.max_running,
        "rate_count": rate.count if rate is not None else None,
        "rate_per_us": rate.per // timedelta(microseconds=1) if rate is not None else None,
        "updated_at": now,
    }
    await conn.execute(backend.insert_ignoring_conflicts(QUEUES, "name").values(name=name, paused=False, **values))
    await conn.execute(update(QUEUES).where(QUEUES.c.name == name).values(**values))


def limits_of(max_running: int | None, rate_count: int | None, rate_per_us: int | None) -> QueueLimits:
    """The limits a ``scheduled_queues`` row holds."""
    rate = None
    if rate_count is not None and rate_per_us is not None:
        rate = RateLimit(count=rate_count, per=timedelta(microseconds=rate_per_us))
    return QueueLimits(max_running=max_running, rate=rate)


async def limited_queues(conn: AsyncConnection) -> dict[str, QueueLimits]:
    """The limited queues, with their limits."""
    statement = select(QUEUES).where((QUEUES.c.max_running.is_not(None)) | (QUEUES.c.rate_count.is_not(None)))
    rows = (await conn.execute(statement.order_by(QUEUES.c.name))).all()
    return {str(row.name): limits_of(row.max_running, row.rate_count, row.rate_per_us) for row in rows}


def allowance(conn: Connection, name: str, limits: QueueLimits, now: datetime) -> int:
    """How many entries of the limited queue ``name`` a claim may start now: its PROCESSING entries and, with a
    rate, its start slots taken within the last ``rate.per`` (see ``take_starts``) count against its limits."""
    running = 0
    if limits.max_running is not None:
        processing = ENTRIES.c.status == ScheduledCommandStatus.PROCESSING.value
        statement = select(func.count()).select_from(ENTRIES).where(ENTRIES.c.queue == name, processing)
        running = int(conn.execute(statement).scalar_one())
    started = 0
    if limits.rate is not None:
        statement = select(func.count()).where(
            QUEUE_STARTS.c.queue == name,
            QUEUE_STARTS.c.slot < limits.rate.count,
            QUEUE_STARTS.c.started_at > now - limits.rate.per,
        )
        started = int(conn.execute(statement).scalar_one())
    left = limits.allowance(running, started)
    return 0 if left is None else left


def take_starts(conn: Connection, name: str, rate: RateLimit, started: int, now: datetime) -> None:
    """Record ``started`` starts of the rate limited queue ``name`` at ``now``, in its start slots (SQLite, under
    the write lock that also counted them; PostgreSQL does the same inside its claim statement, ``_pg_claim.py``):
    the free slots whose last start is oldest, then new ones numbered up from the highest. Starts are counted from
    the claim, as a worker's ``now``, whatever the attempt later records as its start."""
    free = (
        conn.execute(
            select(QUEUE_STARTS.c.slot)
            .where(
                QUEUE_STARTS.c.queue == name,
                QUEUE_STARTS.c.slot < rate.count,
                QUEUE_STARTS.c.started_at <= now - rate.per,
            )
            .order_by(QUEUE_STARTS.c.started_at)
            .limit(started)
        )
        .scalars()
        .all()
    )
    if free:
        conn.execute(
            update(QUEUE_STARTS)
            .where(QUEUE_STARTS.c.queue == name, QUEUE_STARTS.c.slot.in_(list(free)))
            .values(started_at=now)
        )
    top = conn.execute(select(func.max(QUEUE_STARTS.c.slot)).where(QUEUE_STARTS.c.queue == name)).scalar()
    first = -1 if top is None else int(top)
    created = range(first + 1, min(rate.count, first + 1 + started - len(free)))
    if created:
        conn.execute(insert(QUEUE_STARTS), [{"queue": name, "slot": n, "started_at": now} for n in created])


async def next_start_at(conn: AsyncConnection, now: datetime, names: Collection[str] | None) -> datetime | None:
    """The earliest time after ``now`` at which one of the unpaused rate limited queues (of ``names``; ``None``:
    every queue) that spent its rate frees a start slot: its oldest slot's last start plus ``rate.per``. A queue
    spent its rate when all its ``rate.count`` slots exist and each started within ``rate.per`` before ``now``."""
    # Two index probes per queue, whatever its rate: slots are numbered up from 0 without gaps, so the highest
    # tells whether all ``rate_count`` exist, and the (queue, started_at) index gives the oldest start.
    starts = QUEUE_STARTS.alias("starts")
    top = select(func.max(starts.c.slot)).where(starts.c.queue == QUEUES.c.name).scalar_subquery()
    oldest = (
        select(func.min(starts.c.started_at))
        .where(starts.c.queue == QUEUES.c.name, starts.c.slot < QUEUES.c.rate_count)
        .scalar_subquery()
    )
    statement = select(QUEUES.c.rate_per_us, QUEUES.c.rate_count, top.label("top"), oldest.label("oldest")).where(
        QUEUES.c.rate_count.is_not(None), QUEUES.c.paused.is_(False)
    )
    if names is not None:  # sorted by str(), as in ``limited_queues``
        statement = statement.where(QUEUES.c.name.in_(sorted(names, key=str)))
    earliest: datetime | None = None
    for row in (await conn.execute(statement)).all():
        if row.top is None or row.top < row.rate_count - 1 or row.oldest is None:
            continue  # a slot was never used: not spent
        frees_at = row.oldest + timedelta(microseconds=row.rate_per_us)
        if frees_at > now and (earliest is None or frees_at < earliest):
            earliest = frees_at
    return earliest


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
        limits = limits_of(row.max_running, row.rate_count, row.rate_per_us) if row is not None else QueueLimits()
        infos.append(
            QueueInfo(
                name=name,
                paused=bool(row.paused) if row is not None else False,
                depth=counts.get(name, {}).get(ScheduledCommandStatus.PENDING.value, 0),
                running=counts.get(name, {}).get(ScheduledCommandStatus.PROCESSING.value, 0),
                max_running=limits.max_running,
                rate=limits.rate,
            )
        )
    return infos
