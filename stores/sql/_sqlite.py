"""The SQLite backend of ``SqlStore``: the embedded default, one file, any number of processes on one machine.

WAL, a busy timeout, every write transaction ``BEGIN IMMEDIATE`` (it takes the write lock at once, so two writers can
never deadlock upgrading read locks) and one writer at a time per process; reads go through a second engine whose
connections never take the write lock. Other processes' commits on the same file are noticed through
``PRAGMA data_version``. Queries name their index: without ``ANALYZE`` statistics SQLite's planner prefers the
``(status, ...)`` indexes, which read every pending row. The claim (``_sqlite_claim.py``) and the end of a batch of
claims (``_sqlite_finish.py``) are modules of their own, as PostgreSQL's are; the worker runs each whole in one hop
to a thread of the backend's own (``_sqlite_direct.py``), as ``schedule()`` inserts (``_producers.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, event, insert, text
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL, Connection, Engine, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import TextClause

from stores.entries import TERMINAL_STATUSES, ScheduledCommandEntry
from stores.errors import StoreUnavailableError
from stores.queues import Route

from . import _sqlite_claim
from ._group_commit import Finish
from ._producers import SqliteProducer
from ._rows import entry_to_row
from ._sessions import AsyncExecutor, Executor
from ._sqlite_direct import Declined, SqliteDirect
from ._sqlite_finish import finish_batch
from ._tables import ENTRIES, UtcDateTime
from ._urls import mask_url

__all__ = ["SqliteBackend"]

logger = logging.getLogger("stores.sql")

_TERMINAL = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))

# PENDING rows whose due time is no timestamp text: SQLite orders numbers before text and blobs after it, so they are
# the two ends of the next-due index (two range scans, not a scan of every pending row).
_UNREACHABLE_DUE = text(
    "SELECT seq, id, scheduled_for FROM scheduled_commands INDEXED BY ix_scheduled_commands_next_due"
    " WHERE status = 'PENDING' AND scheduled_for < '0001-01-01'"
    " UNION ALL"
    " SELECT seq, id, scheduled_for FROM scheduled_commands INDEXED BY ix_scheduled_commands_next_due"
    " WHERE status = 'PENDING' AND scheduled_for > '9999-12-31 23:59:59.999999'"
    " LIMIT :limit"
)
_NEXT_DUE = text(
    "SELECT min(scheduled_for) FROM scheduled_commands INDEXED BY ix_scheduled_commands_next_due"
    " WHERE status = 'PENDING'"
)

_FINISHED_SINCE: TextClause = text(
    f"""
    SELECT status,
           (CAST(round((julianday(substr(completed_at, 1, 19)) - julianday(:since_second)) * 86400) AS INTEGER)
                * 1000000 + CAST(substr(completed_at, 21, 6) AS INTEGER) - :since_micro) / :bucket_us AS bucket,
           count(*) AS finished
    FROM scheduled_commands
    WHERE status IN ({_TERMINAL}) AND completed_at >= :since AND typeof(completed_at) = 'text'
      AND julianday(substr(completed_at, 1, 19)) IS NOT NULL
    GROUP BY status, bucket
    """
).bindparams(bindparam("since", type_=UtcDateTime))


class SqliteBackend:
    """``Backend`` for SQLite (see the module docstring)."""

    name = "sqlite"
    skips_limited_queues = False
    finishes_dependants_apart = False
    reads_take_write_lock = True
    writes_while_building = False
    watch_stops_itself = True  # a cancelled aiosqlite call could outlive the event loop: it stops when told

    def __init__(self, url: URL, *, direct: bool = True) -> None:
        """``direct``: whether ``schedule()`` and the worker's writes may use connections of the backend's own (the
        store built the engine); an engine the caller built carries what the URL may not (``creator``,
        ``connect_args``, listeners), so everything goes through it."""
        self._url = url
        self._direct_allowed = direct
        self._shown_url = mask_url(url)
        self._write_lock = asyncio.Lock()  # one writer per process; the others wait here, not in busy loops
        #: The WAL file's signature (size, modification time) right after this store's last write: the watcher
        #: tells this process's commits from other processes' by it.
        self._own_wal: tuple[int, int] | None = None
        self._wal = f"{url.database or ''}-wal"
        self.lock_stalls = LockStalls()
        self._producer: SqliteProducer | None = None
        self._direct: SqliteDirect | None = None

    def create_engines(self) -> tuple[AsyncEngine, AsyncEngine | None]:
        engine = create_async_engine(self._url, connect_args={"timeout": 30})
        self.prepare_engine(engine)
        reader = create_async_engine(self._url, connect_args={"timeout": 30})
        event.listen(reader.sync_engine, "connect", _prepare_reader)
        return engine, reader

    def prepare_engine(self, engine: AsyncEngine) -> None:
        # WAL, busy timeout and BEGIN IMMEDIATE are not optional, on an engine the caller configured too.
        _prepare_sync_engine(engine.sync_engine)

    def check_location(self) -> None:
        # Said plainly here rather than as the driver's "unable to open database file" (and a failed aiosqlite
        # connect leaves a thread behind that outlives the event loop).
        directory = os.path.dirname(os.path.abspath(self._url.database or ""))
        if not os.path.isdir(directory):
            raise StoreUnavailableError(self._shown_url, f"the directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise StoreUnavailableError(self._shown_url, f"the directory {directory} is not writable")

    @contextlib.asynccontextmanager
    async def write(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        async with self._write_lock:
            stalls = self.lock_stalls
            stalls.waiting()
            async with engine.begin() as conn:
                stalls.acquired()
                try:
                    yield conn
                finally:
                    stalls.released()
        self._own_wal = _file_signature(self._wal)

    def single_statement(self, engine: AsyncEngine) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        return self.write(engine)

    async def lock_schema(self, conn: AsyncConnection) -> None:
        return None  # the write transaction (BEGIN IMMEDIATE) holds the database's write lock already

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
        return await conn.run_sync(
            _sqlite_claim.claim,
            now=now,
            limit=limit,
            worker_id=worker_id,
            lease_expires_at=lease_expires_at,
            route=route,
            limited=limited,
        )

    async def claim_committed(self, **claim: Any) -> Sequence[Any] | None:
        """``claim`` (its keyword arguments), committed, in one hop to the backend's own thread; None where the
        database is no plain file (the store claims through its engine then)."""
        direct = self._direct_writer()
        if direct is None:
            return None
        async with self._writing():
            return await direct.run(_sqlite_claim.claim, **claim)

    async def finish_committed(self, requests: list[Finish]) -> Sequence[Any] | None:
        """``finish_batch``, committed, in one hop to the backend's own thread; None where that cannot be: the
        database is no plain file, or an entry of the batch has dependants (rolled back: the store ends the batch
        in its own transaction, which resolves them)."""
        direct = self._direct_writer()
        if direct is None:
            return None
        try:
            async with self._writing():
                return await direct.run(_finish_without_dependants, requests=requests)
        except Declined:
            return None

    def _direct_writer(self) -> SqliteDirect | None:
        if self._plain_file() is None:
            return None
        if self._direct is None:
            self._direct = SqliteDirect(self._url, _prepare_sync_engine)
        return self._direct

    def _plain_file(self) -> str | None:
        """The database's path, unless it is in memory or a URI with options, or the caller built the engine (those
        take the engine's path)."""
        path = self._url.database
        if not self._direct_allowed:
            return None
        if not path or path == ":memory:" or path.startswith("file:") or self._url.query:
            return None
        return path

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """One write on a connection of this backend's own, as the engine's transactions: one writer per process,
        its wait and hold counted as stalls (the whole hop counts as the wait for SQLite's lock)."""
        async with self._write_lock:
            stalls = self.lock_stalls
            stalls.waiting()
            yield
            stalls.acquired()
            stalls.released()
        self._own_wal = _file_signature(self._wal)

    async def insert_new(self, executor: Executor, entries: Sequence[ScheduledCommandEntry]) -> None:
        # sqlite3's executemany is a loop in C over one prepared statement.
        await executor.execute(insert(ENTRIES), [entry_to_row(e) for e in entries])

    async def insert_streamed(self, executor: Executor, chunks: AsyncIterable[Sequence[ScheduledCommandEntry]]) -> None:
        await self.insert_new(executor, [entry async for chunk in chunks for entry in chunk])

    async def insert_committed(self, engine: AsyncEngine, entries: Sequence[ScheduledCommandEntry]) -> None:
        # The producer runs the whole transaction (on the event loop's thread when the write lock is free at once,
        # else on its own); a database that is no plain file, or an engine the caller built, takes the engine's path.
        path = self._plain_file()
        if path is None:
            async with self.write(engine) as conn:
                await self.insert_new(AsyncExecutor(conn), entries)
            return
        if self._producer is None:
            self._producer = SqliteProducer(path, engine.dialect)
        async with self._writing():
            await self._producer.insert(entries)

    async def close_producer(self) -> None:
        if self._producer is not None:
            await self._producer.close()
        if self._direct is not None:
            await self._direct.close()

    def abandon_producer(self) -> None:
        if self._producer is not None:
            self._producer.abandon()
        if self._direct is not None:
            self._direct.abandon()

    def insert_ignoring_conflicts(self, table: Table, key: str, where: Any = None) -> Any:
        return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key], index_where=where)

    async def notify(self, executor: Executor, due: datetime) -> None:
        return None  # other processes notice commits through PRAGMA data_version (see watch)

    async def notify_finished(self, executor: Executor, entry_ids: Sequence[str]) -> None:
        return None  # other processes' waiters notice commits through PRAGMA data_version (see watch)

    async def finish_batch(
        self, conn: AsyncConnection, requests: list[Finish], *, skip_dependants: bool = False
    ) -> Sequence[Any]:
        return await conn.run_sync(finish_batch, requests)

    def unreadable_timestamp(self, column: Any) -> Any:
        # SQLite orders numbers before text and blobs after it; a timestamp text is between these bounds.
        return (column < text("'0001-01-01'")) | (column > text("'9999-12-31 23:59:59.999999'"))

    async def unreachable_due(self, conn: AsyncConnection, limit: int) -> Sequence[Row[Any]]:
        return (await conn.execute(_UNREACHABLE_DUE, {"limit": limit})).all()

    async def next_due_at(self, conn: AsyncConnection) -> datetime | None:
        value: object = (await conn.execute(_NEXT_DUE)).scalar_one_or_none()
        if isinstance(value, str):  # SQLite's min() loses the column type
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                value = None
        if not isinstance(value, datetime):  # none, or unreadable: recovery dead-letters such a row; poll meanwhile
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def expired_before(self, now: datetime, lease_duration: timedelta) -> datetime:
        # SQLite has one write lock: while something held it (a process paused inside a transaction, a long
        # transaction of another program), no worker could renew its leases. A lease that expired within the longest
        # such stall seen lately is not taken over yet: its owner gets the time to renew it.
        stall = self.lock_stalls.longest(within=lease_duration.total_seconds())
        return _minus_seconds(now, stall)

    def lock_rows(self, query: Any, *, skip_locked: bool) -> Any:
        return query  # the write transaction (BEGIN IMMEDIATE) excludes every other writer

    async def count_finished_since(self, conn: AsyncConnection, since: datetime, bucket_us: int) -> Sequence[Any]:
        parameters = {
            "since": since,
            "since_second": since.strftime("%Y-%m-%d %H:%M:%S"),
            "since_micro": since.microsecond,
            "bucket_us": bucket_us,
        }
        return (await conn.execute(_FINISHED_SINCE, parameters)).all()

    async def watch(
        self,
        wake: Callable[[datetime], None],
        listening: Callable[[], bool],
        closing: asyncio.Event,
        watched: Callable[[], Collection[str]],
        finished: Callable[[Iterable[str]], None],
    ) -> None:
        """Notice commits by other processes on the same file and wake listeners; after such a commit (and at the
        first read), tell the waiters which of the entries they wait for are finished.

        ``PRAGMA data_version`` changes when another connection committed; it is read on one dedicated connection
        in autocommit mode (a pooled one would take the write lock and compare versions across connections), every
        50 ms, and sooner (within 5 ms) when the size or modification time of the WAL file changed, which every
        commit changes (a ``stat`` of a local file, not a database call), unless the change is this store's own
        last write (the file as it was right after it): a busy worker's own commits would otherwise make it read
        ``data_version`` 200 times a second. (Skipping every change for 10 ms after an own write, as before, left a
        busy worker deaf to other processes' commits for most of its time: the 50 ms poll heard them.)
        """
        import aiosqlite

        interval = 0.05
        tick = 0.005
        seen: tuple[int, int] | None = None
        checked_at = 0.0
        loop = asyncio.get_running_loop()
        previous: int | None = None
        connection: aiosqlite.Connection | None = None
        try:
            while not closing.is_set():
                await asyncio.sleep(tick)
                if closing.is_set() or not listening():
                    continue
                signature = _file_signature(self._wal)
                now = loop.time()
                if now - checked_at < interval and (signature == seen or signature == self._own_wal):
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
                            wake(datetime.fromisoformat(row[0]).replace(tzinfo=UTC))
                    if version != previous and (waited := list(watched())):
                        finished(await _finished_among(connection, waited))
                    previous = version
                except Exception:  # a busy or missing file: try again on the next tick
                    logger.debug("data_version watch failed", exc_info=True, extra={"action": "watch_failed"})
        finally:
            if connection is not None:
                await connection.close()


async def _finished_among(connection: Any, entry_ids: list[str]) -> list[str]:
    """Those of ``entry_ids`` in a terminal status, or running with a cancel request (their worker re-reads them),
    read on the watcher's connection (by the unique id index)."""
    found: list[str] = []
    for start in range(0, len(entry_ids), 500):
        chunk = entry_ids[start : start + 500]
        marks = ", ".join("?" * len(chunk))
        async with connection.execute(
            f"SELECT id FROM scheduled_commands WHERE id IN ({marks}) AND (status IN ({_TERMINAL})"
            " OR (status = 'PROCESSING' AND cancel_requested_at IS NOT NULL))",
            chunk,
        ) as cursor:
            found.extend(str(row[0]) for row in await cursor.fetchall())
    return found


class LockStalls:
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


def _file_signature(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _finish_without_dependants(conn: Connection, requests: list[Finish]) -> Sequence[Any]:
    """``finish_batch``, declined (rolled back) when an entry it changed has dependants to resolve."""
    rows = finish_batch(conn, requests)
    if any(row.has_dependants for row in rows):
        raise Declined
    return rows


def _prepare_sync_engine(engine: Engine) -> None:
    """WAL, the busy timeout and BEGIN IMMEDIATE on an engine's connections (idempotent): the async engine's
    (through its synchronous facade) and the backend's own thread's."""
    if not event.contains(engine, "connect", _prepare_connection):
        event.listen(engine, "connect", _prepare_connection)
        event.listen(engine, "begin", _begin_immediate)


def _prepare_connection(dbapi_connection: Any, _record: Any) -> None:
    # The driver must not open transactions by itself: _begin_immediate does, taking the write lock at once.
    dbapi_connection.isolation_level = None
    # A text column holding bytes that are not UTF-8 (written by something else) must not make every claim fail:
    # keep the bad bytes as escapes, so the entry reaches the codec, fails validation and is dead-lettered.
    # (aiosqlite's adapter holds the driver's connection; the sqlite3 driver's is the connection itself.)
    driver_connection = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    driver_connection.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
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


def _prepare_reader(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.driver_connection.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _begin_immediate(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")
