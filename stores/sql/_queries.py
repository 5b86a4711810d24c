"""The SQL of entries that reads the same on every backend, one named function per query; ``SqlStore`` calls them
in its transactions.

Operator actions on one row (cancel, requeue, dismiss) are conditional ``UPDATE ... WHERE ... AND status = ...
RETURNING``: a row that holds no lease is fenced by its status. On PostgreSQL a concurrent change of the same row
waits for the row lock, then re-checks the condition on the committed row and updates nothing; on SQLite the store's
write path (``BEGIN IMMEDIATE``) runs one writer at a time. Either way exactly one of them changes the entry.

Operator statistics: throughput counts terminal entries per status and time bucket in the database (each backend
computes the bucket number, see its ``count_finished_since``); running entries read only PROCESSING rows through an
index, the status a literal so that PostgreSQL's planner matches the partial index's condition.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, text, tuple_, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import TextClause

from stores._transitions import CANCEL, DISMISS, REQUEST_CANCEL, REQUEUE, Transition, as_column_values
from stores.base import FinishedCount, ReclaimedEntry, check_bucket, finished_counts
from stores.entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from stores.errors import UnreadableEntryError
from stores.filters import EntryFilter

from . import _dependencies as dependencies
from ._backend import Backend
from ._rows import as_datetime, attempt_from_row, log_unreadable, row_to_entry
from ._search import filter_condition
from ._tables import ATTEMPTS, DEPENDENCIES, ENTRIES, UtcDateTime, any_due_time

__all__ = [
    "PURGE_CHUNK",
    "cancel_where",
    "count_by_command_type",
    "count_by_status",
    "count_finished_since",
    "count_purgeable",
    "count_running",
    "dead_letter_unreadable",
    "dismiss",
    "get_attempts",
    "get_row",
    "held_keys",
    "ids_starting_with",
    "list_occurrence_rows",
    "list_rows",
    "purge_chunk",
    "purgeable",
    "reclaim_expired",
    "renew_leases",
    "requeue_where",
]

PROCESSING = ScheduledCommandStatus.PROCESSING.value
FAILED = ScheduledCommandStatus.FAILED.value

#: Rows one purge (or one pass of recovery's dead-lettering) handles per transaction.
PURGE_CHUNK = 5_000

#: Longest error message written for an unreadable row.
_ERROR_LIMIT = 2_000

_RUNNING: TextClause = text(
    """
    SELECT count(*) FROM scheduled_commands
    WHERE status = 'PROCESSING' AND lease_expires_at > :now
    """
).bindparams(bindparam("now", type_=UtcDateTime))


async def get_row(conn: AsyncConnection, entry_id: str) -> Row[Any] | None:
    return (await conn.execute(select(ENTRIES).where(ENTRIES.c.id == entry_id))).first()


async def held_keys(conn: Any, keys: list[str]) -> dict[str, str]:
    """``idempotency_key -> id`` of the entries holding ``keys`` (``conn`` may be a caller's session executor)."""
    result = await conn.execute(
        select(ENTRIES.c.idempotency_key, ENTRIES.c.id).where(ENTRIES.c.idempotency_key.in_(keys))
    )
    return dict(result.all())


async def ids_starting_with(conn: AsyncConnection, prefix: str, limit: int) -> list[str]:
    rows = await conn.execute(
        select(ENTRIES.c.id)
        # SQLite's LIKE ignores case: the substr comparison keeps the match exact.
        .where(
            ENTRIES.c.id.startswith(prefix, autoescape=True),
            func.substr(ENTRIES.c.id, 1, len(prefix)) == prefix,
        )
        .order_by(ENTRIES.c.id)
        .limit(limit)
    )
    return [str(entry_id) for entry_id in rows.scalars()]


async def cancel_where(conn: AsyncConnection, condition: Any, now: datetime) -> list[Row[Any]]:
    """PENDING -> CANCELLED for the rows matching ``condition``; the changed rows in scheduling order."""
    result = await conn.execute(_apply(CANCEL, now, condition).returning(*ENTRIES.c))
    return sorted(result.all(), key=lambda row: row.seq)


async def request_cancel(conn: AsyncConnection, entry_id: str, now: datetime) -> Row[Any] | None:
    """Mark a PROCESSING entry's attempt for cancelling (the first request's time is kept); the row, or None when
    it is unknown or not PROCESSING."""
    values = as_column_values(REQUEST_CANCEL.changes(now))
    requested = bindparam("requested_at", values["cancel_requested_at"], type_=UtcDateTime())
    values["cancel_requested_at"] = func.coalesce(ENTRIES.c.cancel_requested_at, requested)
    statement = (
        update(ENTRIES)
        .where(ENTRIES.c.id == entry_id, ENTRIES.c.status == REQUEST_CANCEL.source.value)
        .values(**values)
        .returning(*ENTRIES.c)
    )
    return (await conn.execute(statement)).first()


async def requeue_where(conn: AsyncConnection, conditions: Sequence[Any], now: datetime) -> list[str]:
    """FAILED -> PENDING, due now, with a fresh retry budget; the ids of the rows changed."""
    result = await conn.execute(_apply(REQUEUE, now, *conditions).returning(ENTRIES.c.id))
    return [str(entry_id) for entry_id in result.scalars()]


async def dismiss(conn: AsyncConnection, entry_id: str, now: datetime) -> Row[Any] | None:
    """FAILED -> CANCELLED with ``completed_at = now``; the updated row, or None when it is unknown or not FAILED."""
    result = await conn.execute(_apply(DISMISS, now, ENTRIES.c.id == entry_id).returning(*ENTRIES.c))
    return result.first()


def _apply(transition: Transition, now: datetime, *conditions: Any) -> Any:
    """The transition as one conditional UPDATE of the rows matching ``conditions``, fenced by its source status."""
    return (
        update(ENTRIES)
        .where(*conditions, ENTRIES.c.status.in_([status.value for status in transition.sources]))
        .values(**as_column_values(transition.changes(now)))
    )


async def renew_leases(conn: AsyncConnection, leases: Sequence[tuple[str, str]], until: datetime) -> set[str]:
    result = await conn.execute(
        update(ENTRIES)
        .where(tuple_(ENTRIES.c.id, ENTRIES.c.lease_token).in_(list(leases)), ENTRIES.c.status == PROCESSING)
        .values(lease_expires_at=until)
        .returning(ENTRIES.c.id)
    )
    return set(result.scalars())


async def dead_letter_unreadable(
    conn: AsyncConnection, unreadable: Sequence[UnreadableEntryError], now: datetime, backend: Backend
) -> dependencies.Resolution:
    """FAILED, with the error naming the column and value: no attempt can run an entry that cannot be read, and
    no retry can fix it. By ``seq``, which is always readable (so even a row whose id is not is quarantined). Its
    dependants are resolved in the same transaction, like those of any dead letter."""
    parents: list[tuple[str, str, datetime]] = []
    for exc in unreadable:
        result = await conn.execute(
            update(ENTRIES)
            .where(ENTRIES.c.seq == exc.seq)
            .values(
                status=FAILED,
                completed_at=now,
                error_message=f"UnreadableEntryError: {exc.description}"[:_ERROR_LIMIT],
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
            )
            .returning(ENTRIES.c.id, ENTRIES.c.has_dependants)
        )
        row = result.first()
        if row is not None and row.has_dependants and isinstance(row.id, str):
            parents.append((row.id, FAILED, now))
        log_unreadable(exc, "dead-lettered")
    if parents:
        return await dependencies.resolve(conn, backend, parents)
    return dependencies.Resolution()


async def reclaim_expired(
    conn: AsyncConnection,
    backend: Backend,
    *,
    now: datetime,
    limit: int,
    worker_id: str,
    lease_duration: timedelta,
    resolution: dependencies.Resolution,
) -> list[ReclaimedEntry]:
    """Recovery, in one write transaction: dead-letter PENDING rows no claim can reach (an infinity, the year
    20000, a text that is no timestamp), so they do not wait unseen forever, then take over expired leases. What
    dead-lettering them did to their dependants is added to ``resolution``."""
    rows = await backend.unreachable_due(conn, PURGE_CHUNK)
    problems = [
        UnreadableEntryError(row.seq, row.id, "scheduled_for", row.scheduled_for, "not a reachable due time")
        for row in rows
    ]
    if problems:
        resolution.extend(await dead_letter_unreadable(conn, problems, now, backend))
    # A lease that cannot be read (NULL, or a value no worker writes) counts as expired: the entry's worker is
    # unknown, and nothing else would ever take it over.
    lease = ENTRIES.c.lease_expires_at
    query = (
        select(ENTRIES.c.seq, ENTRIES.c.lease_owner, lease)
        .where(
            ENTRIES.c.status == PROCESSING,
            (lease <= backend.expired_before(now, lease_duration))
            | lease.is_(None)
            | backend.unreadable_timestamp(lease),
        )
        .order_by(lease, ENTRIES.c.seq)
        .limit(limit)
    )
    expired = (await conn.execute(backend.lock_rows(query, skip_locked=True))).all()
    reclaimed: list[ReclaimedEntry] = []
    for seq, previous_owner, previous_expiry in expired:
        row = (
            await conn.execute(
                update(ENTRIES)
                .where(ENTRIES.c.seq == seq)
                .values(lease_owner=worker_id, lease_token=uuid.uuid4().hex, lease_expires_at=now + lease_duration)
                .returning(*ENTRIES.c)
            )
        ).one()
        try:
            entry = row_to_entry(row)
        except UnreadableEntryError as exc:
            resolution.extend(await dead_letter_unreadable(conn, [exc], now, backend))
            continue
        owner = previous_owner if isinstance(previous_owner, str) else None
        reclaimed.append(ReclaimedEntry(entry, owner, as_datetime(previous_expiry)))
    return reclaimed


async def get_attempts(conn: AsyncConnection, entry_id: str) -> list[AttemptRecord]:
    rows = (await conn.execute(select(ATTEMPTS).where(ATTEMPTS.c.entry_id == entry_id).order_by(ATTEMPTS.c.seq))).all()
    return [attempt_from_row(row) for row in rows]


async def count_by_status(conn: AsyncConnection) -> dict[ScheduledCommandStatus, int]:
    rows = (await conn.execute(select(ENTRIES.c.status, func.count()).group_by(ENTRIES.c.status))).all()
    counts = dict.fromkeys(ScheduledCommandStatus, 0)
    for status, count in rows:
        with contextlib.suppress(ValueError):  # a status written by something else is not counted
            counts[ScheduledCommandStatus(status)] = count
    return counts


#: From this offset on, a page is found by its keys first (see ``list_rows``).
DEEP_OFFSET = 1_000


async def list_rows(
    conn: AsyncConnection, *, where: EntryFilter, limit: int, offset: int, newest_first: bool, sort_matches: bool
) -> Sequence[Row[Any]]:
    """A page of ``where``'s rows in ``seq`` order (or reversed); ``sort_matches``: see ``_search.SearchPlans``.

    A created range is listed by creation time, then ``seq`` (``EntryFilter.by_creation``): the
    ``(created_at, seq)`` index then reads the page's rows at once, where a walk by ``seq`` passes every row created
    after the range first (300,000 rows, 0.2 s, for a range an hour old at a million entries).

    A deep page (a page jump) skips ``offset`` keys, not rows: the subquery reads only ``seq`` (an index-only scan of
    the key or of the status, type and created indexes), and only the page's rows are read whole.
    """
    if where.by_creation:
        keys: list[Any] = [ENTRIES.c.created_at, ENTRIES.c.seq]
    else:
        keys = [(ENTRIES.c.seq + 0) if sort_matches else ENTRIES.c.seq]
    order = [key.desc() if newest_first else key for key in keys]
    condition = filter_condition(where, conn.dialect.name)
    if offset >= DEEP_OFFSET:
        page = select(ENTRIES.c.seq).where(condition).order_by(*order).limit(limit).offset(offset).scalar_subquery()
        query = select(ENTRIES).where(ENTRIES.c.seq.in_(page)).order_by(*order)
    else:
        query = select(ENTRIES).where(condition).order_by(*order).limit(limit).offset(offset)
    return (await conn.execute(query)).all()


async def list_occurrence_rows(conn: AsyncConnection, name: str, limit: int) -> Sequence[Row[Any]]:
    """The newest ``limit`` rows of one recurring schedule (``ix_scheduled_commands_occurrences``)."""
    query = select(ENTRIES).where(ENTRIES.c.recurring_name == name).order_by(ENTRIES.c.seq.desc()).limit(limit)
    return (await conn.execute(query)).all()


def readable_listing(
    rows: Sequence[Row[Any]], on_unreadable: Callable[[UnreadableEntryError], None] | None
) -> list[ScheduledCommandEntry]:
    """The entries of a listing; an unreadable row is handed to ``on_unreadable`` (or logged) and skipped."""
    entries: list[ScheduledCommandEntry] = []
    for row in rows:
        try:
            entries.append(row_to_entry(row))
        except UnreadableEntryError as exc:
            if on_unreadable is None:
                log_unreadable(exc, "skipped in a listing")
            else:
                on_unreadable(exc)
    return entries


def purgeable(statuses: Collection[ScheduledCommandStatus]) -> list[str]:
    return sorted(ScheduledCommandStatus(s).value for s in set(statuses) & TERMINAL_STATUSES)


async def purge_chunk(
    conn: AsyncConnection, backend: Backend, statuses: list[str], older_than: datetime, chunk: int
) -> int:
    """Delete up to ``chunk`` finished entries (and their attempts, and their pairs as dependants); how many were
    deleted.

    The rows are locked as they are chosen, skipping rows another transaction holds (PostgreSQL: ``FOR UPDATE SKIP
    LOCKED``; SQLite's write transaction already excludes every other writer): purgers running at once delete
    disjoint rows and each counts only its own, and a dead letter being requeued meanwhile is either requeued (and
    skipped here) or purged first (and the requeue finds nothing).
    """
    finished = and_(ENTRIES.c.status.in_(statuses), ENTRIES.c.completed_at < older_than)
    query = select(ENTRIES.c.seq, ENTRIES.c.id).where(finished).limit(chunk)
    doomed = (await conn.execute(backend.lock_rows(query, skip_locked=True))).all()
    if not doomed:
        return 0
    await conn.execute(delete(ATTEMPTS).where(ATTEMPTS.c.entry_id.in_([r.id for r in doomed])))
    # A purged dependant's pairs go with it (a purged parent's stay while its dependants are kept: they name it).
    await conn.execute(delete(DEPENDENCIES).where(DEPENDENCIES.c.child_id.in_([r.id for r in doomed])))
    deleted = await conn.execute(delete(ENTRIES).where(ENTRIES.c.seq.in_([r.seq for r in doomed]), finished))
    return int(deleted.rowcount)


async def count_purgeable(conn: AsyncConnection, statuses: list[str], older_than: datetime) -> int:
    query = select(func.count()).where(ENTRIES.c.status.in_(statuses), ENTRIES.c.completed_at < older_than)
    return int((await conn.execute(query)).scalar_one())


async def count_by_command_type(
    conn: AsyncConnection, status: ScheduledCommandStatus, due_before: datetime | None = None, queue: str | None = None
) -> dict[str, int]:
    statement = select(ENTRIES.c.command_type, func.count()).where(
        ENTRIES.c.status == ScheduledCommandStatus(status).value
    )
    if due_before is not None:
        statement = statement.where(ENTRIES.c.scheduled_for < due_before)
        if conn.dialect.name == "postgresql":  # true of every row: lets the index of PENDING due times serve it
            statement = statement.where(any_due_time(ENTRIES.c.scheduled_for))
    if queue is not None:
        statement = statement.where(ENTRIES.c.queue == queue)
    rows = (await conn.execute(statement.group_by(ENTRIES.c.command_type))).all()
    return {str(command_type): int(count) for command_type, count in rows}


async def count_finished_since(
    conn: AsyncConnection, backend: Backend, since: datetime, bucket: timedelta
) -> list[FinishedCount]:
    """Terminal entries per status and bucket of ``bucket`` since ``since`` (see the store method's contract)."""
    check_bucket(bucket)
    since = since.astimezone(UTC)
    rows = await backend.count_finished_since(conn, since, bucket // timedelta(microseconds=1))
    # A completed_at that is no timestamp (written behind the library's back) is not counted: no bucket holds it.
    counts = {(int(row[1]), ScheduledCommandStatus(row[0])): int(row[2]) for row in rows if row[1] is not None}
    return finished_counts(since, bucket, counts)


async def count_running(conn: AsyncConnection, now: datetime) -> int:
    """PROCESSING entries whose lease has not expired at ``now`` (see the store method's contract)."""
    return int((await conn.execute(_RUNNING, {"now": now.astimezone(UTC)})).scalar_one())
