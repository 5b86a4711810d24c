"""The fast path of ``SqlStore.add`` (``schedule()`` outside a caller's session): new entries written straight
through the driver, one batch at a time (the store's group commit gathers concurrent callers into one batch).

SQLAlchemy's async layer costs more than the work for a one-row insert (a greenlet switch per call, and on SQLite
about 16 thread hops through aiosqlite). So:

- PostgreSQL: one dedicated psycopg connection in autocommit mode sends ONE prepared statement per batch, the INSERT
  of the rows (one row's values, or a batch as JSON) and the wake-up NOTIFY together: one round trip, one transaction,
  committed durably before the call returns.
- SQLite: a ``sqlite3`` connection does the whole transaction (``BEGIN IMMEDIATE``, the insert, ``COMMIT``): on the
  event loop's thread when the write lock is free at once (no hop at all), else on a dedicated thread that waits for
  it (one hop per batch); ``SqliteProducer`` says when which.

The columns and their values come from the definitions the slow path uses (``BULK_COLUMNS`` and its row builder on
PostgreSQL, ``entry_to_row`` and the table's column types on SQLite), so a column added there flows through here.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy.engine import URL, Dialect
from sqlalchemy.exc import DBAPIError

from stores.entries import ScheduledCommandEntry

from ._rows import entry_to_row
from ._tables import ENTRIES

__all__ = ["PostgresqlProducer", "SqliteProducer"]


class PostgresqlProducer:
    """Inserts new entries and wakes the workers, in one prepared statement on a connection of its own.

    Args:
        url: the store's database.
        one: the INSERT ... NOTIFY of one entry, with psycopg placeholders: the columns' values, channel and due.
        many: the same for several entries: their rows as one JSON parameter, channel and due.
        columns: turns entries into the column parameters of ``one`` (a single entry) or ``many``.
    """

    def __init__(
        self, url: URL, one: str, many: str, columns: Callable[[Sequence[ScheduledCommandEntry]], list[Any]]
    ) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._one = one
        self._many = many
        self._columns = columns
        self._conn: Any = None

    async def insert(self, entries: Sequence[ScheduledCommandEntry], channel: str, due: datetime) -> None:
        """Insert and notify, committed. Driver errors are raised as SQLAlchemy's (``IntegrityError`` for an id
        already stored, ``OperationalError`` for a database that is away), as the slow path raises them."""
        import psycopg

        statement = self._one if len(entries) == 1 else self._many
        parameters = [*self._columns(entries), channel, str(due.timestamp())]
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            await self._conn.execute(statement, parameters, prepare=True)
        except psycopg.Error as exc:
            if self._conn is not None and (self._conn.closed or self._conn.broken):
                await self.close()  # the next batch connects afresh
            raise DBAPIError.instance(statement, None, exc, psycopg.Error) from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    def abandon(self) -> None:
        """Drop the connection of an event loop that is gone: it cannot be closed through that loop, so its socket is
        closed at the libpq level (dropping it open would leave it to the garbage collector, with a ResourceWarning)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()


class SqliteProducer:
    """Inserts new entries in one write transaction per batch: on the event loop's thread when SQLite's write lock is
    free at once, else on a thread and connection of its own, which waits for it.

    A hop to another thread and back cost more than SQLite's own work for a small batch (about 60 µs to insert and
    commit one entry, with WAL and ``synchronous=NORMAL``: no fsync). So a batch is first tried on a connection of
    the event loop's thread whose busy timeout is zero: ``BEGIN IMMEDIATE`` takes the write lock or fails at once,
    and the loop never waits for another process; a failed try goes to the producer thread, whose connection waits
    for the lock as every other. That connection also never checkpoints (a checkpoint fsyncs the database): every
    ``_THREAD_EVERY``-th batch takes the thread, whose connection checkpoints as SQLite's default does, so the WAL
    stays bounded in a process that only schedules.
    """

    #: One batch in this many goes to the producer thread, whose commits checkpoint the WAL when it has grown.
    _THREAD_EVERY = 64

    def __init__(self, path: str, dialect: Dialect) -> None:
        self._path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the producer thread
        self._inline: sqlite3.Connection | None = None  # used only on the event loop's thread
        self._batches = 0
        self._statement: str | None = None
        #: The position in a row and the conversion of each column whose type converts its values.
        self._processors: list[tuple[int, Callable[[Any], Any], bool]] = []
        self._dialect = dialect

    async def insert(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        """Insert the entries in one transaction (see the class docstring for where). Driver errors are raised as
        SQLAlchemy's, as the slow path raises them."""
        rows = [entry_to_row(e) for e in entries]
        statement, values = self._values(rows)
        self._batches += 1
        if self._batches % self._THREAD_EVERY:
            try:
                self._write(self._inline_connection, self._close_inline, statement, values, waits=False)
                return
            except _LockBusy:
                pass  # another connection writes: wait for it on the producer thread
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-producer")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write_on_thread, statement, values)

    def _values(self, rows: list[dict[str, Any]]) -> tuple[str, list[list[Any]]]:
        statement = self._statement or self._prepare(rows[0])
        values = []
        for row in rows:
            value = list(row.values())  # in the order of the statement's columns: every row is ``entry_to_row``'s
            for i, process, keeps_none in self._processors:
                if value[i] is not None or not keeps_none:
                    value[i] = process(value[i])
            values.append(value)
        return statement, values

    def _write_on_thread(self, statement: str, values: list[list[Any]]) -> None:
        self._write(self._thread_connection, self._close_connection, statement, values, waits=True)

    @staticmethod
    def _write(
        connection: Callable[[], sqlite3.Connection],
        drop: Callable[[], None],
        statement: str,
        values: list[list[Any]],
        *,
        waits: bool,
    ) -> None:
        """One transaction on ``connection()``; on a connection that ``waits`` not for the write lock, ``_LockBusy``
        if it is held. A connection that could not end its transaction is dropped (the next batch opens another)."""
        conn: sqlite3.Connection | None = None
        try:
            conn = connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not waits and exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
                    raise _LockBusy from exc
                raise
            try:
                conn.executemany(statement, values)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            if conn is not None and conn.in_transaction:
                drop()
            raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc

    def _prepare(self, row: dict[str, Any]) -> str:
        """The INSERT of the columns of ``entry_to_row``, and each one's conversion from the table's column types
        (a conversion that keeps None is not called for None)."""
        names = list(row)
        for i, name in enumerate(names):
            # The dialect's own type, as SQLAlchemy binds it: the generic one's processor left the text of a
            # datetime to sqlite3's default adapter, which writes no ".000000" for a whole second.
            column_type = ENTRIES.c[name].type.dialect_impl(self._dialect)
            process = column_type.bind_processor(self._dialect)
            if process is not None:
                self._processors.append((i, process, process(None) is None))
        self._statement = f"INSERT INTO scheduled_commands ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
        return self._statement

    def _thread_connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = self._connect(busy_timeout_ms=30_000)
        return self._conn

    def _inline_connection(self) -> sqlite3.Connection:
        if self._inline is None:
            conn = self._connect(busy_timeout_ms=0)
            try:
                conn.execute("PRAGMA wal_autocheckpoint=0")
            except BaseException:
                conn.close()
                raise
            self._inline = conn
        return self._inline

    def _connect(self, *, busy_timeout_ms: int) -> sqlite3.Connection:
        # Not bound to its thread: closing may happen from another (a store whose event loop is gone is abandoned).
        conn = sqlite3.connect(
            self._path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            conn.execute("PRAGMA synchronous=NORMAL")  # as the store's own connections: WAL + NORMAL
            conn.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _close_inline(self) -> None:
        conn, self._inline = self._inline, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    async def close(self) -> None:
        self._close_inline()
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_connection)
            executor.shutdown(wait=False)

    def abandon(self) -> None:
        """Close without waiting (the event loop it served is gone); the thread ends once the connection is closed."""
        self._close_inline()
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._close_connection)
            executor.shutdown(wait=False)


class _LockBusy(Exception):
    """SQLite's write lock is held by another connection, and this one does not wait for it."""
