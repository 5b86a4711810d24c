"""The dependency methods of ``SqlStore`` (``ScheduleOptions.after``, groups): adding dependants, reading the pairs,
and ending claims whose entries have dependants in the transaction that resolves those (SQL in
``_dependencies.py``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stores.dependencies import Dependency
from stores.entries import ScheduledCommandEntry

from . import _dependencies as dependencies
from ._backend import reason
from ._connections import SqlConnections
from ._dependencies import Resolution
from ._group_commit import Finish
from ._pg_finish import RELEASING_STATUSES, finish_batch_direct, finish_releasing
from ._sqlite import SqliteBackend

__all__ = ["SqlDependants"]


class SqlDependants(SqlConnections):
    supports_dependencies = True
    #: (id, lease token) of entries this process claimed that had dependants then: their outcome skips the batched
    #: statement (which would leave them out) and goes straight to the transaction that resolves the dependants.
    _claimed_parents: set[tuple[str, str]]

    def __init__(self, url_or_engine: str | AsyncEngine, *, pool_size: int = 10) -> None:
        super().__init__(url_or_engine, pool_size=pool_size)
        self._claimed_parents = set()

    def _note_parents(self, rows: Sequence[Row[Any]]) -> None:
        """Remember the claimed rows that have dependants (see ``_claimed_parents``), where the batch leaves them
        out. An entry whose lease this process loses stays in the set: one pair per lost lease of a parent."""
        if self._backend.finishes_dependants_apart:
            self._claimed_parents.update(
                (str(row.id), str(row.lease_token)) for row in rows if getattr(row, "has_dependants", False)
            )

    async def add_dependants(
        self, entries: Sequence[ScheduledCommandEntry], after: Mapping[str, Dependency]
    ) -> list[str]:
        if not entries:
            return []
        try:
            async with self._write() as conn:
                resolution = await dependencies.add_dependants(conn, self._backend, entries, after, self.description)
        except IntegrityError as exc:
            raise ValueError(f"could not add entries: an id already exists ({reason(exc)})") from exc
        plain = [entry for entry in entries if entry.id not in after]
        if plain:
            self._notify_wakeup(min(entry.scheduled_for for entry in plain))
        self._after_resolution(resolution)
        return [entry.id for entry in entries]

    async def get_parents(self, entry_id: str) -> list[str]:
        async with self._read() as conn:
            return await dependencies.parents_of(conn, entry_id)

    async def get_dependants(self, entry_id: str) -> list[str]:
        async with self._read() as conn:
            return await dependencies.children_of(conn, entry_id)

    async def _resolve(self, conn: AsyncConnection, rows: Sequence[Row[Any]]) -> Resolution:
        """Resolve the dependants of those of ``rows`` (changed entries, with ``has_dependants``) that ended."""
        finished = [
            (str(row.id), str(row.status), row.completed_at) for row in rows if row.has_dependants and row.completed_at
        ]
        if not finished:
            return Resolution()
        return await dependencies.resolve(conn, self._backend, finished)

    async def _finish_rows(self, requests: list[Finish]) -> tuple[list[Any], Resolution]:
        """The fenced end of a batch of claims and what it did to dependants. SQLite: one transaction. PostgreSQL:
        one autocommit statement for the entries without dependants, one for those with dependants that complete
        (their dependants released in it), and a transaction for the rest (``_pg_finish.py`` says why)."""
        apart = self._backend.finishes_dependants_apart
        known = self._claimed_parents
        parents = {(r.entry_id, r.lease_token) for r in requests} & known if known else set()
        known -= parents
        batch = [r for r in requests if (r.entry_id, r.lease_token) not in parents]
        rows: list[Any] = []  # Row, or Record from the worker's connections
        resolution = Resolution()
        worker = await self._direct_worker() if apart else None
        if batch and worker is not None:
            with self._unavailable_as_store_error():
                rows = list(await finish_batch_direct(worker, batch))
        elif batch:
            committed = None if apart else await self._finish_committed(batch)
            if committed is not None:
                rows = list(committed)
            else:
                async with self._single_statement() as conn:
                    rows = list(await self._backend.finish_batch(conn, batch, skip_dependants=apart))
                    if not apart:
                        resolution = await self._resolve(conn, rows)
        if not apart:
            return rows, resolution
        done = {row.id for row in rows}
        # Entries with dependants, and lost leases (which the fence leaves unchanged again).
        rest = [request for request in requests if request.entry_id not in done]
        releasing = [request for request in rest if request.status in RELEASING_STATUSES]
        apart_requests = [request for request in rest if request.status not in RELEASING_STATUSES]
        if releasing and worker is not None:
            with self._unavailable_as_store_error():
                released = await finish_releasing(worker, releasing)
        elif releasing:
            async with self._single_statement() as conn:
                released = await finish_releasing(conn, releasing)
        if releasing:
            rows += released.finished
            resolution.released += released.released
            apart_requests += [request for request in releasing if request.entry_id in released.raced]
        if apart_requests:  # failures (which may cancel dependants, in a cascade), and rows changed meanwhile
            async with self._write() as conn:
                more = list(await self._backend.finish_batch(conn, apart_requests))
                resolution.extend(await self._resolve(conn, more))
            rows += more
        return rows, resolution

    async def _finish_committed(self, batch: list[Finish]) -> Sequence[Any] | None:
        """SQLite: the batch ended in one hop to the backend's thread, when none of its entries has dependants
        (whose resolution needs the store's transaction); None where it was not."""
        if not isinstance(self._backend, SqliteBackend):
            return None
        await self._open_on_first_use()
        with self._unavailable_as_store_error():
            return await self._backend.finish_committed(batch)

    def _after_resolution(self, resolution: Resolution) -> None:
        """Wake this process's workers and waiters for what a resolution changed (other processes: at commit)."""
        if resolution.released:
            self._notify_wakeup(min(due for _, due in resolution.released))
        if resolution.cancelled:
            self._notify_finished(resolution.cancelled)
            self._notify_dependants_cancelled(resolution.cancelled_entries)
