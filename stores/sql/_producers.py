"""The fast path of ``SqlStore.add`` (``schedule()`` outside a caller's session): new entries written straight
through the driver, one batch at a time (the store's group commit gathers concurrent callers into one batch).

SQLAlchemy's async layer costs more than the work for a one-row insert (a greenlet switch per call, and on SQLite
about 16 thread hops through aiosqlite). So:

- PostgreSQL: one dedicated psycopg connection in autocommit mode sends ONE prepared statement per batch, the INSERT
  of the rows (one row's values, or a batch as JSON) and the wake-up NOTIFY together: one round trip, one transaction,
  committed durably before the call returns.
- SQLite: one dedicated thread owns one ``sqlite3`` connection and does the whole transaction (``BEGIN IMMEDIATE``,
  the insert, ``COMMIT``) per hop: one thread hop per batch.

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
    """Inserts new entries in one write transaction per batch, on a thread and connection of its own."""

    def __init__(self, path: str, dialect: Dialect) -> None:
        self._path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the producer thread
        self._statement: str | None = None
        #: The position in a row and the conversion of each column whose type converts its values.
        self._processors: list[tuple[int, Callable[[Any], Any], bool]] = []
        self._dialect = dialect

    async def insert(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        """Insert the entries in one transaction; one hop to the producer thread. Driver errors are raised as
        SQLAlchemy's, as the slow path raises them."""
        rows = [entry_to_row(e) for e in entries]
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-producer")
        await asyncio.get_running_loop().run_in_executor(self._executor, self._write, rows)

    def _write(self, rows: list[dict[str, Any]]) -> None:
        statement = self._statement or self._prepare(rows[0])
        values = []
        for row in rows:
            value = list(row.values())  # in the order of the statement's columns: every row is ``entry_to_row``'s
            for i, process, keeps_none in self._processors:
                if value[i] is not None or not keeps_none:
                    value[i] = process(value[i])
            values.append(value)
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(statement, values)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
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

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA synchronous=NORMAL")  # as the store's own connections: WAL + NORMAL
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
        return self._conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_connection)
            executor.shutdown(wait=False)

    def abandon(self) -> None:
        """Close without waiting (the event loop it served is gone); the thread ends once the connection is closed."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.submit(self._close_connection)
            executor.shutdown(wait=False)
