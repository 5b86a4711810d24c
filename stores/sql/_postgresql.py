"""The PostgreSQL backend of ``SqlStore``: a pool of psycopg 3 connections, statements that each do a whole step.

One ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING`` claims a batch; one statement (in autocommit
mode) ends a batch of claims, records their attempts and wakes workers; new entries go in by ``COPY`` or one
``INSERT ... SELECT FROM unnest``. A LISTEN connection wakes idle workers when an entry becomes PENDING anywhere
(NOTIFY is sent in the same transaction, so a rolled-back schedule wakes nobody), and wakes ``wait()`` when an entry
reaches a terminal status anywhere (a NOTIFY on a second channel, from the statements that finish entries).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, Table, bindparam, event, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import URL, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql.elements import TextClause

from stores.entries import TERMINAL_STATUSES, ScheduledCommandEntry
from stores.queues import Route

from ._backend import reason
from ._group_commit import Finish
from ._pg_claim import CLAIM, CLAIM_WINDOW_FACTOR, claim_statement
from ._pg_finish import FINISHED_CHANNEL, FINISHED_PER_NOTIFY, NOTIFY_CHANNEL, finish_batch
from ._pg_new_rows import (
    _BULK_COPY,
    _BULK_INSERT,
    _COPY_FROM,
    _INSERT_AND_NOTIFY,
    _INSERT_ONE_AND_NOTIFY,
    _columns,
    _copy_row,
    _insert_parameters,
)
from ._pg_worker import NativeStatement, PgWorker, Record
from ._producers import PostgresqlProducer
from ._rows import install_psycopg_loaders
from ._sessions import AsyncExecutor, Executor
from ._tables import ENTRIES, NEXT_DUE_SQL, UtcDateTime
from ._urls import mask_url

__all__ = [
    "CLAIM",
    "CLAIM_WINDOW_FACTOR",
    "FINISHED_CHANNEL",
    "FINISHED_PER_NOTIFY",
    "NOTIFY_CHANNEL",
    "PostgresqlBackend",
]

logger = logging.getLogger("stores.sql")

#: Key of the advisory lock that serializes schema creation and migrations among workers starting together.
SCHEMA_LOCK_KEY = 0x63717273_5343484D
#: Key of the advisory lock held while one opener builds a step's indexes ``CONCURRENTLY``, so that the others wait
#: for it without building too. Not the schema lock: a process of an older version opening meanwhile waits for that
#: one inside a statement, holding a snapshot that the concurrent build waits for in turn (PostgreSQL then ends one
#: of them as a deadlock). With a key of its own, that process takes the schema lock, finds its version and goes on.
INDEX_BUILD_LOCK_KEY = 0x63717273_4255494C

_TERMINAL = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))

#: The earliest pending due time, as epoch seconds (read by the wake-up watcher, outside SQLAlchemy's loaders).
_EARLIEST_PENDING = f"SELECT extract(epoch FROM min(scheduled_for)) FROM scheduled_commands WHERE {NEXT_DUE_SQL}"

#: Which of the awaited ids (one array parameter) are finished: read once listening, since a finish before the LISTEN
#: took effect sent its NOTIFY to nobody. Only finished ones are reported: a waiter hears of its entry when it is done.
_FINISHED_AMONG = f"SELECT id FROM scheduled_commands WHERE id = ANY(%s) AND status IN ({_TERMINAL})"

#: How often the wake-up watcher checks whether the store has a listener yet, before it starts listening.
_LISTEN_CHECK_S = 0.02

# The same on PostgreSQL: 'infinity' and the years past 9999 (Python's datetime ends there), one range scan.
_UNREACHABLE_DUE = text(
    "SELECT seq, id, CAST(scheduled_for AS text) AS scheduled_for FROM scheduled_commands"
    " WHERE status = 'PENDING' AND scheduled_for >= '10000-01-01 00:00:00+00'"
    " LIMIT :limit"
)

_FINISHED_SINCE: TextClause = text(
    f"""
    SELECT status,
           CAST(floor(extract(epoch FROM completed_at - CAST(:since AS timestamptz)) * 1000000 / :bucket_us)
                AS BIGINT) AS bucket,
           count(*) AS finished
    FROM scheduled_commands
    WHERE status IN ({_TERMINAL}) AND completed_at >= :since AND completed_at < 'infinity'
    GROUP BY status, bucket
    """
).bindparams(bindparam("since", type_=UtcDateTime), bindparam("bucket_us", type_=BigInteger))


class PostgresqlBackend:
    """``Backend`` for PostgreSQL (see the module docstring)."""

    name = "postgresql"
    skips_limited_queues = True
    finishes_dependants_apart = True
    reads_take_write_lock = False
    writes_while_building = True
    watch_stops_itself = False

    def __init__(self, url: URL, *, pool_size: int, direct_producer: bool = True) -> None:
        self._url = url
        self._shown_url = mask_url(url)
        self._pool_size = pool_size
        # An engine the caller built may carry what its URL does not (a password in connect_args, a creator): the
        # producers then write through it, one transaction per batch, instead of a connection made from the URL.
        self._direct_producer = direct_producer
        self._producer = PostgresqlProducer(url, _INSERT_ONE_AND_NOTIFY, _INSERT_AND_NOTIFY, _insert_parameters)
        #: The claim and the outcome batches through psycopg directly (``_pg_worker.py``); None for an engine the
        #: caller built, as for the producer.
        self.worker = PgWorker(url) if direct_producer else None
        self._claims: dict[str, NativeStatement] = {}  # the claim statements, as sent

    def create_engines(self) -> tuple[AsyncEngine, AsyncEngine | None]:
        # No pre-ping (it costs a round trip per checkout): a connection broken by a restart fails its statement,
        # is invalidated, and the caller's retry gets a fresh one.
        engine = create_async_engine(self._url, pool_size=self._pool_size, max_overflow=self._pool_size)
        self.prepare_engine(engine)
        return engine, None

    def prepare_engine(self, engine: AsyncEngine) -> None:
        if not event.contains(engine.sync_engine, "connect", _prepare_connection):
            event.listen(engine.sync_engine, "connect", _prepare_connection)

    def check_location(self) -> None:
        return None

    @contextlib.asynccontextmanager
    async def write(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        async with engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def single_statement(self, engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            yield conn

    async def lock_schema(self, conn: AsyncConnection) -> None:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})

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
    ) -> Sequence[Row[Any]]:
        statement = text(claim_statement(route, limited=limited)).columns(*ENTRIES.c)
        result = await conn.execute(
            statement,
            {
                "now": now,
                "limit": limit,
                "window": limit * CLAIM_WINDOW_FACTOR,
                "worker_id": worker_id,
                "lease_expires_at": lease_expires_at,
                "queues": sorted(route.queues) if route.queues is not None else None,
                "types": sorted(route.command_types) if route.command_types is not None else None,
                "limited": limited,
            },
        )
        return result.all()

    async def claim_direct(
        self,
        worker: PgWorker,
        *,
        now: datetime,
        limit: int,
        worker_id: str,
        lease_expires_at: datetime,
        route: Route,
        limited: bool = False,
    ) -> list[Record]:
        """``claim`` as one prepared statement on ``worker``'s connections."""
        text_ = claim_statement(route, limited=limited)
        statement = self._claims.get(text_)
        if statement is None:
            statement = self._claims[text_] = NativeStatement.of(text_)
        return await worker.fetch(
            statement,
            {
                "now": now,
                "limit": limit,
                "window": limit * CLAIM_WINDOW_FACTOR,
                "worker_id": worker_id,
                "lease_expires_at": lease_expires_at,
                "queues": sorted(route.queues) if route.queues is not None else None,
                "types": sorted(route.command_types) if route.command_types is not None else None,
                "limited": limited,
            },
        )

    async def insert_new(self, executor: Executor, entries: Sequence[ScheduledCommandEntry]) -> None:
        # One statement or one COPY, not one INSERT per row.
        rows = [_copy_row(e) for e in entries]
        if len(rows) >= _COPY_FROM:
            await executor.copy(_BULK_COPY, rows, _BULK_INSERT, lambda: _columns(rows))
        else:
            await executor.execute(_BULK_INSERT, _columns(rows))

    async def insert_streamed(self, executor: Executor, chunks: AsyncIterable[Sequence[ScheduledCommandEntry]]) -> None:
        # One COPY, each chunk sent as it comes: the server inserts one while the scheduler builds the next.
        rows = (map(_copy_row, chunk) async for chunk in chunks)
        await executor.copy_chunks(_BULK_COPY, rows, _BULK_INSERT, _columns)

    async def insert_committed(self, engine: AsyncEngine, entries: Sequence[ScheduledCommandEntry]) -> None:
        if not self._direct_producer:
            async with self.write(engine) as conn:
                executor = AsyncExecutor(conn)
                await self.insert_new(executor, entries)
                await self.notify(executor, min(e.scheduled_for for e in entries))
            return
        await self._producer.insert(entries, NOTIFY_CHANNEL, min(e.scheduled_for for e in entries))

    async def close_producer(self) -> None:
        await self._producer.close()
        if self.worker is not None:
            await self.worker.close()

    def abandon_producer(self) -> None:
        self._producer.abandon()
        if self.worker is not None:
            self.worker.abandon()

    def insert_ignoring_conflicts(self, table: Table, key: str, where: Any = None) -> Any:
        return pg_insert(table).on_conflict_do_nothing(index_elements=[key], index_where=where)

    async def notify(self, executor: Executor, due: datetime) -> None:
        await executor.execute(
            text("SELECT pg_notify(:channel, :due)"), {"channel": NOTIFY_CHANNEL, "due": str(due.timestamp())}
        )

    async def notify_finished(self, executor: Executor, entry_ids: Sequence[str]) -> None:
        for start in range(0, len(entry_ids), FINISHED_PER_NOTIFY):
            payload = json.dumps(list(entry_ids[start : start + FINISHED_PER_NOTIFY]), ensure_ascii=False)
            await executor.execute(
                text("SELECT pg_notify(:channel, :ids)"), {"channel": FINISHED_CHANNEL, "ids": payload}
            )

    async def finish_batch(
        self, conn: AsyncConnection, requests: list[Finish], *, skip_dependants: bool = False
    ) -> Sequence[Row[Any]]:
        return await finish_batch(conn, requests, skip_dependants=skip_dependants)

    def unreadable_timestamp(self, column: Any) -> Any:
        # An infinity, or past the year 9999 (Python's datetime ends there).
        return (column >= text("'10000-01-01 00:00:00+00'::timestamptz")) | (column <= text("'-infinity'::timestamptz"))

    async def unreachable_due(self, conn: AsyncConnection, limit: int) -> Sequence[Row[Any]]:
        return (await conn.execute(_UNREACHABLE_DUE, {"limit": limit})).all()

    async def next_due_at(self, conn: AsyncConnection) -> datetime | None:
        # Read through the index of PENDING entries by due time (``_pending_due.py``).
        statement = select(func.min(ENTRIES.c.scheduled_for)).where(text(NEXT_DUE_SQL))
        value: object = (await conn.execute(statement)).scalar_one_or_none()
        if not isinstance(value, datetime):  # none, or unreadable: recovery dead-letters such a row; poll meanwhile
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def expired_before(self, now: datetime, lease_duration: timedelta) -> datetime:
        return now

    def lock_rows(self, query: Any, *, skip_locked: bool) -> Any:
        return query.with_for_update(skip_locked=skip_locked)

    async def count_finished_since(self, conn: AsyncConnection, since: datetime, bucket_us: int) -> Sequence[Any]:
        return (await conn.execute(_FINISHED_SINCE, {"since": since, "bucket_us": bucket_us})).all()

    async def watch(
        self,
        wake: Callable[[datetime], None],
        listening: Callable[[], bool],
        closing: asyncio.Event,
        watched: Callable[[], Collection[str]],
        finished: Callable[[Iterable[str]], None],
    ) -> None:
        """LISTEN for NOTIFYs from every process, from when this store first has a wake-up or finish listener (a
        process that only schedules never listens: every NOTIFY would cost it and its server backend CPU for
        nothing); reconnect with backoff when the connection drops.

        Once listening (at first and after every reconnection), the waiters re-read their entries: a finish before
        the LISTEN took effect sent its NOTIFY to nobody.
        """
        import psycopg

        # The service adds its listener when it starts, through the store's public method, which knows nothing of
        # this watcher: a check every 20 ms costs nothing next to a NOTIFY per scheduled command.
        while not listening():  # noqa: ASYNC110
            await asyncio.sleep(_LISTEN_CHECK_S)
        conninfo = self._url.set(drivername="postgresql").render_as_string(hide_password=False)
        failures = 0
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    await conn.execute(f"LISTEN {FINISHED_CHANNEL}")
                    if failures:
                        logger.info("wake-up listener reconnected to %s", self._shown_url, extra={"action": "listen"})
                    # Anything may have been scheduled before LISTEN took effect (since the listener was added, or
                    # while the connection was down): the listeners hear the earliest pending due time once.
                    cursor = await conn.execute(_EARLIEST_PENDING)
                    row = await cursor.fetchone()
                    if row is not None and row[0] is not None:
                        wake(_parse_due(str(row[0])))
                    failures = 0
                    awaited = list(watched())
                    if awaited:  # anything may have finished before the LISTEN
                        cursor = await conn.execute(_FINISHED_AMONG, (awaited,))
                        finished([str(row[0]) for row in await cursor.fetchall()])
                    async for notification in conn.notifies():
                        if notification.channel != FINISHED_CHANNEL:
                            wake(_parse_due(notification.payload))
                        elif watched():  # nobody waits: not even parsed
                            finished(_parse_ids(notification.payload))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the listener must outlive database restarts
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                logger.warning(
                    "wake-up listener on %s lost its connection (%s); polling until it reconnects in %.1fs",
                    self._shown_url,
                    reason(exc),
                    delay,
                    extra={"action": "listen_failed"},
                )
                await asyncio.sleep(delay)


def _prepare_connection(dbapi_connection: Any, _record: Any) -> None:
    # A timestamp Python cannot hold ('-infinity', the year 20000) must fail its own row, not every row read with it.
    install_psycopg_loaders(dbapi_connection.driver_connection)
    # Timestamps are read as text in the session's time zone: east of UTC, a valid due time late on 9999-12-31 UTC
    # would print as the year 10000 and read as unreadable. UTC for every connection of ours, whatever the database
    # or role default says (SQLAlchemy's documented way to run a SET at connect, outside a transaction).
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET TIME ZONE 'UTC'")
        # No JIT: every statement of ours is short, and the claim's recursive walk is estimated so high that JIT
        # would compile it at every execution (seconds under load, for a claim that takes a millisecond).
        cursor.execute("SET jit = off")
    finally:
        cursor.close()
        dbapi_connection.autocommit = autocommit


def _parse_due(payload: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(payload), UTC)
    except (ValueError, OverflowError, OSError):  # not a number, or a time Python cannot hold
        return datetime.now(UTC)


def _parse_ids(payload: str) -> list[str]:
    try:
        ids = json.loads(payload)
    except ValueError:
        return []
    return [str(entry_id) for entry_id in ids] if isinstance(ids, list) else []
