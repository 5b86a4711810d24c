"""The worker's statements on PostgreSQL (the claim and the outcome batches) sent straight through psycopg, on
connections of the store's own, as the producer sends ``schedule()``'s.

SQLAlchemy's async layer costs a greenlet switch per statement and builds a ``Row`` per row, then the store turned
each into a dict again: at the default concurrency this was about as much CPU per command as the command's own
database work. Here each statement is prepared once per connection and its rows come back as ``Record``, a dict
with attribute access (what the store reads of a ``Row``: ``row.id``, ``row._asdict()``), built by a row factory in
one call per row.

The connections are set up as the engine's (``_prepare_connection``): the loaders that read an unreadable timestamp
as ``UnreadableValue`` (one bad row never fails the claim; the store dead-letters it), the session in UTC, no JIT;
and, unlike the engine's, one generic plan per prepared statement where the table's statistics are safe to plan
from, custom plans otherwise (``GENERIC_PLANS_FROM``), connections made afresh every ``MAX_CONNECTION_AGE_S``.
They are in autocommit, each statement its own transaction, as the engine's ``single_statement`` runs them. A few
are kept idle: a claim and an outcome batch running at once each take one. Driver errors are raised as SQLAlchemy's
(``IntegrityError``, ``OperationalError``), as the engine raises them, so the store's handling stays the same.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError

from ._rows import install_psycopg_loaders

__all__ = ["NativeStatement", "PgWorker", "Record"]

#: Idle connections kept for the next statement (a claim and an outcome batch of a process at once, and a spare).
_IDLE_MAX = 3

#: Planning the claim cost more than running it (1.6 ms per claim, 40 % of the server's CPU in a default drain):
#: PostgreSQL kept choosing a custom plan at every execution, its generic estimate (with the limit and the time
#: unknown) looking worse. So a connection runs one generic plan per prepared statement
#: (``plan_cache_mode = force_generic_plan``, and no sequential scan: every worker statement is read through an
#: index), but only where the table's statistics cannot mislead it: never analyzed (the planner then assumes
#: at least ten pages) or at least this many rows. A generic plan made from statistics of an almost empty table
#: walks whole indexes once the table has grown (620 ms per claim at 200,000 pending, against 4 ms), until
#: the next ANALYZE makes PostgreSQL plan again. Below it a connection runs custom plans only (PostgreSQL's own
#: choice would switch to such a generic plan after five of them), which follow the table's actual size.
GENERIC_PLANS_FROM = 10_000
#: A connection is made afresh after this long, so the choice above follows the table's statistics.
MAX_CONNECTION_AGE_S = 60.0

_NAMED = re.compile(r"(?<![:\w]):(\w+)")


@dataclass(frozen=True, slots=True)
class NativeStatement:
    """A statement written with SQLAlchemy's ``:name`` parameters (``::type`` casts and ``'00:00:00'`` literals
    untouched), turned once into PostgreSQL's own ``$n`` placeholders, with the name of each.

    It is sent as written (psycopg's raw cursor): psycopg parses a statement with named placeholders at every
    execution when its text is over 4 KB (its cache of parsed statements stops there), and the claim is larger, so
    that cost about 12 µs of the worker's CPU per command at the default concurrency."""

    text: bytes
    names: tuple[str, ...]

    @classmethod
    def of(cls, statement: str) -> NativeStatement:
        names: dict[str, int] = {}

        def number(match: re.Match[str]) -> str:
            return f"${names.setdefault(match.group(1), len(names) + 1)}"

        return cls(_NAMED.sub(number, statement).encode(), tuple(names))

    def values(self, parameters: Mapping[str, Any]) -> list[Any]:
        """The parameters in the order of their numbers."""
        return [parameters[name] for name in self.names]


class Record(dict[str, Any]):
    """One row: a dict of its columns, also read as attributes (``row.id``) and ``row._asdict()``, as a ``Row``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def _asdict(self) -> dict[str, Any]:
        return dict(self)


def _record_factory(cursor: Any) -> Any:
    # The names from the result itself: ``cursor.description`` builds a Column object (and looks up its type) per
    # column at every access, about 30 per claimed row's statement.
    result = cursor.pgresult
    if result is None or not result.nfields:
        return lambda values: Record()
    names = [result.fname(i).decode() for i in range(result.nfields)]

    def make(values: Sequence[Any]) -> Record:
        return Record(zip(names, values, strict=True))

    return make


class PgWorker:
    """Prepared statements on a few autocommit psycopg connections of the store's own (see the module docstring)."""

    def __init__(self, url: URL) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._idle: list[Any] = []
        #: Bumped by ``close()``/``abandon()``: a connection checked out before comes back to be closed, not pooled.
        self._generation = 0
        #: Called with each connection as a statement takes it (a test counting round trips on the wire traces it).
        self.checkout_hooks: list[Callable[[Any], None]] = []
        #: When each open connection was made (by ``id``): one older than ``MAX_CONNECTION_AGE_S`` is not reused.
        self._born: dict[int, float] = {}

    async def fetch(self, statement: NativeStatement, parameters: Mapping[str, Any]) -> list[Record]:
        """Run ``statement`` as one prepared statement in autocommit: its rows."""
        import psycopg

        async with self._connection() as conn:
            try:
                cursor = psycopg.AsyncRawCursor(conn, row_factory=_record_factory)
                await cursor.execute(statement.text, statement.values(parameters), prepare=True)
                result = cursor.pgresult
                rows: list[Record] = await cursor.fetchall() if result is not None and result.nfields else []
                return rows
            except psycopg.Error as exc:
                raise DBAPIError.instance(statement.text.decode(), dict(parameters), exc, psycopg.Error) from exc

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Any]:
        conn = self._idle.pop() if self._idle else None
        if conn is None or conn.closed:
            conn = await self._connect()
        # A connection taken before ``close()`` (a statement still running then) is closed when it comes back.
        generation = self._generation
        for hook in self.checkout_hooks:
            hook(conn)
        try:
            yield conn
        except DBAPIError as exc:
            # A prepared statement whose result type changed (a newer schema's column: "cached plan must not change
            # result type", SQLSTATE 0A000) fails on that connection every time: dropped, like a broken one.
            stale = getattr(exc.orig, "sqlstate", None) == "0A000"
            if conn.closed or conn.broken or stale:
                self._born.pop(id(conn), None)
                await _close(conn)  # the next statement connects afresh
            else:
                await self._put_back(conn, generation)
            raise
        except BaseException:
            # Cancelled mid-statement: the connection may still be busy with it; not used again.
            self._born.pop(id(conn), None)
            conn.pgconn.finish()
            raise
        await self._put_back(conn, generation)

    async def _connect(self) -> Any:
        import psycopg

        try:
            conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise DBAPIError.instance("connect", None, exc, psycopg.Error) from exc
        try:
            install_psycopg_loaders(conn)
            # As the engine's connections (``_postgresql._prepare_connection`` says why).
            await conn.execute("SET TIME ZONE 'UTC'")
            await conn.execute("SET jit = off")
            if await _generic_plans_are_safe(conn):
                await conn.execute("SET plan_cache_mode = force_generic_plan")
                await conn.execute("SET enable_seqscan = off")
            else:
                await conn.execute("SET plan_cache_mode = force_custom_plan")
        except psycopg.Error as exc:
            await _close(conn)
            raise DBAPIError.instance("connect", None, exc, psycopg.Error) from exc
        except BaseException:
            conn.pgconn.finish()  # cancelled while setting it up: never pooled, so closed here
            raise
        self._born[id(conn)] = time.monotonic()
        return conn

    async def _put_back(self, conn: Any, generation: int) -> None:
        young = time.monotonic() - self._born.get(id(conn), 0.0) < MAX_CONNECTION_AGE_S
        if generation == self._generation and len(self._idle) < _IDLE_MAX and young:
            self._idle.append(conn)
        else:
            self._born.pop(id(conn), None)
            await _close(conn)

    async def close(self) -> None:
        self._generation += 1
        idle, self._idle = self._idle, []
        self._born.clear()
        for conn in idle:
            await _close(conn)

    def abandon(self) -> None:
        """Drop the connections of an event loop that is gone, at the libpq level (see ``PostgresqlProducer``)."""
        self._generation += 1
        idle, self._idle = self._idle, []
        self._born.clear()
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.pgconn.finish()


async def _generic_plans_are_safe(conn: Any) -> bool:
    """Whether this connection's statements may each run one generic plan (see ``GENERIC_PLANS_FROM``)."""
    cursor = await conn.execute("SELECT reltuples FROM pg_class WHERE oid = to_regclass('scheduled_commands')")
    row = await cursor.fetchone()
    if row is None or row[0] is None:
        return False
    rows = float(row[0])
    return rows < 0 or rows >= GENERIC_PLANS_FROM


async def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
