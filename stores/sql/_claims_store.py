"""The claim of ``SqlStore``: leasing due entries, through the backend's own connections where it has them (a
committed claim whose caller was cancelled gives its entries back; one whose unreadable rows cannot be dead-lettered
at once still runs the others), and the list of limited queues a PostgreSQL claim needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.entries import ScheduledCommandEntry
from stores.errors import StoreUnavailableError, UnreadableEntryError
from stores.queues import Route

from . import _queries as queries
from . import _queues as queue_queries
from ._dependants_store import SqlDependants
from ._dependencies import Resolution
from ._postgresql import PostgresqlBackend
from ._rows import convert_each
from ._sqlite import SqliteBackend

__all__ = ["SqlClaims"]

logger = logging.getLogger("stores.sql")

#: Claims run again when they lose a race for a lock (the unique index on PROCESSING entries' locks fails them).
_LOCK_RACES = 3
#: PostgreSQL's SQLSTATE for a transaction ended to break a deadlock.
_DEADLOCK = "40P01"
#: Seconds a store trusts its list of the limited queues (see ``_limited_queues``).
_LIMITED_QUEUES_TTL = 1.0


class SqlClaims(SqlDependants):
    #: The limited queues as last read, and when (``time.monotonic()``).
    _limited_names: tuple[str, ...] = ()
    _limited_read_at: float = -math.inf

    async def claim_due(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta, route: Route | None = None
    ) -> list[ScheduledCommandEntry]:
        if limit <= 0:
            return []
        route = route or Route()
        # PostgreSQL: one statement either way; the one that holds limits only when the worker has a limited queue.
        limited = self._backend.skips_limited_queues and bool(await self._limited_queues(route))
        lease_expires_at = now + lease_duration
        for _race in range(_LOCK_RACES):
            resolution = Resolution()  # what dead-lettering unreadable rows did to their dependants, once committed
            try:
                claim: dict[str, Any] = {
                    "now": now,
                    "limit": limit,
                    "worker_id": worker_id,
                    "lease_expires_at": lease_expires_at,
                }
                claiming = asyncio.ensure_future(self._claim_committed(route=route, limited=limited, **claim))
                try:
                    rows = await asyncio.shield(claiming)
                except asyncio.CancelledError:
                    await self._give_back(claiming)
                    raise
                if rows is not None:
                    self._note_parents(rows)
                    claimed, unreadable = convert_each(rows)
                    if unreadable:  # the claim is committed (autocommit): its bad rows are dead-lettered apart
                        resolution = await self._dead_letter_apart(unreadable, now)
                else:
                    async with self._single_statement() as conn:
                        rows = await self._backend.claim(conn, route=route, limited=limited, **claim)
                        self._note_parents(rows)
                        claimed, unreadable = convert_each(rows)
                        if unreadable:
                            resolution = await queries.dead_letter_unreadable(conn, unreadable, now, self._backend)
                self._after_resolution(resolution)
                claimed.sort(key=lambda pair: (-pair[1].priority, pair[1].scheduled_for, pair[0]))
                return [entry for _, entry in claimed]
            except IntegrityError:
                # Another claim took an entry of the same lock, or the same running slot of a limited queue, after
                # this statement's snapshot: the database refused the second; claim again with a new snapshot.
                continue
            except StoreUnavailableError as exc:
                # Two claims taking the same two running slots in opposite orders wait for each other; PostgreSQL
                # ends one of them (deadlock detected), which claims again like the loser of any other race.
                cause = exc.__cause__
                if not isinstance(cause, OperationalError) or getattr(cause.orig, "sqlstate", None) != _DEADLOCK:
                    raise
        return []

    async def _give_back(self, claiming: asyncio.Future[Sequence[Any] | None]) -> None:
        """The caller of a claim was cancelled while the database committed it (the statement runs on, on a thread
        or the server): once it is done, its entries go back to PENDING, as a stopping worker gives back what it
        holds, rather than wait under a lease nobody renews until it expires and count a lost attempt."""
        try:
            rows = await claiming
        except Exception:  # noqa: BLE001 - the claim failed: it holds nothing
            return
        for row in rows or ():
            try:
                await self.release(str(row.id), str(row.lease_token))
            except Exception:  # logged: its lease expires and recovery takes the entry over
                logger.warning(
                    "could not give back %s, claimed while its worker stopped; its lease will expire",
                    row.id,
                    exc_info=True,
                    extra={"action": "give_back_failed", "entry_id": str(row.id)},
                )

    async def _dead_letter_apart(self, unreadable: list[UnreadableEntryError], now: datetime) -> Resolution:
        """Dead-letter the unreadable rows of a committed claim in a statement of their own. Failing (the database
        away, busy) loses nothing: they stay leased, and recovery dead-letters them once the lease expires; the
        readable entries of the claim still run."""
        try:
            async with self._single_statement() as conn:
                return await queries.dead_letter_unreadable(conn, unreadable, now, self._backend)
        except Exception:  # logged; see the docstring
            logger.warning(
                "could not dead-letter %d unreadable entries of a claim; they are left to recovery",
                len(unreadable),
                exc_info=True,
                extra={"action": "dead_letter_failed"},
            )
            return Resolution()

    async def _claim_committed(self, *, route: Route, limited: bool, **claim: Any) -> Sequence[Any] | None:
        """The claim through the backend's own connections, committed on its own (PostgreSQL: one prepared
        statement in autocommit; SQLite: one hop to the backend's thread); None where the claim goes through the
        engine (an engine the caller built; SQLite in memory)."""
        worker = await self._direct_worker()
        with self._unavailable_as_store_error():
            if worker is not None and isinstance(self._backend, PostgresqlBackend):
                return await self._backend.claim_direct(worker, route=route, limited=limited, **claim)
            if isinstance(self._backend, SqliteBackend):
                return await self._backend.claim_committed(route=route, **claim)
        return None

    def _one_select(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        """A connection for one SELECT of the claim loop's: in autocommit on PostgreSQL, as the claim runs. A read
        transaction ends in ROLLBACK, on which psycopg drops the connection's prepared statements: the claim and the
        outcome statement were planned afresh after every such read."""
        return self._single_statement() if self._backend.name == "postgresql" else self._read()

    async def _limited_queues(self, route: Route) -> list[str]:
        """The limited queues ``route`` may claim, read again at most once a second (a queue limited meanwhile is
        skipped by the ordinary claim at once, and claimed within its limits from the next reading on)."""
        if time.monotonic() - self._limited_read_at > _LIMITED_QUEUES_TTL:
            async with self._one_select() as conn:
                self._limited_names = tuple(sorted(await queue_queries.limited_queues(conn)))
            self._limited_read_at = time.monotonic()
        return [name for name in self._limited_names if route.queues is None or name in route.queues]
