"""``SqlStore``: scheduled commands in SQLite (the embedded default) or PostgreSQL (a fleet of workers).

Async all the way: SQLAlchemy's async engine with aiosqlite or psycopg 3, so no database call waits on the event loop
(SQLite's ``schedule()`` writes on it only when the write lock is free at once, ``_producers.py``). This
class is the same for both databases: it opens, runs transactions and turns rows into entries; what differs between
them is its ``Backend`` (``_postgresql.py``, ``_sqlite.py``). Queries are named functions in ``_queries.py`` and
``_schedules.py``, ``_workers.py`` and ``_audit.py``, the tables in ``_tables.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import AsyncIterable, AsyncIterator, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from stores._transitions import AddBatch, ClaimEnd, refuse_keyed_in_stream
from stores.base import FinishedCount, ReclaimedEntry, StatusCount, StoreReading
from stores.entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from stores.errors import SessionNotSupportedError
from stores.filters import EntryFilter, EntryPage
from stores.outcomes import OutcomeCount, check_outcome_range
from stores.queues import QueueInfo, QueueLimits

from . import _gauges as gauges
from . import _outcomes as outcomes
from . import _queries as queries
from . import _queues as queue_queries
from . import _schedules as schedules
from ._backend import reason
from ._claims_store import SqlClaims
from ._dependencies import Resolution
from ._group_commit import Finish, Finished
from ._records_store import SqlRecords
from ._rows import entry_to_row, readable, row_to_entry
from ._search import SearchPlans, count_bounded
from ._sessions import AsyncExecutor, AsyncSessionExecutor, Executor, SyncSessionExecutor, run_sync
from ._status_counts import count_by_status_estimated
from ._tables import ENTRIES, HELD_KEY
from ._urls import mask_url, same_database

__all__ = ["SqlStore"]

logger = logging.getLogger("stores.sql")

#: ``add`` of fewer entries than this, none with an idempotency key, takes the producers' fast path; larger ones
#: are written as the batch they are (PostgreSQL: one COPY).
_FAST_PATH_BELOW = 20


class SqlStore(SqlRecords, SqlClaims):
    """A ``ScheduledCommandStore`` in SQLite or PostgreSQL, through SQLModel/SQLAlchemy's async engine.

    Args:
        url_or_engine: ``sqlite:///path/to/file.db`` or ``postgresql+psycopg://user@host/db`` (plain
            ``postgresql://`` works too), or an ``AsyncEngine`` you configured.
        pool_size: connections kept per process (PostgreSQL).

    The store opens itself on first use: it connects and creates its tables and indexes (idempotently); a database
    whose schema is newer than this code is refused with ``SchemaVersionError``. ``async with store:`` or
    ``await store.open()`` opens it at once instead, to fail fast; whoever opens a store that way closes it. A
    ``ScheduledCommandService`` closes, when it stops, a store it found not opened that way.

    .. versionadded:: 0.1
    """

    #: Settled hours of ``count_outcomes`` are kept in a rollup table: they survive a purge of their entries.
    keeps_outcome_counts = True

    # -- scheduling -------------------------------------------------------------------------------------------

    async def add(self, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        if not entries:
            return []
        if len(entries) < _FAST_PATH_BELOW and all(e.idempotency_key is None for e in entries):
            return await self._add_fast(entries)
        try:
            async with self._write() as conn:
                ids = await self._insert_entries(AsyncExecutor(conn), entries)
        except IntegrityError as exc:
            raise ValueError(f"could not add entries: an id already exists ({reason(exc)})") from exc
        self._notify_wakeup(min(e.scheduled_for for e in entries))
        return ids

    async def _add_fast(self, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        """``add`` of a few entries without idempotency keys: through the producers' group commit, whose batch is
        one statement on PostgreSQL and one hop to the database thread on SQLite."""
        # One entry (each ``schedule()``): its id, and nothing for ``AddBatch`` to split or check.
        ids = [entries[0].id] if len(entries) == 1 else AddBatch.of(entries).ids({})
        await self._open_on_first_use()
        try:
            await self._producers.submit(entries)
        except IntegrityError as exc:
            raise ValueError(f"could not add entries: an id already exists ({reason(exc)})") from exc
        self._notify_wakeup(entries[0].scheduled_for if len(entries) == 1 else min(e.scheduled_for for e in entries))
        return ids

    async def add_streamed(self, chunks: AsyncIterable[Sequence[ScheduledCommandEntry]]) -> list[str]:
        if not self._backend.writes_while_building:
            return await super().add_streamed(chunks)
        entries: list[ScheduledCommandEntry] = []

        async def checked() -> AsyncIterator[Sequence[ScheduledCommandEntry]]:
            async for chunk in chunks:
                refuse_keyed_in_stream(chunk)
                entries.extend(chunk)
                yield chunk

        try:
            async with self._write() as conn:
                executor = AsyncExecutor(conn)
                await self._backend.insert_streamed(executor, checked())
                earliest = min((e.scheduled_for for e in entries), default=None)
                if earliest is not None:
                    await self._backend.notify(executor, earliest)
        except IntegrityError as exc:
            raise ValueError(f"could not add entries: an id already exists ({reason(exc)})") from exc
        if earliest is not None:
            self._notify_wakeup(earliest)
        return [entry.id for entry in entries]

    async def add_in_session(
        self, session: AsyncSession | Session, entries: Sequence[ScheduledCommandEntry]
    ) -> list[str]:
        """Insert entries through the caller's session, inside the caller's transaction.

        They exist if and only if the caller commits; on commit the workers are woken (PostgreSQL: the NOTIFY is
        part of the transaction). A sync ``Session`` runs in a worker thread, never on the loop.
        """
        if not entries:
            return []
        await self._open_on_first_use()  # the tables must exist before the caller's transaction writes to them
        bind_url = session.get_bind().engine.url
        if not same_database(bind_url, self._url):
            raise SessionNotSupportedError(
                self.description,
                f"the session is bound to {mask_url(bind_url)}, another database than the store's",
            )
        earliest = min(e.scheduled_for for e in entries)
        sync_session = session.sync_session if isinstance(session, AsyncSession) else session
        event.listen(sync_session, "after_commit", lambda _: self._notify_wakeup(earliest), once=True)
        if isinstance(session, AsyncSession):
            return await self._insert_entries(AsyncSessionExecutor(session), entries)
        executor = SyncSessionExecutor(session)
        return await asyncio.to_thread(run_sync, self._insert_entries(executor, entries))

    async def _insert_entries(self, executor: Executor, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        """INSERT the entries; those whose idempotency key is held return the holder's id."""
        batch = AddBatch.of(entries)
        if batch.plain:
            await self._backend.insert_new(executor, batch.plain)
        holders: dict[str, str] = {}
        if batch.keyed:
            keyed = [entry_to_row(entry) for entry in batch.keyed]
            await executor.execute(self._backend.insert_ignoring_conflicts(ENTRIES, "idempotency_key", HELD_KEY), keyed)
            holders = await queries.held_keys(executor, batch.keys)
        await self._backend.notify(executor, min(e.scheduled_for for e in entries))
        return batch.ids(holders)

    async def get(self, entry_id: str) -> ScheduledCommandEntry | None:
        async with self._read() as conn:
            row = await queries.get_row(conn, entry_id)
        return row_to_entry(row) if row is not None else None  # an unreadable row: UnreadableEntryError

    async def ids_starting_with(self, prefix: str, *, limit: int = 10) -> list[str]:
        async with self._read() as conn:
            return await queries.ids_starting_with(conn, prefix, limit)

    async def cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        cancelled = await self._cancel_where(ENTRIES.c.id == entry_id, now)
        return cancelled[0] if cancelled else None

    async def cancel_by_correlation_id(self, correlation_id: str, *, now: datetime) -> list[ScheduledCommandEntry]:
        return await self._cancel_where(ENTRIES.c.correlation_id == correlation_id, now)

    async def _cancel_where(self, condition: Any, now: datetime) -> list[ScheduledCommandEntry]:
        async with self._write() as conn:
            rows = await queries.cancel_where(conn, condition, now)
            await self._tell_finished(conn, [row.id for row in rows])
            resolution = await self._resolve(conn, rows)
        self._notify_finished(row.id for row in rows)
        self._after_resolution(resolution)
        return readable(rows, "cancelled")

    async def request_cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        async with self._write() as conn:
            row = await queries.request_cancel(conn, entry_id, now)
            if row is not None:  # the holder listens for its entry "finishing", in any process: it re-reads it
                await self._tell_finished(conn, [row.id])
        if row is None:
            return None
        self._notify_finished((row.id,))
        entries = readable([row], "cancel requested")
        return entries[0] if entries else None

    async def _tell_finished(self, conn: AsyncConnection, entry_ids: list[str]) -> None:
        """Wake other processes' waiters for these entries when the transaction commits."""
        if entry_ids:
            await self._backend.notify_finished(AsyncExecutor(conn), entry_ids)

    async def requeue(self, entry_id: str, *, now: datetime) -> bool:
        return bool(await self._requeue_where([ENTRIES.c.id == entry_id], now))

    async def requeue_failed(self, *, now: datetime, command_type: str | None = None) -> list[str]:
        conditions = [] if command_type is None else [ENTRIES.c.command_type == command_type]
        return await self._requeue_where(conditions, now)

    async def _requeue_where(self, conditions: list[Any], now: datetime) -> list[str]:
        async with self._write() as conn:
            ids = await queries.requeue_where(conn, conditions, now)
            if ids:
                await self._backend.notify(AsyncExecutor(conn), now)
        if ids:
            self._notify_wakeup(now)
        return ids

    async def dismiss(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        async with self._write() as conn:
            row = await queries.dismiss(conn, entry_id, now)
            if row is not None:
                await self._tell_finished(conn, [row.id])
        if row is not None:
            self._notify_finished((row.id,))
        entries = readable([row], "dismissed") if row is not None else []
        return entries[0] if entries else None

    # -- claiming and outcomes --------------------------------------------------------------------------------

    async def renew_leases(self, leases: Sequence[tuple[str, str]], *, until: datetime) -> set[str]:
        if not leases:
            return set()
        async with self._write() as conn:
            return await queries.renew_leases(conn, leases, until)

    async def _finish(self, request: Finish) -> Finished | None:
        """End a claim, fenced by its lease token. Requests arriving while a batch is being written are written
        together in the next one (group commit): one statement per batch, not per command."""
        return await self._finisher.submit(request)

    async def _finish_batch(self, requests: list[Finish]) -> list[Finished | None]:
        """The one fenced transition, for a batch: update the entries still held under their tokens, record their
        attempts, and wake workers for those that became PENDING. Returns, per request, its outcome or None."""
        rows, resolution = await self._finish_rows(requests)
        done = {row.id: Finished(row.status, row.scheduled_for) for row in rows}
        self._notify_finished(row.id for row in rows if row.status != ScheduledCommandStatus.PENDING.value)
        self._after_resolution(resolution)
        return [done.get(r.entry_id) for r in requests]

    async def end_claim(self, entry_id: str, lease_token: str, end: ClaimEnd) -> datetime | None:
        request = Finish(
            entry_id,
            lease_token,
            end.status.value,
            completed_at=end.completed_at,
            result_payload=end.result_payload,
            due=end.due,
            retry_increment=1 if end.counts_failure else 0,
            error_message=end.error_message,
            attempt=end.attempt,
        )
        finished = await self._finish(request)
        return None if finished is None else finished.scheduled_for

    async def reclaim_expired_leases(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta
    ) -> list[ReclaimedEntry]:
        if limit <= 0:
            return []
        resolution = Resolution()
        async with self._write() as conn:
            reclaimed = await queries.reclaim_expired(
                conn,
                self._backend,
                now=now,
                limit=limit,
                worker_id=worker_id,
                lease_duration=lease_duration,
                resolution=resolution,
            )
        self._after_resolution(resolution)
        return reclaimed

    # -- reading and housekeeping -----------------------------------------------------------------------------

    async def get_attempts(self, entry_id: str) -> list[AttemptRecord]:
        async with self._read() as conn:
            return await queries.get_attempts(conn, entry_id)

    # -- queues -----------------------------------------------------------------------------------------------

    async def set_queue_paused(self, name: str, paused: bool) -> None:
        async with self._write() as conn:
            await queue_queries.set_paused(conn, self._backend, name, paused)
            if not paused:  # its entries may be due: wake every worker (PostgreSQL: NOTIFY, at commit)
                await self._backend.notify(AsyncExecutor(conn), datetime.now(UTC))
        if not paused:
            self._notify_wakeup(datetime.now(UTC))

    async def set_queue_limits(self, name: str, limits: QueueLimits) -> None:
        async with self._write() as conn:
            await queue_queries.set_limits(conn, self._backend, name, limits)
            await self._backend.notify(AsyncExecutor(conn), datetime.now(UTC))  # a raised limit may free entries
        self._limited_read_at = -math.inf  # this process claims by the new limits at once
        self._notify_wakeup(datetime.now(UTC))

    async def list_queues(self) -> list[QueueInfo]:
        async with self._read() as conn:
            return await queue_queries.list_queues(conn)

    async def next_start_at(self, now: datetime, queues: Collection[str] | None = None) -> datetime | None:
        async with self._one_select() as conn:
            return await queue_queries.next_start_at(conn, now, queues)

    async def count_by_status(self) -> dict[ScheduledCommandStatus, int]:
        async with self._read() as conn:
            return await queries.count_by_status(conn)

    async def count_by_status_estimated(self, *, exact_up_to: int) -> dict[ScheduledCommandStatus, StatusCount]:
        if exact_up_to < 0:
            raise ValueError(f"exact_up_to must not be negative, got {exact_up_to}")
        async with self._read() as conn:
            return await count_by_status_estimated(conn, exact_up_to)

    async def list_matching(self, where: EntryFilter, page: EntryPage) -> list[ScheduledCommandEntry]:
        async with self._read() as conn:
            rows = await queries.list_rows(
                conn,
                where=where,
                limit=page.limit,
                offset=page.offset,
                newest_first=page.newest_first,
                sort_matches=await self._search_plans.sorts_matches(conn, where),
            )
        return queries.readable_listing(rows, page.on_unreadable)

    async def count_matching(self, where: EntryFilter, *, at_most: int | None) -> int:
        async with self._read() as conn:
            counted = await count_bounded(conn, where, at_most)
        self._search_plans.note(where, counted, at_most)
        return counted

    @functools.cached_property
    def _search_plans(self) -> SearchPlans:
        return SearchPlans()

    async def list_occurrences(self, name: str, *, limit: int = 20) -> list[ScheduledCommandEntry]:
        async with self._read() as conn:
            rows = await queries.list_occurrence_rows(conn, name, limit)
        return queries.readable_listing(rows, None)

    async def next_due_at(self) -> datetime | None:
        async with self._one_select() as conn:
            return await self._backend.next_due_at(conn)

    async def purge_finished(
        self, older_than: datetime, statuses: frozenset[ScheduledCommandStatus], limit: int | None
    ) -> int:
        purgeable = queries.purgeable(statuses)
        total = 0
        while limit is None or total < limit:  # in chunks, so one purge never holds the write lock for long
            chunk = queries.PURGE_CHUNK if limit is None else min(queries.PURGE_CHUNK, limit - total)
            async with self._write() as conn:
                deleted = await queries.purge_chunk(conn, self._backend, purgeable, older_than, chunk)
            total += deleted
            if deleted < chunk:
                break
        return total

    async def count_by_command_type(
        self, status: ScheduledCommandStatus, *, due_before: datetime | None = None, queue: str | None = None
    ) -> dict[str, int]:
        async with self._read() as conn:
            return await queries.count_by_command_type(conn, status, due_before, queue)

    async def count_purgeable(
        self, *, older_than: datetime, statuses: Collection[ScheduledCommandStatus] = TERMINAL_STATUSES
    ) -> int:
        purgeable = queries.purgeable(statuses)
        if not purgeable:
            return 0
        async with self._read() as conn:
            return await queries.count_purgeable(conn, purgeable, older_than)

    async def count_finished_since(self, since: datetime, *, bucket: timedelta) -> list[FinishedCount]:
        async with self._read() as conn:
            return await queries.count_finished_since(conn, self._backend, since, bucket)

    async def count_outcomes(self, since: datetime, until: datetime, *, unit: timedelta) -> list[OutcomeCount]:
        """Settled hours from the rollup table (rolled up here when a reader first asks), the rest counted live."""
        check_outcome_range(since, until, unit)
        span = outcomes.rollup_span(since, until, unit)
        if span is None:
            async with self._read() as conn:
                return outcomes.merge(await outcomes.count_live(conn, since, until, unit))
        async with self._read() as conn:
            missing = await outcomes.missing_hours(conn, *span)
        if missing:
            async with self._write() as conn:
                await outcomes.roll_up(conn, missing, now=until)
        async with self._read() as conn:
            return outcomes.merge(
                await outcomes.count_live(conn, since, span[0], unit),
                await outcomes.read_rollup(conn, *span),
                await outcomes.count_live(conn, span[1], until, unit),
            )

    async def count_running(self, *, now: datetime) -> int:
        async with self._read() as conn:
            return await queries.count_running(conn, now)

    async def read_gauges(self, *, now: datetime, exact_up_to: int | None = None) -> StoreReading:
        if exact_up_to is not None and exact_up_to < 0:
            raise ValueError(f"exact_up_to must not be negative, got {exact_up_to}")
        async with self._snapshot() as conn:
            return await gauges.read_gauges(conn, self._backend, now, exact_up_to)

    # -- recurring schedules: the occurrences (the schedules themselves: _records_store.py) ------------------

    async def cancel_occurrences(
        self, name: str, *, now: datetime, keep_generation: int | None = None
    ) -> list[ScheduledCommandEntry]:
        async with self._write() as conn:
            rows = await schedules.cancel_occurrences(conn, name, now=now, keep_generation=keep_generation)
            await self._tell_finished(conn, [row.id for row in rows])
            resolution = await self._resolve(conn, rows)
        self._notify_finished(row.id for row in rows)
        self._after_resolution(resolution)
        return readable(rows, "cancelled")
