"""What every ``SqlStore`` does the same on both databases before any query: its engines, opening (connect,
create or check the schema), closing, the event loop it belongs to, transactions, and the wake-up task."""

from __future__ import annotations

import asyncio
import contextlib
from abc import abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stores._group_commit import GroupCommit
from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandEntry
from stores.errors import StoreError, StoreUnavailableError

from ._backend import Backend, reason
from ._group_commit import Finish, Finished, finish_group_commit
from ._pg_worker import PgWorker
from ._postgresql import INDEX_BUILD_LOCK_KEY, PostgresqlBackend
from ._schema import build_concurrently, ensure_schema, finish_concurrently
from ._sqlite import SqliteBackend
from ._tables import SCHEMA_VERSION
from ._urls import mask_url, to_async_url

__all__ = ["SqlConnections"]

#: The most ``schedule()`` calls whose entries one producer transaction carries.
_MAX_PRODUCER_BATCH = 500


class SqlConnections(ScheduledCommandStore):
    """The connections of a SQL store (see ``SqlStore``, which adds the queries)."""

    def __init__(self, url_or_engine: str | AsyncEngine, *, pool_size: int = 10) -> None:
        super().__init__()
        if isinstance(url_or_engine, AsyncEngine):
            self._engine: AsyncEngine | None = url_or_engine
            self._url = url_or_engine.url
            self._owns_engine = False
        else:
            self._engine = None
            self._url = to_async_url(url_or_engine)
            self._owns_engine = True
        self._pool_size = pool_size
        self._backend = self._new_backend()
        if self._engine is not None:
            self._backend.prepare_engine(self._engine)
        self._opened = False
        self._explicit = False  # opened by open() / async with, not by first use
        self._open_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._reader: AsyncEngine | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing = asyncio.Event()
        self._finisher = finish_group_commit(self._finish_batch)
        self._producers = self._producer_group_commit()
        self._schema_found: int | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _new_backend(self) -> Backend:
        name = self._url.get_backend_name()
        if name == "postgresql":
            return PostgresqlBackend(self._url, pool_size=self._pool_size, direct_producer=self._owns_engine)
        if name == "sqlite":
            return SqliteBackend(self._url, direct=self._owns_engine)
        raise ValueError(f"SqlStore supports SQLite and PostgreSQL, not {name} ({mask_url(self._url)})")

    @property
    def description(self) -> str:
        return f"SqlStore({mask_url(self._url)})"

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return mask_url(self._url)

    @property
    def is_postgresql(self) -> bool:
        return self._backend.name == "postgresql"

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
        self._backend.abandon_producer()
        self._backend = self._new_backend()
        self._open_lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self._finisher = finish_group_commit(self._finish_batch)
        self._producers = self._producer_group_commit()
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
            self._backend.check_location()
            if self._engine is None:
                self._engine, self._reader = self._backend.create_engines()
            try:
                await self._ensure_schema()
            except (OperationalError, InterfaceError, OSError) as exc:
                await self._dispose()
                raise StoreUnavailableError(self.url, reason(exc)) from exc
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
                self._closing.set()
                if not self._backend.watch_stops_itself:
                    self._watcher.cancel()
                await asyncio.gather(self._watcher, return_exceptions=True)
                self._watcher = None
            await self._dispose()
            self._opened = False
            self._explicit = False

    async def _dispose(self) -> None:
        await self._backend.close_producer()
        if self._reader is not None:
            await self._reader.dispose()
            self._reader = None
        if self._engine is not None and self._owns_engine:
            await self._engine.dispose()
            self._engine = None

    async def _ensure_schema(self) -> None:
        with self._unavailable_as_store_error():
            await build_concurrently(self.engine, self._backend, INDEX_BUILD_LOCK_KEY)
        async with self._transaction() as conn:
            self._schema_found = await ensure_schema(conn, self._backend, self.url)
        with self._unavailable_as_store_error():
            await finish_concurrently(self.engine, self._backend)

    async def migrate(self) -> tuple[int | None, int]:
        """Bring the database's schema to this version's now, as opening does (migrating an older one under a lock
        that makes concurrent openers wait), and open the store; whoever calls it closes the store.

        Returns:
            The schema version found (``None``: the database was new) and the version it has now.

        Raises:
            SchemaVersionError: the database's schema is newer than this version of the library.
            StoreUnavailableError: the database cannot be reached.

        .. versionadded:: 0.2
        """
        await self.open()
        return self._schema_found, SCHEMA_VERSION

    # -- transactions -----------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _unavailable_as_store_error(self) -> Iterator[None]:
        """Driver errors that mean "the database is away" become ``StoreUnavailableError`` (retried by the
        service); everything else propagates as it is."""
        try:
            yield
        except (OperationalError, InterfaceError, OSError) as exc:
            raise StoreUnavailableError(self.url, reason(exc)) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StoreUnavailableError(self.url, reason(exc)) from exc
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
        with self._unavailable_as_store_error():
            async with self._backend.write(engine) as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def _single_statement(self) -> AsyncIterator[AsyncConnection]:
        """A connection for statements atomic by themselves (PostgreSQL: autocommit, saving the BEGIN and COMMIT
        round trips; SQLite: a write transaction)."""
        await self._open_on_first_use()
        engine = self.engine
        with self._unavailable_as_store_error():
            async with self._backend.single_statement(engine) as conn:
                yield conn

    async def _direct_worker(self) -> PgWorker | None:
        """The psycopg connections of the worker's statements (``_pg_worker.py``), the store opened; None where
        they go through the engine (SQLite, or an engine the caller built)."""
        await self._open_on_first_use()
        return self._backend.worker if isinstance(self._backend, PostgresqlBackend) else None

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A read. Reads run concurrently with writes: on SQLite through a second engine whose connections never
        take the write lock (WAL readers see the last commit); through the write path for an engine passed in."""
        await self._open_on_first_use()
        if self._reader is None and self._backend.reads_take_write_lock:
            async with self._write() as conn:
                yield conn
            return
        with self._unavailable_as_store_error():
            async with (self._reader or self.engine).connect() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read of several statements that all see the database at one moment: PostgreSQL's REPEATABLE READ
        (one snapshot for the transaction, where READ COMMITTED takes one per statement); on SQLite a read
        transaction begun at once on a reader connection (WAL: it sees the commit it started on), else the write
        path."""
        await self._open_on_first_use()
        if self._backend.name == "postgresql":
            with self._unavailable_as_store_error():
                async with self.engine.connect() as conn:
                    await conn.execution_options(isolation_level="REPEATABLE READ")
                    yield conn
            return
        if self._reader is None:
            async with self._write() as conn:
                yield conn
            return
        with self._unavailable_as_store_error():
            async with self._reader.connect() as conn:
                await conn.exec_driver_sql("BEGIN")  # sqlite3 begins no transaction for a SELECT by itself
                yield conn

    # -- wake-ups across processes ----------------------------------------------------------------------------

    async def _wake_ups(self) -> None:
        """The store's background task. Cancelled while the store is open, which is the event loop shutting down
        (``asyncio.run`` cancels the tasks left at its end), it closes the store's connections: a store opened by
        its first use and never closed does not leak them, and the next event loop opens it afresh."""
        try:
            await self._backend.watch(
                self._notify_wakeup,
                lambda: bool(self._wakeup_listeners or self._finish_listeners),
                self._closing,
                self._finish_listeners.keys,
                self._notify_finished,
            )
        except asyncio.CancelledError:
            if not self._closing.is_set():
                self._watcher = None
                await self._dispose()
                self._opened = False
                self._explicit = False
            raise

    # -- scheduling outside a caller's session ----------------------------------------------------------------

    def _producer_group_commit(self) -> GroupCommit[Sequence[ScheduledCommandEntry], None]:
        """Concurrent ``add`` calls share transactions: each returns once its own entries are committed; an entry
        that fails (an id already stored) fails only its own call; the database being away fails each caller."""
        return GroupCommit(self._insert_batch, max_batch=_MAX_PRODUCER_BATCH, fail_together=(StoreUnavailableError,))

    async def _insert_batch(self, requests: list[Sequence[ScheduledCommandEntry]]) -> list[None]:
        entries = [entry for request in requests for entry in request]
        with self._unavailable_as_store_error():
            await self._backend.insert_committed(self.engine, entries)
        return [None] * len(requests)

    @abstractmethod
    async def _finish_batch(self, requests: list[Finish]) -> list[Finished | None]:
        """Write a batch of outcomes (the group commit calls it)."""
