"""The seam between the dialect-neutral ``SqlStore`` and its two backends (``_postgresql.py``, ``_sqlite.py``).

A backend is what differs between the databases and nothing else: how a connection is prepared and a write
transaction taken (SQLite's one writer per process, PostgreSQL's pool), the claim, the bulk insert, the batch of
outcomes, the wake-ups of other processes (NOTIFY/LISTEN; ``PRAGMA data_version``), and the quirks of reading what
the database holds. Every query that reads the same on both lives in ``_queries.py``; the store never asks which
database it talks to.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Collection, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Boolean, ColumnClause, String, Table, column
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stores.entries import ScheduledCommandEntry
from stores.queues import Route

from ._group_commit import Finish
from ._sessions import Executor
from ._tables import UtcDateTime

__all__ = ["CHANGED_COLUMNS", "Backend", "reason"]

#: The columns of the rows a statement that ends entries returns, one per entry it changed: ``finish_batch``'s, and
#: the resolution of dependants' (``_dependencies.py``), which the store reads alike.
CHANGED_COLUMNS: tuple[ColumnClause[Any], ...] = (
    column("id", String),
    column("status", String),
    column("scheduled_for", UtcDateTime),
    column("completed_at", UtcDateTime),
    column("has_dependants", Boolean),
)


class Backend(Protocol):
    """One database's way of doing what ``SqlStore`` needs; one instance per store and event loop."""

    #: The SQLAlchemy backend name (``"postgresql"``, ``"sqlite"``).
    name: str
    #: Whether a read through the writing engine must take the write path (SQLite: that engine begins every
    #: transaction with ``BEGIN IMMEDIATE``); PostgreSQL reads anywhere.
    reads_take_write_lock: bool
    #: Whether ``claim`` leaves limited queues out unless ``limited`` (PostgreSQL: the statement that holds limits
    #: costs more, so it runs only for a worker with a limited queue); otherwise ``claim`` keeps every queue within
    #: its limits itself (SQLite: one writer).
    skips_limited_queues: bool
    #: Whether ``finish_batch(skip_dependants=True)`` leaves entries with dependants out, for the store to end them
    #: in a transaction that also resolves their dependants (PostgreSQL, whose batch is one autocommit statement);
    #: otherwise the batch runs in a transaction the store resolves the dependants in (SQLite).
    finishes_dependants_apart: bool

    def create_engines(self) -> tuple[AsyncEngine, AsyncEngine | None]:
        """The engine that writes, and one that only reads concurrently with it (or None)."""
        ...

    def prepare_engine(self, engine: AsyncEngine) -> None:
        """Make an engine the caller configured safe to use (idempotent)."""
        ...

    def check_location(self) -> None:
        """Raise ``StoreUnavailableError`` for a database that cannot be where the URL says (before connecting)."""
        ...

    def write(self, engine: AsyncEngine) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction, holding whatever lock the database needs for it."""
        ...

    def single_statement(self, engine: AsyncEngine) -> AbstractAsyncContextManager[AsyncConnection]:
        """A connection for statements that are atomic by themselves (PostgreSQL: autocommit, no BEGIN/COMMIT)."""
        ...

    async def lock_schema(self, conn: AsyncConnection) -> None:
        """Serialize schema creation and migrations among processes, until ``conn``'s transaction ends."""
        ...

    async def claim(
        self,
        conn: AsyncConnection,
        *,
        now: datetime,
        limit: int,
        worker_id: str,
        lease_expires_at: datetime,
        route: Route,
        limited: bool = False,
    ) -> Sequence[Any]:
        """Lease up to ``limit`` due PENDING entries that ``route`` allows, highest priority first, none of a paused
        queue, none whose lock is held, one per lock, none past its queue's limits; the claimed rows, whole (each a
        ``Row``, or a ``Record`` where the backend reads them at the driver level). See
        ``skips_limited_queues`` for ``limited``."""
        ...

    async def insert_new(self, executor: Executor, entries: Sequence[ScheduledCommandEntry]) -> None:
        """INSERT entries without an idempotency key, as few statements as the database allows."""
        ...

    #: Whether ``insert_streamed`` writes one chunk while the caller builds the next (PostgreSQL's ``COPY``). Where
    #: not, the store gathers the chunks first and adds them as one batch: SQLite would hold its write lock, which
    #: every other process waits for, while the caller builds.
    writes_while_building: bool

    async def insert_streamed(self, executor: Executor, chunks: AsyncIterable[Sequence[ScheduledCommandEntry]]) -> None:
        """``insert_new`` of the entries ``chunks`` yields, in the executor's transaction (``add_streamed``)."""
        ...

    async def insert_committed(self, engine: AsyncEngine, entries: Sequence[ScheduledCommandEntry]) -> None:
        """Insert new entries (no idempotency keys) in a transaction of their own, committed durably, and wake the
        workers of other processes: the fast path of ``schedule()`` (see ``_producers.py``)."""
        ...

    async def close_producer(self) -> None:
        """Close what ``insert_committed`` opened (the store closes)."""
        ...

    def abandon_producer(self) -> None:
        """Let go of what ``insert_committed`` opened under an event loop that is gone."""
        ...

    def insert_ignoring_conflicts(self, table: Table, key: str, where: Any = None) -> Any:
        """An INSERT into ``table`` that skips the rows whose ``key`` (a unique column) is already held; ``where``:
        the predicate of the key's unique index when it is partial (PostgreSQL infers the index from it)."""
        ...

    async def notify(self, executor: Executor, due: datetime) -> None:
        """Wake other processes' workers when the transaction commits (a no-op where they watch instead)."""
        ...

    async def notify_finished(self, executor: Executor, entry_ids: Sequence[str]) -> None:
        """Tell other processes' waiters, when the transaction commits, that these entries reached a terminal
        status (a no-op where they watch instead)."""
        ...

    async def finish_batch(
        self, conn: AsyncConnection, requests: list[Finish], *, skip_dependants: bool = False
    ) -> Sequence[Any]:
        """The fenced end of a batch of claims, with their attempts, wake-ups and finish notifications;
        ``CHANGED_COLUMNS`` (id, status, scheduled_for, completed_at, has_dependants) of the rows it changed. With
        ``skip_dependants``, a backend that ``finishes_dependants_apart`` changes no entry that has dependants."""
        ...

    def unreadable_timestamp(self, column: Any) -> Any:
        """SQL: ``column`` holds a timestamp this library cannot have written (an index range condition)."""
        ...

    async def unreachable_due(self, conn: AsyncConnection, limit: int) -> Sequence[Row[Any]]:
        """``(seq, id, scheduled_for)`` of PENDING rows no claim can ever reach."""
        ...

    async def next_due_at(self, conn: AsyncConnection) -> datetime | None:
        """The earliest due time of a PENDING entry, or None."""
        ...

    def expired_before(self, now: datetime, lease_duration: timedelta) -> datetime:
        """Leases that expired before this are taken over by recovery."""
        ...

    def lock_rows(self, query: Any, *, skip_locked: bool) -> Any:
        """``query`` locking the rows it reads until the transaction ends, waiting for or skipping those others
        locked (or as it is, where the write transaction already excludes every other writer)."""
        ...

    async def count_finished_since(self, conn: AsyncConnection, since: datetime, bucket_us: int) -> Sequence[Any]:
        """``(status, bucket number, count)`` of terminal entries completed since ``since``."""
        ...

    async def watch(
        self,
        wake: Callable[[datetime], None],
        listening: Callable[[], bool],
        closing: asyncio.Event,
        watched: Callable[[], Collection[str]],
        finished: Callable[[Iterable[str]], None],
    ) -> None:
        """Call ``wake(due)`` when another process made an entry due, and ``finished(ids)`` when another process
        finished entries of ``watched()`` (the ids this process waits for; ``finished`` may be given ids nobody
        waits for, or ids not finished after a reconnection: the waiters re-read), until ``closing`` is set or
        cancelled."""
        ...

    #: Whether ``watch`` ends by itself once ``closing`` is set (else the store cancels it).
    watch_stops_itself: bool


def reason(exc: BaseException) -> str:
    """The first line of a driver error, for messages."""
    original = getattr(exc, "orig", None) or exc
    lines = str(original).strip().splitlines()
    return lines[0] if lines else type(original).__name__
