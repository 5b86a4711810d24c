"""Joining a caller's transaction: the insert path runs through an ``Executor``, which is a connection of the store,
a caller's ``AsyncSession``, or a caller's sync ``Session`` (driven from a worker thread), and writes PostgreSQL's
``COPY`` through whichever driver connection is underneath."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

__all__ = ["AsyncExecutor", "AsyncSessionExecutor", "Executor", "SyncSessionExecutor", "run_sync"]


class Executor:
    """Where the insert path's statements run: a connection of the store, or a caller's session."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        raise NotImplementedError

    async def copy(
        self, copy_sql: str, rows: list[tuple[Any, ...]], fallback: Any, fallback_parameters: Callable[[], Any]
    ) -> None:
        """``COPY ... FROM STDIN`` of ``rows`` (PostgreSQL through psycopg 3), in the current transaction; on
        another driver, ``fallback`` (the same insert as one statement of arrays). Driver errors are raised as
        SQLAlchemy's (``IntegrityError``, ``OperationalError``, ...), as if the statement had been executed."""
        await self.execute(fallback, fallback_parameters())

    async def copy_chunks(
        self,
        copy_sql: str,
        row_chunks: AsyncIterable[Iterable[tuple[Any, ...]]],
        fallback: Any,
        fallback_parameters: Callable[[list[tuple[Any, ...]]], Any],
    ) -> None:
        """``copy`` of the rows that ``row_chunks`` yields: where the driver streams (psycopg 3 on the store's own
        connection), each chunk is sent before the next is asked for, so the server inserts while the caller builds;
        elsewhere the rows are gathered, then inserted by ``fallback`` (``fallback_parameters(rows)``)."""
        rows = [row async for chunk in row_chunks for row in chunk]
        await self.execute(fallback, fallback_parameters(rows))


def _as_dbapi_error(copy_sql: str, exc: Exception) -> Exception:
    import psycopg

    if isinstance(exc, psycopg.Error):
        return DBAPIError.instance(copy_sql, None, exc, psycopg.Error)
    return exc


async def _copy_async(
    driver: Any,
    copy_sql: str,
    rows: list[tuple[Any, ...]],
    fallback: Any,
    fallback_parameters: Callable[[], Any],
    executor: Any,
) -> None:
    import psycopg

    if not isinstance(driver, psycopg.AsyncConnection):
        await executor.execute(fallback, fallback_parameters())
        return
    try:
        async with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
            for row in rows:
                await copy.write_row(row)
    except psycopg.Error as exc:
        raise _as_dbapi_error(copy_sql, exc) from exc


class AsyncExecutor(Executor):
    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return await self._conn.execute(statement, parameters)

    async def copy(
        self, copy_sql: str, rows: list[tuple[Any, ...]], fallback: Any, fallback_parameters: Callable[[], Any]
    ) -> None:
        raw = await self._conn.get_raw_connection()
        await _copy_async(raw.driver_connection, copy_sql, rows, fallback, fallback_parameters, self)

    async def copy_chunks(
        self,
        copy_sql: str,
        row_chunks: AsyncIterable[Iterable[tuple[Any, ...]]],
        fallback: Any,
        fallback_parameters: Callable[[list[tuple[Any, ...]]], Any],
    ) -> None:
        import psycopg

        raw = await self._conn.get_raw_connection()
        driver = raw.driver_connection
        if not isinstance(driver, psycopg.AsyncConnection):
            await super().copy_chunks(copy_sql, row_chunks, fallback, fallback_parameters)
            return
        try:
            async with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
                async for chunk in row_chunks:
                    for row in chunk:
                        await copy.write_row(row)
        except psycopg.Error as exc:
            raise _as_dbapi_error(copy_sql, exc) from exc


class AsyncSessionExecutor(Executor):
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        # SQLAlchemy's method itself: SQLModel's subclass deprecates execute() in favour of exec(), which only
        # takes SELECTs.
        return await AsyncSession.execute(self._session, statement, parameters)

    async def copy(
        self, copy_sql: str, rows: list[tuple[Any, ...]], fallback: Any, fallback_parameters: Callable[[], Any]
    ) -> None:
        conn = await self._session.connection()  # begins the session's transaction if it has not yet
        raw = await conn.get_raw_connection()
        await _copy_async(raw.driver_connection, copy_sql, rows, fallback, fallback_parameters, self)


class SyncSessionExecutor(Executor):
    """Runs statements on a sync session; used from a worker thread (see ``run_sync``)."""

    def __init__(self, session: Session) -> None:
        self._session = session

    async def execute(self, statement: Any, parameters: Any = None) -> Any:
        return Session.execute(self._session, statement, parameters)

    async def copy(
        self, copy_sql: str, rows: list[tuple[Any, ...]], fallback: Any, fallback_parameters: Callable[[], Any]
    ) -> None:
        import psycopg

        driver = self._session.connection().connection.driver_connection
        if not isinstance(driver, psycopg.Connection):
            await self.execute(fallback, fallback_parameters())
            return
        try:
            with driver.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row(row)
        except psycopg.Error as exc:
            raise _as_dbapi_error(copy_sql, exc) from exc


def run_sync(coroutine: Any) -> Any:
    """Drive a coroutine that never really awaits (the sync-session executor) to completion, in this thread."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("the sync session path awaited something asynchronous")
