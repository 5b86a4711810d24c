"""The worker's writes on SQLite (its claims and outcome batches), each a whole transaction in one hop to a thread of
the store's own, as the producer writes ``schedule()``'s entries (``_producers.py``).

Through the async engine every statement is a hop to aiosqlite's thread and back (a future, a wake-up of the event
loop, a greenlet switch): a claim is about ten statements and an outcome batch four, so at the default concurrency
those hops cost the worker about twenty times the CPU of the commands it ran (``docs/performance.md``). Here the same
functions run on a synchronous engine (the standard library's ``sqlite3`` driver, their statements at the driver
level, ``_sqlite_driver.py``) that lives on one thread: the transaction, from ``BEGIN IMMEDIATE`` to ``COMMIT``, is
one hop. Its connection is set up as the async
engine's (WAL, the busy timeout, ``BEGIN IMMEDIATE``, text that is no UTF-8 kept as escapes), and the store's one
writer per process still orders it among the other writes.

An operation that finds it cannot finish here (an outcome batch whose entries have dependants, which the store
resolves in its own transaction) raises ``Declined``: its transaction is rolled back, nothing of it is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import NullPool

__all__ = ["Declined", "SqliteDirect"]

T = TypeVar("T")


class Declined(Exception):
    """Raised by an operation to roll its transaction back and leave the work to the store's async engine."""


class SqliteDirect:
    """Runs synchronous operations, each in one write transaction, on a thread and connection of its own.

    Args:
        url: the store's database (a plain file).
        prepare: sets up the synchronous engine's connections as the async engine's.
    """

    def __init__(self, url: URL, prepare: Callable[[Engine], None]) -> None:
        self._url = url.set(drivername="sqlite")
        self._prepare = prepare
        self._executor: ThreadPoolExecutor | None = None
        self._engine: Engine | None = None  # created, used and disposed of on the thread only
        self._conn: Connection | None = None

    async def run(self, operation: Callable[..., T], /, **arguments: Any) -> T:
        """``operation(connection, **arguments)`` in one write transaction, committed when it returns. Driver errors
        are SQLAlchemy's, as the async engine raises them; ``Declined`` when the operation declined.

        A call cancelled while its transaction runs does not stop it (the store's claim waits for such a claim and
        gives its entries back, ``SqlClaims._give_back``)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-worker")
        call = functools.partial(self._transaction, operation, arguments)
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _transaction(self, operation: Callable[..., T], arguments: dict[str, Any]) -> T:
        conn = self._conn or self._connect()
        try:
            with conn.begin():
                return operation(conn, **arguments)
        except Declined:
            raise
        except BaseException:
            self._close_connection()  # whatever broke, the next operation starts on a new connection
            raise

    def _connect(self) -> Connection:
        # One connection, kept: checking one out of a pool and back (with its reset) for every transaction cost
        # about as much as the claim's statements.
        if self._engine is None:
            self._engine = create_engine(self._url, connect_args={"timeout": 30}, poolclass=NullPool)
            self._prepare(self._engine)
        self._conn = self._engine.connect()
        return self._conn

    def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _dispose(self) -> None:
        self._close_connection()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, self._dispose)
            executor.shutdown(wait=False)

    def abandon(self) -> None:
        """Close without waiting (the event loop it served is gone); the thread ends once the engine is disposed."""
        executor, self._executor = self._executor, None
        if executor is not None:
            with contextlib.suppress(RuntimeError):  # the interpreter is shutting down
                executor.submit(self._dispose)
            executor.shutdown(wait=False)
