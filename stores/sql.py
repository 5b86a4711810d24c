"""``SqlStore``: scheduled commands in SQLite (the embedded default) or PostgreSQL (a fleet of workers).

Async all the way: SQLAlchemy's async engine with aiosqlite or psycopg 3, so no database call blocks the loop.
Tables are SQLModel classes in ``stores/_tables.py``; every query is a named method here.

PostgreSQL: one ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`` statement claims a batch, and a
LISTEN connection wakes idle workers when an entry becomes PENDING anywhere (NOTIFY is sent in the same transaction,
so a rolled-back schedule wakes nobody). SQLite: WAL, a busy timeout, every write transaction ``BEGIN IMMEDIATE``
(it takes the write lock at once, so two writers can never deadlock upgrading read locks) and one writer at a time
per process; other processes on the same file are noticed through ``PRAGMA data_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    delete,
    event,
    func,
    insert,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.engine import URL, Connection, Row, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from . import _schedules_sql
from ._outcomes_sql import (
    PG_BATCH_FINISH,
    Finish,
    Finished,
    GroupCommit,
    batch_finish_statement,
    pg_batch_finish_json,
)
from ._rows import as_datetime, install_psycopg_loaders, read_entry
from ._tables import SCHEMA_VERSION, AttemptRow, EntryRow, SchemaVersionRow, UtcDateTime
from .base import FinishedCount, ReclaimedEntry, ScheduledCommandStore
from .entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from .errors import (
    SchemaVersionError,
    SessionNotSupportedError,
    StoreError,
    StoreUnavailableError,
    UnreadableEntryError,
)
from .schedules import StoredSchedule

__all__ = ["SqlStore", "mask_url", "to_async_url"]

logger = logging.getLogger(__name__)

ENTRIES: Table = EntryRow.__table__  # type: ignore[attr-defined]
ATTEMPTS: Table = AttemptRow.__table__  # type: ignore[attr-defined]
SCHEMA: Table = SchemaVersionRow.__table__  # type: ignore[attr-defined]

PENDING = ScheduledCommandStatus.PENDING.value
PROCESSING = ScheduledCommandStatus.PROCESSING.value

#: The NOTIFY channel that wakes workers; the payload is the earliest due time as a POSIX timestamp.
NOTIFY_CHANNEL = "cqrs_scheduling_due"

#: Key of the advisory lock that serializes schema creation among workers starting together.
_SCHEMA_LOCK_KEY = 0x63717273_5343484D

#: Extra candidates per priority in the PostgreSQL claim, so concurrent claimers skipping each other's locked rows
#: still fill their batches.
_CLAIM_WINDOW_FACTOR = 4

_PURGE_CHUNK = 5_000

#: Longest error message written for an unreadable row.
_ERROR_LIMIT = 2_000

#: The columns a new entry sets (the others start NULL), with their PostgreSQL types, for the bulk insert.
_PG_BULK_COLUMNS = (
    ("id", "text"),
    ("command_type", "text"),
    ("payload", "text"),
    ("status", "text"),
    ("priority", "integer"),
    ("scheduled_for", "timestamptz"),
    ("created_at", "timestamptz"),
    ("expires_at", "timestamptz"),
    ("retry_count", "integer"),
    ("attempt_count", "integer"),
    ("max_retries", "integer"),
    ("correlation_id", "text"),
    ("metadata_json", "text"),
    ("idempotency_key", "text"),
    ("timeout_seconds", "double precision"),
    ("recurring_name", "text"),
    ("occurrence_at", "timestamptz"),
)
#: Scheduling many on PostgreSQL: one ``COPY`` of the rows (psycopg's COPY writer, in C, is about twice as fast as
#: binding arrays). An id already stored fails the COPY, and the transaction, like it fails an INSERT.
_PG_BULK_COPY = f"COPY scheduled_commands ({', '.join(name for name, _ in _PG_BULK_COLUMNS)}) FROM STDIN"
#: COPY costs a round trip more than one statement: used from this many rows.
_PG_COPY_FROM = 20
#: The same as one INSERT ... SELECT FROM unnest(arrays): for fewer rows, and for a caller's session on a driver
#: other than psycopg 3.
_PG_BULK_INSERT = text(
    f"INSERT INTO scheduled_commands ({', '.join(name for name, _ in _PG_BULK_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'CAST(:{name} AS {kind}[])' for name, kind in _PG_BULK_COLUMNS)})"
)

# The claim on PostgreSQL, in one statement. ``priorities`` walks the distinct PENDING priorities from the highest
# down with one index probe each (a loose index scan); for each, ``candidates`` takes the earliest due entries by an
# index range scan; ``locked`` orders them and locks a batch, skipping rows other workers are claiming; the UPDATE
# claims them. The cost is a few index probes per distinct priority, whether 10 or 10 million entries are pending.
_PG_CLAIM = """
WITH RECURSIVE priorities(p) AS (
    SELECT max(priority) FROM scheduled_commands WHERE status = 'PENDING'
  UNION ALL
    SELECT (SELECT max(priority) FROM scheduled_commands WHERE status = 'PENDING' AND priority < priorities.p)
    FROM priorities WHERE priorities.p IS NOT NULL
),
candidates AS (
    SELECT c.seq FROM priorities
    CROSS JOIN LATERAL (
        SELECT seq FROM scheduled_commands
        WHERE status = 'PENDING' AND priority = priorities.p AND scheduled_for <= :now
        ORDER BY scheduled_for, seq
        LIMIT :window
    ) AS c
    WHERE priorities.p IS NOT NULL
),
locked AS (
    SELECT seq FROM scheduled_commands
    WHERE seq = ANY(ARRAY(SELECT seq FROM candidates)) AND status = 'PENDING' AND scheduled_for <= :now
    ORDER BY priority DESC, scheduled_for, seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE scheduled_commands AS t
SET status = 'PROCESSING', started_at = :now, lease_owner = :worker_id,
    lease_token = replace(gen_random_uuid()::text, '-', ''), lease_expires_at = :lease_expires_at
FROM locked
WHERE t.seq = locked.seq
RETURNING t.*
"""


# SQLite's claim and next-due reads, with the index named: without ANALYZE statistics its planner picks the
# (status, ...) indexes for "status = 'PENDING'", which read every pending row.
_SQLITE_TOP_PRIORITY_DUE = text(
    "SELECT seq, priority FROM scheduled_commands INDEXED BY ix_scheduled_commands_due"
    " WHERE status = 'PENDING' AND scheduled_for <= :now AND priority = ("
    "  SELECT max(priority) FROM scheduled_commands INDEXED BY ix_scheduled_commands_due WHERE status = 'PENDING')"
    " ORDER BY scheduled_for, seq LIMIT :limit"
).bindparams(bindparam("now", type_=UtcDateTime))
_SQLITE_DUE_AT_PRIORITY = text(
    "SELECT seq, priority FROM scheduled_commands INDEXED BY ix_scheduled_commands_due"
    " WHERE status = 'PENDING' AND priority = :priority AND scheduled_for <= :now"
    " ORDER BY scheduled_for, seq LIMIT :limit"
).bindparams(bindparam("now", type_=UtcDateTime))
_SQLITE_MAX_PRIORITY = text(
    "SELECT max(priority) FROM scheduled_commands INDEXED BY ix_scheduled_commands_due WHERE status = 'PENDING'"
)
_SQLITE_MAX_PRIORITY_BELOW = text(
    "SELECT max(priority) FROM scheduled_commands INDEXED BY ix_scheduled_commands_due"
    " WHERE status = 'PENDING' AND priority < :below"
)
# PENDING rows whose due time is no timestamp text: SQLite orders numbers before text and blobs after it, so they are
# the two ends of the next-due index (two range scans, not a scan of every pending row).
_SQLITE_UNREACHABLE_DUE = text(
    "SELECT seq, id, scheduled_for FROM scheduled_commands INDEXED BY ix_scheduled_commands_next_due"
    " WHERE status = 'PENDING' AND scheduled_for < '0001-01-01'"
    " UNION ALL"
    " SELECT seq, id, scheduled_for FROM scheduled_commands INDEXED BY ix_scheduled_commands_next_due"
    " WHERE status = 'PENDING' AND scheduled_for > '9999-12-31 23:59:59.999999'"
    " LIMIT :limit"
)
# The same on PostgreSQL: 'infinity' and the years past 9999 (Python's datetime ends there), one range scan.
_PG_UNREACHABLE_DUE = text(
    "SELECT seq, id, CAST(scheduled_for AS text) AS scheduled_for FROM scheduled_commands"
    " WHERE status = 'PENDING' AND scheduled_for >= '10000-01-01 00:00:00+00'"
    " LIMIT :limit"
)
_SQLITE_NEXT_DUE = text(
    "SELECT min(scheduled_for) FROM scheduled_commands INDEXED BY ix_scheduled_commands_next_due"
    " WHERE status = 'PENDING'"
)


def to_async_url(url: str) -> URL:
    """Map a user's URL to the async driver: ``sqlite:///f.db`` -> aiosqlite, ``postgresql://`` -> psycopg 3.

    Raises:
        ValueError: an unsupported scheme, or an in-memory SQLite database (use ``MemoryStore``).
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ValueError(f"not a store URL: {url!r} (expected sqlite:///path or postgresql+psycopg://...)") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "sqlite":
        if driver not in ("", "aiosqlite", "pysqlite"):
            raise ValueError(f"unsupported SQLite driver {driver!r} in {mask_url(url)}; use sqlite:///path")
        if parsed.host:  # sqlite://file.db: the start of the path was read as a host name
            raise ValueError(
                f"{mask_url(url)} names no file (the path follows three slashes): did you mean "
                f"sqlite:///{parsed.host}{'/' + parsed.database if parsed.database else ''}?"
            )
        if parsed.database in (None, "", ":memory:"):
            raise ValueError(f"{mask_url(url)} is an in-memory SQLite database; use MemoryStore, or a file path")
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        if driver not in ("", "psycopg", "psycopg_async"):
            raise ValueError(f"unsupported PostgreSQL driver {driver!r} in {mask_url(url)}; use postgresql+psycopg://")
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"unsupported store URL scheme {parsed.drivername!r} in {mask_url(url)}; "
        "supported: sqlite:///path/to/file.db, postgresql+psycopg://user@host:5432/db"
    )


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ``***``, for logs and errors."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except Exception:  # noqa: BLE001 - not a URL at all: show nothing secret
        return "<invalid URL>"
    return parsed.render_as_string(hide_password=True)


class SqlStore(ScheduledCommandStore):
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

    def __init__(self, url_or_engine: str | AsyncEngine, *, pool_size: int = 10) -> None:
        super().__init__()
        if isinstance(url_or_engine, AsyncEngine):
            self._engine: AsyncEngine | None = url_or_engine
            self._url = url_or_engine.url
            self._owns_engine = False
            if url_or_engine.dialect.name == "sqlite":  # WAL, busy timeout and BEGIN IMMEDIATE are not optional
                _make_sqlite_safe(url_or_engine)
            else:
                _make_postgresql_tolerant(url_or_engine)
        else:
            self._engine = None
            self._url = to_async_url(url_or_engine)
            self._owns_engine = True
        self._pool_size = pool_size
        self._dialect = self._url.get_backend_name()
        if self._dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"SqlStore supports SQLite and PostgreSQL, not {self._dialect} ({mask_url(self._url)})")
        self._write_lock = asyncio.Lock()  # SQLite: one writer per process; the others wait here, not in busy loops
        self._opened = False
        self._explicit = False  # opened by open() / async with, not by first use
        self._open_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._reader: AsyncEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = asyncio.Event()
        self._finisher = GroupCommit(self._finish_batch)
        self._wrote_at = 0.0  # loop time of this store's last write (SQLite: its watcher tells its commits apart)
        self._lock_stalls = _LockStalls()

    # -- lifecycle --------------------------------------------------------------------------------------------

    @property
    def description(self) -> str:
        return f"SqlStore({mask_url(self._url)})"

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return mask_url(self._url)

    @property
    def is_postgresql(self) -> bool:
        return self._dialect == "postgresql"

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise StoreError(f"{self.description} is not open; use 'async with store:' or await store.open()")
        return self._engine

    def _loop_changed(self) -> bool:
        """Whether this store is used under another event loop than before (``asyncio.run`` twice, one loop per
        test). A store belongs to one event loop at a time: when the old loop ended (``asyncio.run`` returned, which
        closed the store through its wake-up task), its locks and tasks are recreated and it opens afresh; while the
        old loop still runs (another thread), using the store here is refused with ``StoreError``.

        Raises:
            StoreError: the store is open under an event loop that is still running.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return False
        if self._loop is not None:
            if self._opened and self._loop.is_running():
                raise StoreError(
                    f"{self.description} is open in another event loop, which is still running (another thread?); "
                    "a store belongs to the event loop that opened it: use one store per event loop"
                )
            self._opened = False
            self._watcher = None
            self._reader = None
            if self._owns_engine:
                self._engine = None  # the old loop's connections cannot be closed from this one; dropped
        self._loop = loop
        self._write_lock = asyncio.Lock()
        self._open_lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self._finisher = GroupCommit(self._finish_batch)
        return True

    @property
    def opened_explicitly(self) -> bool:
        return self._opened and self._explicit

    async def open(self) -> None:
        """Connect and create the schema now (first use does it too): fails fast with ``StoreUnavailableError`` or
        ``SchemaVersionError``. Whoever calls it closes the store."""
        await self._open()
        self._explicit = True

    async def _open_on_first_use(self) -> None:
        """Open for an operation on a store nobody opened (or opened under an event loop that is gone)."""
        if not self._opened or self._loop is not asyncio.get_running_loop():
            await self._open()

    async def _open(self) -> None:
        if self._loop_changed():
            self._explicit = False
        async with self._open_lock:
            if self._opened:
                return
            if not self.is_postgresql:
                self._check_sqlite_directory()
            if self._engine is None:
                self._engine = self._create_engine()
            try:
                await self._ensure_schema()
            except (OperationalError, InterfaceError, OSError) as exc:
                await self._dispose()
                raise StoreUnavailableError(self.url, _reason(exc)) from exc
            except BaseException:
                await self._dispose()
                raise
            self._closing.clear()
            self._watcher = asyncio.create_task(self._wake_ups(), name=f"wake-ups:{self.url}")
            self._opened = True

    async def close(self) -> None:
        if self._loop_changed():
            return  # opened under a loop that is gone: nothing of it can be closed from here
        async with self._open_lock:
            if self._watcher is not None:
                # The SQLite watcher stops by itself (a cancelled aiosqlite call could outlive the loop);
                # the PostgreSQL listener is cancelled.
                self._closing.set()
                if self.is_postgresql:
                    self._watcher.cancel()
                await asyncio.gather(self._watcher, return_exceptions=True)
                self._watcher = None
            await self._dispose()
            self._opened = False
            self._explicit = False

    async def _dispose(self) -> None:
        if self._reader is not None:
            await self._reader.dispose()
            self._reader = None
        if self._engine is not None and self._owns_engine:
            await self._engine.dispose()
            self._engine = None

    def _check_sqlite_directory(self) -> None:
        # Said plainly here rather than as the driver's "unable to open database file" (and a failed aiosqlite
        # connect leaves a thread behind that outlives the event loop).
        directory = os.path.dirname(os.path.abspath(self._url.database or ""))
        if not os.path.isdir(directory):
            raise StoreUnavailableError(self.url, f"the directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise StoreUnavailableError(self.url, f"the directory {directory} is not writable")

    def _create_engine(self) -> AsyncEngine:
        if self.is_postgresql:
            # No pre-ping (it costs a round trip per checkout): a connection broken by a restart fails its statement,
            # is invalidated, and the caller's retry gets a fresh one.
            engine = create_async_engine(self._url, pool_size=self._pool_size, max_overflow=self._pool_size)
            _make_postgresql_tolerant(engine)
            return engine
        engine = create_async_engine(self._url, connect_args={"timeout": 30})
        _make_sqlite_safe(engine)
        self._reader = create_async_engine(self._url, connect_args={"timeout": 30})
        event.listen(self._reader.sync_engine, "connect", _prepare_sqlite_reader)
        return engine

    async def _ensure_schema(self) -> None:
        async with self._transaction() as conn:
            if self.is_postgresql:
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            await conn.run_sync(_create_tables)
            version = (await conn.execute(select(SCHEMA.c.version).where(SCHEMA.c.id == 1))).scalar_one_or_none()
            if version is None:
                await conn.execute(insert(SCHEMA).values(id=1, version=SCHEMA_VERSION, updated_at=datetime.now(UTC)))
            elif version > SCHEMA_VERSION:
                raise SchemaVersionError(self.url, version, SCHEMA_VERSION)
            # version < SCHEMA_VERSION: migrations go here, one step per version, in this transaction.

    # -- transactions -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _unavailable_as_store_error(self) -> Iterator[None]:
        """Driver errors that mean "the database is away" become ``StoreUnavailableError`` (retried by the
        service); everything else propagates as it is."""
        try:
            yield
        except (OperationalError, InterfaceError, OSError) as exc:
            raise StoreUnavailableError(self.url, _reason(exc)) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailableError(self.url, _reason(exc)) from exc
            raise

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite, one at a time per process)."""
        await self._open_on_first_use()
        async with self._transaction() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """``_write`` on an engine already created (opening uses it to create the schema)."""
        engine = self.engine
        if self.is_postgresql:
            with self._unavailable_as_store_error():
                async with engine.begin() as conn:
                    yield conn
            self._wrote_at = asyncio.get_running_loop().time()
            return
        async with self._write_lock:
            stalls = self._lock_stalls
            stalls.waiting()
            with self._unavailable_as_store_error():
                async with engine.begin() as conn:
                    stalls.acquired()
                    try:
                        yield conn
                    finally:
                        stalls.released()
            self._wrote_at = asyncio.get_running_loop().time()

    @contextlib.asynccontextmanager
    async def _autocommit(self) -> AsyncIterator[AsyncConnection]:
        """PostgreSQL: a connection in autocommit mode, for ONE statement, which is atomic by itself (saves the
        BEGIN and COMMIT round trips of a transaction)."""
        await self._open_on_first_use()
        engine = self.engine
        with self._unavailable_as_store_error():
            async with engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield conn

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A read. Reads run concurrently with writes: on SQLite through a second engine whose connections never
        take the write lock (WAL readers see the last commit); through the write path for an engine passed in."""
        await self._open_on_first_use()
        if not self.is_postgresql and self._reader is None:
            async with self._write() as conn:
                yield conn
            return
        with self._unavailable_as_store_error():
            async with (self._reader or self.engine).connect() as conn:
                yield conn

    # -- scheduling -------------------------------------------------------------------------------------------

    async def add(self, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        if not entries:
            return []
        try:
            async with self._write() as conn:
                ids = await self._insert_entries(_AsyncExecutor(conn), entries)
        except IntegrityError as exc:
            raise ValueError(f"could not add entries: an id already exists ({_reason(exc)})") from exc
        self._notify_wakeup(min(e.scheduled_for for e in entries))
        return ids

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
        if not _same_database(bind_url, self._url):
            raise SessionNotSupportedError(
                self.description,
                f"the session is bound to {mask_url(bind_url)}, another database than the store's",
            )
        earliest = min(e.scheduled_for for e in entries)
        sync_session = session.sync_session if isinstance(session, AsyncSession) else session
        event.listen(sync_session, "after_commit", lambda _: self._notify_wakeup(earliest), once=True)
        if isinstance(session, AsyncSession):
            return await self._insert_entries(_AsyncSessionExecutor(session), entries)
        executor = _SyncSessionExecutor(session)
        return await asyncio.to_thread(_run_sync, self._insert_entries(executor, entries))

    async def _insert_entries(self, executor: _Executor, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        """INSERT the entries; those whose idempotency key is held return the holder's id."""
        seen_ids: set[str] = set()
        first_with_key: dict[str, str] = {}
        plain: list[ScheduledCommandEntry] = []
        keyed: list[dict[str, Any]] = []
        for entry in entries:
            if entry.id in seen_ids:
                raise ValueError(f"the id {entry.id!r} appears twice in the batch")
            seen_ids.add(entry.id)
            key = entry.idempotency_key
            if key is None:
                plain.append(entry)
            elif key not in first_with_key:
                first_with_key[key] = entry.id
                keyed.append(_entry_to_row(entry))
        if plain:
            if self.is_postgresql:  # one statement or one COPY, not one INSERT per row
                rows = [_entry_to_copy_row(e) for e in plain]
                if len(rows) >= _PG_COPY_FROM:
                    await executor.copy(_PG_BULK_COPY, rows, _PG_BULK_INSERT)
                else:
                    await executor.execute(_PG_BULK_INSERT, _columns(rows))
            else:  # sqlite3's executemany is a loop in C over one prepared statement
                await executor.execute(insert(ENTRIES), [_entry_to_row(e) for e in plain])
        holders: dict[str, str] = {}
        if keyed:
            await executor.execute(self._insert_ignoring_held_keys(), keyed)
            result = await executor.execute(
                select(ENTRIES.c.idempotency_key, ENTRIES.c.id).where(
                    ENTRIES.c.idempotency_key.in_(list(first_with_key))
                )
            )
            holders = dict(result.all())
        if self.is_postgresql:
            due = min(e.scheduled_for for e in entries)
            await executor.execute(
                text("SELECT pg_notify(:channel, :due)"), {"channel": NOTIFY_CHANNEL, "due": str(due.timestamp())}
            )
        return [holders.get(e.idempotency_key, e.id) if e.idempotency_key is not None else e.id for e in entries]

    def _insert_ignoring_held_keys(self) -> Any:
        if self.is_postgresql:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(ENTRIES).on_conflict_do_nothing(index_elements=["idempotency_key"])
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(ENTRIES).on_conflict_do_nothing(index_elements=["idempotency_key"])

    async def get(self, entry_id: str) -> ScheduledCommandEntry | None:
        async with self._read() as conn:
            row = (await conn.execute(select(ENTRIES).where(ENTRIES.c.id == entry_id))).first()
        return _row_to_entry(row) if row is not None else None  # an unreadable row: UnreadableEntryError

    async def ids_starting_with(self, prefix: str, *, limit: int = 10) -> list[str]:
        async with self._read() as conn:
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

    async def cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        cancelled = await self._cancel_where(ENTRIES.c.id == entry_id, now)
        return cancelled[0] if cancelled else None

    async def cancel_by_correlation_id(self, correlation_id: str, *, now: datetime) -> list[ScheduledCommandEntry]:
        return await self._cancel_where(ENTRIES.c.correlation_id == correlation_id, now)

    async def _cancel_where(self, condition: Any, now: datetime) -> list[ScheduledCommandEntry]:
        async with self._write() as conn:
            result = await conn.execute(
                update(ENTRIES)
                .where(condition, ENTRIES.c.status == PENDING)
                .values(status=ScheduledCommandStatus.CANCELLED.value, completed_at=now)
                .returning(*ENTRIES.c)
            )
            rows = result.all()
        return _readable(sorted(rows, key=lambda r: r.seq), "cancelled")

    async def requeue(self, entry_id: str, *, now: datetime) -> bool:
        async with self._write() as conn:
            result = await conn.execute(
                update(ENTRIES)
                .where(ENTRIES.c.id == entry_id, ENTRIES.c.status == ScheduledCommandStatus.FAILED.value)
                .values(status=PENDING, scheduled_for=now, retry_count=0, completed_at=None, expires_at=None)
                .returning(ENTRIES.c.seq)
            )
            requeued = result.first() is not None
            if requeued:
                await self._notify_in(conn, now)
        if requeued:
            self._notify_wakeup(now)
        return requeued

    async def _notify_in(self, conn: AsyncConnection, due: datetime) -> None:
        if self.is_postgresql:
            await conn.execute(
                text("SELECT pg_notify(:channel, :due)"), {"channel": NOTIFY_CHANNEL, "due": str(due.timestamp())}
            )

    # -- claiming and outcomes --------------------------------------------------------------------------------

    async def claim_due(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta
    ) -> list[ScheduledCommandEntry]:
        if limit <= 0:
            return []
        lease_expires_at = now + lease_duration
        if self.is_postgresql:  # one statement: autocommit, no BEGIN and COMMIT round trips
            async with self._autocommit() as conn:
                rows = await self._claim_postgresql(conn, now, limit, worker_id, lease_expires_at)
                claimed, unreadable = _convert_each(rows)
                if unreadable:
                    await _dead_letter_unreadable(conn, unreadable, now)
        else:
            async with self._write() as conn:
                rows = await self._claim_sqlite(conn, now, limit, worker_id, lease_expires_at)
                claimed, unreadable = _convert_each(rows)
                if unreadable:
                    await _dead_letter_unreadable(conn, unreadable, now)
        claimed.sort(key=lambda pair: (-pair[1].priority, pair[1].scheduled_for, pair[0]))
        return [entry for _, entry in claimed]

    async def _claim_postgresql(
        self, conn: AsyncConnection, now: datetime, limit: int, worker_id: str, lease_expires_at: datetime
    ) -> Sequence[Row[Any]]:
        statement = text(_PG_CLAIM).columns(*ENTRIES.c)
        result = await conn.execute(
            statement,
            {
                "now": now,
                "limit": limit,
                "window": limit * _CLAIM_WINDOW_FACTOR,
                "worker_id": worker_id,
                "lease_expires_at": lease_expires_at,
            },
        )
        return result.all()

    async def _claim_sqlite(
        self, conn: AsyncConnection, now: datetime, limit: int, worker_id: str, lease_expires_at: datetime
    ) -> list[Row[Any]]:
        # The transaction holds SQLite's write lock, so picking then updating is atomic. One index range scan per
        # distinct PENDING priority, highest first, until the batch is full; the first probe finds the highest
        # priority itself, so the common case (one priority with due work) is one SELECT and one UPDATE.
        # INDEXED BY: without statistics SQLite prefers the (status, ...) indexes, which read every pending row.
        seqs: list[int] = []
        found = (await conn.execute(_SQLITE_TOP_PRIORITY_DUE, {"now": now, "limit": limit})).all()
        seqs.extend(row.seq for row in found)
        priority = found[0].priority if found else None
        if priority is None:
            priority = (await conn.execute(_SQLITE_MAX_PRIORITY)).scalar_one_or_none()
            if priority is not None and not found:
                found = (
                    await conn.execute(_SQLITE_DUE_AT_PRIORITY, {"priority": priority, "now": now, "limit": limit})
                ).all()
                seqs.extend(row.seq for row in found)
        while priority is not None and len(seqs) < limit:
            priority = (await conn.execute(_SQLITE_MAX_PRIORITY_BELOW, {"below": priority})).scalar_one_or_none()
            if priority is None:
                break
            found = (
                await conn.execute(
                    _SQLITE_DUE_AT_PRIORITY, {"priority": priority, "now": now, "limit": limit - len(seqs)}
                )
            ).all()
            seqs.extend(row.seq for row in found)
        if not seqs:
            return []
        result = await conn.execute(
            update(ENTRIES)
            .where(ENTRIES.c.seq.in_(seqs))
            .values(
                status=PROCESSING,
                started_at=now,
                lease_owner=worker_id,
                lease_token=func.lower(func.hex(func.randomblob(16))),
                lease_expires_at=lease_expires_at,
            )
            .returning(*ENTRIES.c)
        )
        return list(result.all())

    async def renew_leases(self, leases: Sequence[tuple[str, str]], *, until: datetime) -> set[str]:
        if not leases:
            return set()
        async with self._write() as conn:
            result = await conn.execute(
                update(ENTRIES)
                .where(tuple_(ENTRIES.c.id, ENTRIES.c.lease_token).in_(list(leases)), ENTRIES.c.status == PROCESSING)
                .values(lease_expires_at=until)
                .returning(ENTRIES.c.id)
            )
            return set(result.scalars())

    async def _finish(self, request: Finish) -> Finished | None:
        """End a claim, fenced by its lease token. Requests arriving while a batch is being written are written
        together in the next one (group commit): one UPDATE and one INSERT per batch, not per command."""
        return await self._finisher.submit(request)

    async def _finish_batch(self, requests: list[Finish]) -> list[Finished | None]:
        """The one fenced transition, for a batch: update the entries still held under their tokens, record their
        attempts, and wake workers for those that became PENDING. Returns, per request, its outcome or None."""
        if self.is_postgresql:
            return await self._finish_batch_postgresql(requests)
        async with self._write() as conn:
            statement = batch_finish_statement(len(requests), postgresql=self.is_postgresql)
            parameters: dict[str, Any] = {}
            for i, r in enumerate(requests):
                parameters.update(
                    {
                        f"id_{i}": r.entry_id,
                        f"token_{i}": r.lease_token,
                        f"status_{i}": r.status,
                        f"completed_at_{i}": r.completed_at,
                        f"result_{i}": r.result_payload,
                        f"due_{i}": r.due,
                        f"retry_{i}": r.retry_increment,
                        f"attempt_{i}": 1 if r.attempt is not None else 0,
                        f"error_{i}": r.error_message,
                        f"started_at_{i}": r.attempt.started_at if r.attempt is not None else None,
                    }
                )
            rows = (await conn.execute(statement, parameters)).all()
            done = {row.id: Finished(row.status, row.scheduled_for) for row in rows}
            attempts = [
                _attempt_to_row(r.entry_id, r.attempt) for r in requests if r.attempt is not None and r.entry_id in done
            ]
            if attempts:
                await conn.execute(insert(ATTEMPTS), attempts)
            pending = [f.scheduled_for for f in done.values() if f.status == PENDING]
            if pending:
                await self._notify_in(conn, min(pending))
        return [done.get(r.entry_id) for r in requests]

    async def _finish_batch_postgresql(self, requests: list[Finish]) -> list[Finished | None]:
        """``_finish_batch`` as one statement in autocommit mode: one round trip per batch."""
        parameters = {"batch": pg_batch_finish_json(requests), "channel": NOTIFY_CHANNEL}
        async with self._autocommit() as conn:
            rows = (await conn.execute(PG_BATCH_FINISH, parameters)).all()
        done = {row.id: Finished(row.status, row.scheduled_for) for row in rows}
        return [done.get(r.entry_id) for r in requests]

    async def complete(
        self, entry_id: str, lease_token: str, *, result_payload: str | None, attempt: AttemptRecord
    ) -> bool:
        request = Finish(
            entry_id,
            lease_token,
            ScheduledCommandStatus.COMPLETED.value,
            completed_at=attempt.finished_at,
            result_payload=result_payload,
            attempt=attempt,
        )
        return await self._finish(request) is not None

    async def retry_later(
        self, entry_id: str, lease_token: str, *, due: datetime, error_message: str, attempt: AttemptRecord
    ) -> bool:
        request = Finish(
            entry_id, lease_token, PENDING, due=due, retry_increment=1, error_message=error_message, attempt=attempt
        )
        return await self._finish(request) is not None

    async def dead_letter(self, entry_id: str, lease_token: str, *, error_message: str, attempt: AttemptRecord) -> bool:
        request = Finish(
            entry_id,
            lease_token,
            ScheduledCommandStatus.FAILED.value,
            completed_at=attempt.finished_at,
            retry_increment=1,
            error_message=error_message,
            attempt=attempt,
        )
        return await self._finish(request) is not None

    async def expire(self, entry_id: str, lease_token: str, *, now: datetime) -> bool:
        request = Finish(entry_id, lease_token, ScheduledCommandStatus.EXPIRED.value, completed_at=now)
        return await self._finish(request) is not None

    async def release(self, entry_id: str, lease_token: str) -> bool:
        finished = await self._finish(Finish(entry_id, lease_token, PENDING))
        if finished is None:
            return False
        self._notify_wakeup(finished.scheduled_for)
        return True

    async def reclaim_expired_leases(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta
    ) -> list[ReclaimedEntry]:
        if limit <= 0:
            return []
        reclaimed: list[ReclaimedEntry] = []
        async with self._write() as conn:
            await self._dead_letter_unclaimable(conn, now)
            expired_before = now
            if not self.is_postgresql:
                # SQLite has one write lock: while something held it (a process paused inside a transaction, a long
                # transaction of another program), no worker could renew its leases. A lease that expired within
                # the longest such stall seen lately is not taken over yet: its owner gets the time to renew it.
                stall = self._lock_stalls.longest(within=lease_duration.total_seconds())
                expired_before = _minus_seconds(now, stall)
            # A lease that cannot be read (NULL, or a value no worker writes) counts as expired: the entry's worker
            # is unknown, and nothing else would ever take it over.
            lease = ENTRIES.c.lease_expires_at
            query = (
                select(ENTRIES.c.seq, ENTRIES.c.lease_owner, lease)
                .where(
                    ENTRIES.c.status == PROCESSING,
                    (lease <= expired_before) | lease.is_(None) | self._unreadable_timestamp(lease),
                )
                .order_by(lease, ENTRIES.c.seq)
                .limit(limit)
            )
            if self.is_postgresql:
                query = query.with_for_update(skip_locked=True)
            expired = (await conn.execute(query)).all()
            for seq, previous_owner, previous_expiry in expired:
                row = (
                    await conn.execute(
                        update(ENTRIES)
                        .where(ENTRIES.c.seq == seq)
                        .values(
                            lease_owner=worker_id,
                            lease_token=uuid.uuid4().hex,
                            lease_expires_at=now + lease_duration,
                        )
                        .returning(*ENTRIES.c)
                    )
                ).one()
                try:
                    entry = _row_to_entry(row)
                except UnreadableEntryError as exc:
                    await _dead_letter_unreadable(conn, [exc], now)
                    continue
                owner = previous_owner if isinstance(previous_owner, str) else None
                reclaimed.append(ReclaimedEntry(entry, owner, as_datetime(previous_expiry)))
        return reclaimed

    def _unreadable_timestamp(self, column: Any) -> Any:
        """SQL: the timestamp in ``column`` cannot be a value this library wrote (SQLite: not a timestamp text
        at all; PostgreSQL: an infinity, or past the year 9999). Both are index range conditions."""
        if self.is_postgresql:
            return (column >= text("'10000-01-01 00:00:00+00'::timestamptz")) | (
                column <= text("'-infinity'::timestamptz")
            )
        # SQLite orders numbers before text and blobs after it; a timestamp text is between these bounds.
        return (column < text("'0001-01-01'")) | (column > text("'9999-12-31 23:59:59.999999'"))

    async def _dead_letter_unclaimable(self, conn: AsyncConnection, now: datetime) -> None:
        """Dead-letter PENDING rows whose due time can never be reached by a claim (an infinity, the year 20000,
        a text that is no timestamp), so they do not wait unseen forever. Runs with recovery."""
        query = _PG_UNREACHABLE_DUE if self.is_postgresql else _SQLITE_UNREACHABLE_DUE
        rows = (await conn.execute(query, {"limit": _PURGE_CHUNK})).all()
        problems = [
            UnreadableEntryError(row.seq, row.id, "scheduled_for", row.scheduled_for, "not a reachable due time")
            for row in rows
        ]
        if problems:
            await _dead_letter_unreadable(conn, problems, now)

    # -- reading and housekeeping -----------------------------------------------------------------------------

    async def get_attempts(self, entry_id: str) -> list[AttemptRecord]:
        async with self._read() as conn:
            rows = (
                await conn.execute(select(ATTEMPTS).where(ATTEMPTS.c.entry_id == entry_id).order_by(ATTEMPTS.c.seq))
            ).all()
        return [
            AttemptRecord(
                attempt=r.attempt,
                worker_id=r.worker_id,
                started_at=r.started_at,
                finished_at=r.finished_at,
                outcome=r.outcome,
                error=r.error,
            )
            for r in rows
        ]

    async def count_by_status(self) -> dict[ScheduledCommandStatus, int]:
        async with self._read() as conn:
            rows = (await conn.execute(select(ENTRIES.c.status, func.count()).group_by(ENTRIES.c.status))).all()
        counts = dict.fromkeys(ScheduledCommandStatus, 0)
        for status, count in rows:
            with contextlib.suppress(ValueError):  # a status written by something else is not counted
                counts[ScheduledCommandStatus(status)] = count
        return counts

    async def list_entries(
        self,
        *,
        status: ScheduledCommandStatus | None = None,
        command_type: str | None = None,
        correlation_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = False,
        on_unreadable: Callable[[UnreadableEntryError], None] | None = None,
    ) -> list[ScheduledCommandEntry]:
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must not be negative, got limit={limit}, offset={offset}")
        conditions = []
        if status is not None:
            conditions.append(ENTRIES.c.status == ScheduledCommandStatus(status).value)
        if command_type is not None:
            conditions.append(ENTRIES.c.command_type == command_type)
        if correlation_id is not None:
            conditions.append(ENTRIES.c.correlation_id == correlation_id)
        order = ENTRIES.c.seq.desc() if newest_first else ENTRIES.c.seq
        query = select(ENTRIES).where(and_(True, *conditions)).order_by(order).limit(limit).offset(offset)
        async with self._read() as conn:
            rows = (await conn.execute(query)).all()
        entries: list[ScheduledCommandEntry] = []
        for row in rows:
            try:
                entries.append(_row_to_entry(row))
            except UnreadableEntryError as exc:
                if on_unreadable is None:
                    _log_unreadable(exc, "skipped in a listing")
                else:
                    on_unreadable(exc)
        return entries

    async def next_due_at(self) -> datetime | None:
        async with self._read() as conn:
            return await _next_due_at(conn)

    async def purge(
        self,
        *,
        older_than: datetime,
        statuses: Collection[ScheduledCommandStatus] = TERMINAL_STATUSES,
        limit: int | None = None,
    ) -> int:
        purgeable = _purgeable(statuses)
        if not purgeable or (limit is not None and limit <= 0):
            return 0
        total = 0
        while limit is None or total < limit:  # in chunks, so one purge never holds the write lock for long
            chunk = _PURGE_CHUNK if limit is None else min(_PURGE_CHUNK, limit - total)
            async with self._write() as conn:
                doomed = (
                    await conn.execute(
                        select(ENTRIES.c.seq, ENTRIES.c.id)
                        .where(ENTRIES.c.status.in_(purgeable), ENTRIES.c.completed_at < older_than)
                        .limit(chunk)
                    )
                ).all()
                if doomed:
                    await conn.execute(delete(ATTEMPTS).where(ATTEMPTS.c.entry_id.in_([r.id for r in doomed])))
                    await conn.execute(delete(ENTRIES).where(ENTRIES.c.seq.in_([r.seq for r in doomed])))
            total += len(doomed)
            if len(doomed) < chunk:
                break
        return total

    async def count_by_command_type(self, status: ScheduledCommandStatus) -> dict[str, int]:
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(ENTRIES.c.command_type, func.count())
                    .where(ENTRIES.c.status == ScheduledCommandStatus(status).value)
                    .group_by(ENTRIES.c.command_type)
                )
            ).all()
        return {str(command_type): int(count) for command_type, count in rows}

    async def count_purgeable(
        self, *, older_than: datetime, statuses: Collection[ScheduledCommandStatus] = TERMINAL_STATUSES
    ) -> int:
        purgeable = _purgeable(statuses)
        if not purgeable:
            return 0
        async with self._read() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count()).where(ENTRIES.c.status.in_(purgeable), ENTRIES.c.completed_at < older_than)
                    )
                ).scalar_one()
            )

    async def requeue_failed(self, *, now: datetime, command_type: str | None = None) -> list[str]:
        conditions = [ENTRIES.c.status == ScheduledCommandStatus.FAILED.value]
        if command_type is not None:
            conditions.append(ENTRIES.c.command_type == command_type)
        async with self._write() as conn:
            ids = list(
                (
                    await conn.execute(
                        update(ENTRIES)
                        .where(*conditions)
                        .values(status=PENDING, scheduled_for=now, retry_count=0, completed_at=None, expires_at=None)
                        .returning(ENTRIES.c.id)
                    )
                ).scalars()
            )
            if ids:
                await self._notify_in(conn, now)
        if ids:
            self._notify_wakeup(now)
        return ids

    # -- recurring schedules (SQL in stores/_schedules_sql.py) ----------------------------------------------------

    async def upsert_schedule(self, schedule: StoredSchedule) -> StoredSchedule:
        async with self._write() as conn:
            return await _schedules_sql.upsert_schedule(conn, schedule, postgresql=self.is_postgresql)

    async def get_schedule(self, name: str) -> StoredSchedule | None:
        async with self._read() as conn:
            return await _schedules_sql.get_schedule(conn, name)

    async def list_schedules(self) -> list[StoredSchedule]:
        async with self._read() as conn:
            return await _schedules_sql.list_schedules(conn)

    async def delete_schedule(self, name: str) -> bool:
        async with self._write() as conn:
            return await _schedules_sql.delete_schedule(conn, name)

    async def set_schedule_paused(self, name: str, paused: bool, *, now: datetime) -> StoredSchedule | None:
        async with self._write() as conn:
            return await _schedules_sql.set_schedule_paused(conn, name, paused, now=now)

    async def record_schedule_run(
        self, name: str, generation: int, *, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        async with self._write() as conn:
            return await _schedules_sql.record_schedule_run(
                conn, name, generation, last_run_at=last_run_at, next_run_at=next_run_at
            )

    async def cancel_occurrences(
        self, name: str, *, now: datetime, keep_generation: int | None = None
    ) -> list[ScheduledCommandEntry]:
        async with self._write() as conn:
            rows = await _schedules_sql.cancel_occurrences(conn, name, now=now, keep_generation=keep_generation)
        return _readable(rows, "cancelled")

    # -- wake-ups across processes ----------------------------------------------------------------------------

    async def _wake_ups(self) -> None:
        """The store's background task. Cancelled while the store is open, which is the event loop shutting down
        (``asyncio.run`` cancels the tasks left at its end), it closes the store's connections: a store opened by
        its first use and never closed does not leak them, and the next event loop opens it afresh."""
        try:
            await (self._listen_postgresql() if self.is_postgresql else self._watch_sqlite())
        except asyncio.CancelledError:
            if not self._closing.is_set():
                self._watcher = None
                await self._dispose()
                self._opened = False
                self._explicit = False
            raise

    async def _listen_postgresql(self) -> None:
        """LISTEN for NOTIFYs from every process; reconnect with backoff when the connection drops."""
        import psycopg

        conninfo = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    if failures:
                        logger.info("wake-up listener reconnected to %s", self.url, extra={"action": "listen"})
                        self._notify_wakeup(datetime.now(UTC))  # anything may have been scheduled meanwhile
                    failures = 0
                    async for notification in conn.notifies():
                        self._notify_wakeup(_parse_due(notification.payload))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the listener must outlive database restarts
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                logger.warning(
                    "wake-up listener on %s lost its connection (%s); polling until it reconnects in %.1fs",
                    self.url,
                    _reason(exc),
                    delay,
                    extra={"action": "listen_failed"},
                )
                await asyncio.sleep(delay)

    async def _watch_sqlite(self) -> None:
        """Notice commits by other processes on the same file and wake listeners.

        ``PRAGMA data_version`` changes when another connection committed; it is read on one dedicated connection
        in autocommit mode (a pooled one would take the write lock and compare versions across connections), every
        50 ms, and sooner (within 5 ms) when the size or modification time of the WAL file changed, which every
        commit changes (a ``stat`` of a local file, not a database call), unless this store itself wrote just now:
        a busy worker's own commits would otherwise make it read ``data_version`` 200 times a second.
        """
        import aiosqlite

        interval = 0.05
        tick = 0.005
        wal = f"{self._url.database or ''}-wal"
        seen: tuple[int, int] | None = None
        checked_at = 0.0
        loop = asyncio.get_running_loop()
        previous: int | None = None
        connection: aiosqlite.Connection | None = None
        try:
            while not self._closing.is_set():
                await asyncio.sleep(tick)
                if self._closing.is_set() or not self._wakeup_listeners:
                    continue
                signature = _file_signature(wal)
                now = loop.time()
                if now - checked_at < interval and (signature == seen or now - self._wrote_at < 2 * tick):
                    seen = signature
                    continue
                seen, checked_at = signature, now
                try:
                    if connection is None:
                        connection = await aiosqlite.connect(self._url.database or "", isolation_level=None)
                    async with connection.execute("PRAGMA data_version") as cursor:
                        row = await cursor.fetchone()
                    version = int(row[0]) if row else 0
                    if previous is not None and version != previous:
                        async with connection.execute(
                            "SELECT min(scheduled_for) FROM scheduled_commands WHERE status = 'PENDING'"
                        ) as cursor:
                            row = await cursor.fetchone()
                        if row and row[0] is not None:
                            self._notify_wakeup(datetime.fromisoformat(row[0]).replace(tzinfo=UTC))
                    previous = version
                except Exception:  # a busy or missing file: try again on the next tick
                    logger.debug("data_version watch failed", exc_info=True, extra={"action": "watch_failed"})
        finally:
            if connection is not None:
                await connection.close()

    # -- operator statistics (SQL in stores/_stats_sql.py) ---------------------------------------------------------

    async def count_finished_since(self, since: datetime, *, bucket: timedelta) -> list[FinishedCount]:
        from . import _stats_sql

        async with self._read() as conn:
            return await _stats_sql.count_finished_since(conn, since, bucket=bucket)

    async def count_running(self, *, now: datetime) -> int:
        from . import _stats_sql

        async with self._read() as conn:
            return await _stats_sql.count_running(conn, now)

    # -- operator actions (SQL in stores/_admin_sql.py) -------------------------------------------------------

    async def dismiss(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        from . import _admin_sql

        async with self._write() as conn:
            row = await _admin_sql.dismiss(conn, entry_id, now=now)
        entries = _readable([row], "dismissed") if row is not None else []
        return entries[0] if entries else None


# -- helpers ----------------------------------------------------------------------------------------------------


class _LockStalls:
    """How long this store lately waited for SQLite's write lock, or held it, in loop (monotonic) seconds.

    A wait that failed (the busy timeout) still counts until a later attempt gets the lock, so a stall longer than
    the busy timeout is measured whole. Only stalls of a second or more are kept, each for one lease duration.
    """

    _MINIMUM = 1.0

    def __init__(self) -> None:
        self._waiting_since: float | None = None
        self._acquired_at = 0.0
        self._seen: list[tuple[float, float]] = []  # (when it ended, how long it was)

    def waiting(self) -> None:
        if self._waiting_since is None:
            self._waiting_since = time.monotonic()

    def acquired(self) -> None:
        self._acquired_at = time.monotonic()
        if self._waiting_since is not None:
            self._note(self._acquired_at - self._waiting_since)
            self._waiting_since = None

    def released(self) -> None:
        self._note(time.monotonic() - self._acquired_at)

    def _note(self, seconds: float) -> None:
        if seconds >= self._MINIMUM:
            self._seen.append((time.monotonic(), seconds))

    def longest(self, *, within: float) -> float:
        """The longest stall that ended less than ``within`` seconds ago (the one going on included), or 0."""
        now = time.monotonic()
        self._seen = [(ended, length) for ended, length in self._seen if now - ended < within]
        current = now - self._acquired_at  # the transaction asking holds the lock: counts as far as it went
        return max([length for _, length in self._seen] + [current if current >= self._MINIMUM else 0.0])


def _minus_seconds(moment: datetime, seconds: float) -> datetime:
    return moment - timedelta(seconds=seconds) if seconds > 0 else moment


def _same_database(a: URL, b: URL) -> bool:
    """Whether two URLs name one database (the driver may differ: a sync session on the store's async URL)."""
    if a.get_backend_name() != b.get_backend_name():
        return False
    if a.get_backend_name() == "sqlite":
        return os.path.realpath(a.database or "") == os.path.realpath(b.database or "")
    return (a.host or "localhost", a.port or 5432, a.database) == (b.host or "localhost", b.port or 5432, b.database)


def _file_signature(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _purgeable(statuses: Collection[ScheduledCommandStatus]) -> list[str]:
    return sorted(ScheduledCommandStatus(s).value for s in set(statuses) & TERMINAL_STATUSES)


async def _next_due_at(conn: AsyncConnection) -> datetime | None:
    statement: Any = (
        _SQLITE_NEXT_DUE
        if conn.dialect.name == "sqlite"
        else select(func.min(ENTRIES.c.scheduled_for)).where(ENTRIES.c.status == PENDING)
    )
    value: object = (await conn.execute(statement)).scalar_one_or_none()
    if isinstance(value, str):  # SQLite's min() loses the column type
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            value = None
    if not isinstance(value, datetime):  # none, or unreadable: recovery dead-letters such a row; poll meanwhile
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _create_tables(connection: Connection) -> None:
    for table in (ENTRIES, ATTEMPTS, _schedules_sql.SCHEDULES, SCHEMA):
        table.create(connection, checkfirst=True)
        for index in table.indexes:  # an index added later is created on databases that predate it
            index.create(connection, checkfirst=True)


def _make_postgresql_tolerant(engine: AsyncEngine) -> None:
    if not event.contains(engine.sync_engine, "connect", _prepare_postgresql_connection):
        event.listen(engine.sync_engine, "connect", _prepare_postgresql_connection)


def _prepare_postgresql_connection(dbapi_connection: Any, _record: Any) -> None:
    # A timestamp Python cannot hold ('-infinity', the year 20000) must fail its own row, not every row read with it.
    install_psycopg_loaders(dbapi_connection.driver_connection)


def _make_sqlite_safe(engine: AsyncEngine) -> None:
    if not event.contains(engine.sync_engine, "connect", _prepare_sqlite_connection):
        event.listen(engine.sync_engine, "connect", _prepare_sqlite_connection)
        event.listen(engine.sync_engine, "begin", _begin_immediate)


def _prepare_sqlite_connection(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not open transactions by itself: _begin_immediate does, taking the write lock at once.
    dbapi_connection.isolation_level = None
    # A text column holding bytes that are not UTF-8 (written by something else) must not make every claim fail:
    # keep the bad bytes as escapes, so the entry reaches the codec, fails validation and is dead-lettered.
    dbapi_connection.driver_connection.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes, fast commits
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """Put the database file in WAL mode (persistent: once done, every later connection only reads it).

    Switching needs an exclusive lock, and SQLite answers "database is locked" at once, without its busy handler
    (waiting could deadlock), while another connection reads: several processes opening a new file at the same
    moment can meet that. The switch is retried for a few seconds; it happens once per database file.
    """
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() == "wal":
        return
    for attempt in range(100):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.002 * min(attempt + 1, 25))  # up to about 4 s in all; only ever when a file is new


def _prepare_sqlite_reader(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.driver_connection.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _entry_to_row(entry: ScheduledCommandEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "command_type": entry.command_type,
        "payload": entry.payload,
        "status": PENDING,
        "priority": entry.priority,
        "scheduled_for": entry.scheduled_for,
        "created_at": entry.created_at,
        "started_at": entry.started_at,
        "completed_at": entry.completed_at,
        "expires_at": entry.expires_at,
        "retry_count": entry.retry_count,
        "attempt_count": entry.attempt_count,
        "max_retries": entry.max_retries,
        "correlation_id": entry.correlation_id,
        "metadata_json": json.dumps(entry.metadata) if entry.metadata is not None else None,
        "idempotency_key": entry.idempotency_key,
        "error_message": entry.error_message,
        "result_payload": entry.result_payload,
        "timeout_seconds": entry.timeout_seconds,
        "lease_owner": None,
        "lease_token": None,
        "lease_expires_at": None,
        "recurring_name": entry.recurring_name,
        "occurrence_at": entry.occurrence_at,
    }


def _entry_to_copy_row(entry: ScheduledCommandEntry) -> tuple[Any, ...]:
    """A new entry's values in the order of ``_PG_BULK_COLUMNS``."""
    return (
        entry.id,
        entry.command_type,
        entry.payload,
        PENDING,
        entry.priority,
        entry.scheduled_for,
        entry.created_at,
        entry.expires_at,
        entry.retry_count,
        entry.attempt_count,
        entry.max_retries,
        entry.correlation_id,
        json.dumps(entry.metadata) if entry.metadata is not None else None,
        entry.idempotency_key,
        entry.timeout_seconds,
        entry.recurring_name,
        entry.occurrence_at,
    )


def _row_to_entry(row: Row[Any]) -> ScheduledCommandEntry:
    """Raises ``UnreadableEntryError`` naming the column and value of a row written behind the library's back."""
    values = row._asdict()
    return read_entry(values, _decode_metadata(values.get("metadata_json"), values.get("id")))


def _convert_each(
    rows: Sequence[Row[Any]],
) -> tuple[list[tuple[int, ScheduledCommandEntry]], list[UnreadableEntryError]]:
    """Each row on its own: the ``(seq, entry)`` of those that convert, and what is wrong with the others."""
    converted: list[tuple[int, ScheduledCommandEntry]] = []
    unreadable: list[UnreadableEntryError] = []
    for row in rows:
        try:
            converted.append((row.seq, _row_to_entry(row)))
        except UnreadableEntryError as exc:
            unreadable.append(exc)
    return converted, unreadable


def _readable(rows: Sequence[Row[Any]], action: str) -> list[ScheduledCommandEntry]:
    """The entries of the rows that convert; the others are logged (the change was made to them all)."""
    converted, unreadable = _convert_each(rows)
    for exc in unreadable:
        _log_unreadable(exc, action)
    return [entry for _, entry in converted]


def _log_unreadable(exc: UnreadableEntryError, action: str) -> None:
    logger.error("%s; %s", exc, action, extra={"action": "unreadable_row", "command_id": exc.entry_id})


async def _dead_letter_unreadable(
    conn: AsyncConnection, unreadable: Sequence[UnreadableEntryError], now: datetime
) -> None:
    """FAILED, with the error naming the column and value: no attempt can run an entry that cannot be read, and
    no retry can fix it. By ``seq``, which is always readable (so even a row whose id is not is quarantined)."""
    for exc in unreadable:
        await conn.execute(
            update(ENTRIES)
            .where(ENTRIES.c.seq == exc.seq)
            .values(
                status=ScheduledCommandStatus.FAILED.value,
                completed_at=now,
                error_message=f"UnreadableEntryError: {exc.description}"[:_ERROR_LIMIT],
                lease_owner=None,
                lease_token=None,
                lease_expires_at=None,
            )
        )
        _log_unreadable(exc, "dead-lettered")


def _decode_metadata(text: str | None, entry_id: object) -> dict[str, str] | None:
    """Metadata as stored; a row whose metadata was damaged outside the library keeps running without it."""
    if text is None:
        return None
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
    except ValueError:
        pass
    logger.warning(
        "entry %s has metadata that is not a JSON object; it is ignored: %.200r",
        entry_id,
        text,
        extra={"action": "bad_metadata", "command_id": entry_id},
    )
    return None


def _attempt_to_row(entry_id: str, attempt: AttemptRecord) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "attempt": attempt.attempt,
        "worker_id": attempt.worker_id,
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
        "outcome": attempt.outcome,
        "error": attempt.error,
    }


def _parse_due(payload: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(payload), UTC)
    except ValueError:
        return datetime.now(UTC)


def _reason(exc: BaseException) -> str:
    original = getattr(exc, "orig", None) or exc
    text_ = str(original).strip().splitlines()
    return text_[0] if text_ else type(original).__name__


# -- executing the insert path through a connection or a caller's session ---------------------------------------


class _Executor:
    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        raise NotImplementedError

    async def copy(self, copy_sql: str, rows: list[tuple[Any, ...]], fallback: Any) -> None:
        """``COPY ... FROM STDIN`` of ``rows`` (PostgreSQL through psycopg 3), in the current transaction; on
        another driver, ``fallback`` (the same insert as one statement of arrays). Driver errors are raised as
        SQLAlchemy's (``IntegrityError``, ``OperationalError``, ...), as if the statement had been executed."""
        await self.execute(fallback, _columns(rows))


def _columns(rows: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    return {name: [row[i] for row in rows] for i, (name, _) in enumerate(_PG_BULK_COLUMNS)}


def _as_dbapi_error(copy_sql: str, exc: Exception) -> Exception:
    import psycopg

    if isinstance(exc, psycopg.Error):
        return DBAPIError.instance(copy_sql, None, exc, psycopg.Error)
    return exc


async def _copy_async(driver: Any, copy_sql: str, rows: list[tuple[Any, ...]], fallback: Any, executor: Any) -> None:
    import psycopg

    if not isinstance(driver, psycopg.AsyncConnection):
        await executor.execute(fallback, _columns(rows))
        return
    try:
        async with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for row in rows:
                await copy.write_row(row)
    except psycopg.Error as exc:
        raise _as_dbapi_error(copy_sql, exc) from exc


class _AsyncExecutor(_Executor):
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return await self._conn.execute(statement, parameters)

    async def copy(self, copy_sql: str, rows: list[tuple[Any, ...]], fallback: Any) -> None:
        raw = await self._conn.get_raw_connection()
        await _copy_async(raw.driver_connection, copy_sql, rows, fallback, self)


class _AsyncSessionExecutor(_Executor):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        # SQLAlchemy's method itself: SQLModel's subclass deprecates execute() in favour of exec(), which only
        # takes SELECTs.
        return await AsyncSession.execute(self._session, statement, parameters)

    async def copy(self, copy_sql: str, rows: list[tuple[Any, ...]], fallback: Any) -> None:
        conn = await self._session.connection()  # begins the session's transaction if it has not yet
        raw = await conn.get_raw_connection()
        await _copy_async(raw.driver_connection, copy_sql, rows, fallback, self)


class _SyncSessionExecutor(_Executor):
    """Runs statements on a sync session; used from a worker thread (see ``_run_sync``)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return Session.execute(self._session, statement, parameters)

    async def copy(self, copy_sql: str, rows: list[tuple[Any, ...]], fallback: Any) -> None:
        import psycopg

        driver = self._session.connection().connection.driver_connection
        if not isinstance(driver, psycopg.Connection):
            await self.execute(fallback, _columns(rows))
            return
        try:
            with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise _as_dbapi_error(copy_sql, exc) from exc


def _run_sync(coroutine: Any) -> Any:
    """Drive a coroutine that never really awaits (the sync-session executor) to completion, in this thread."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("the sync session path awaited something asynchronous")
