"""Ending claims in batches, for ``SqlStore``: a group commit and the one fenced UPDATE every backend sends.

Whatever outcomes (complete, retry, dead letter, expire, release) arrive while one batch is being written are written
together in the next, as one UPDATE whose every row is fenced by its lease token (``FENCED_FINISH``; each backend
module wraps it in the statement that feeds it the batch).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from stores.entries import AttemptRecord
from stores.errors import StoreUnavailableError

__all__ = ["FENCED_FINISH", "Finish", "Finished", "GroupCommit"]


@dataclass(frozen=True, slots=True)
class Finish:
    """One fenced end of a claim: the entry's new status and what changes with it."""

    entry_id: str
    lease_token: str
    status: str
    completed_at: datetime | None = None
    result_payload: str | None = None
    due: datetime | None = None  #: new scheduled_for (retries); None keeps it
    retry_increment: int = 0
    error_message: str | None = None  #: None keeps the previous one
    attempt: AttemptRecord | None = None


class Finished(NamedTuple):
    status: str
    scheduled_for: datetime


#: Most requests one batch carries (10 parameters each keeps SQLite far below its parameter limit).
_MAX_FINISH_BATCH = 200


class GroupCommit:
    """Writes requests in batches: whatever arrives while one batch is being written goes into the next.

    Idle, a request is written at once (no added latency); under load, one transaction carries many.
    """

    def __init__(self, write: Callable[[list[Finish]], Awaitable[list[Finished | None]]]) -> None:
        self._write = write
        self._queue: list[tuple[Finish, asyncio.Future[Finished | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, request: Finish) -> Finished | None:
        future: asyncio.Future[Finished | None] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            # At most one request per entry in a batch: results are matched to requests by entry id, and a stale
            # holder's request beside the current one must meet the current one's change, not share a statement.
            batch: list[tuple[Finish, asyncio.Future[Finished | None]]] = []
            later: list[tuple[Finish, asyncio.Future[Finished | None]]] = []
            in_batch: set[str] = set()
            for item in self._queue:
                if len(batch) < _MAX_FINISH_BATCH and item[0].entry_id not in in_batch:
                    in_batch.add(item[0].entry_id)
                    batch.append(item)
                else:
                    later.append(item)
            self._queue = later
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[tuple[Finish, asyncio.Future[Finished | None]]]) -> None:
        try:
            results = await self._write([request for request, _ in batch])
        except StoreUnavailableError as exc:  # the database is away: every waiter retries on its own
            _fail_all(batch, exc)
            return
        except asyncio.CancelledError as exc:
            _fail_all(batch, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is retried alone or handed to its waiter
            if len(batch) == 1:
                _fail_all(batch, exc)
                return
            # One bad request (text the driver cannot encode, say) must not sink the others written with it.
            for item in batch:
                await self._write_batch([item])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail_all(batch: list[tuple[Finish, asyncio.Future[Finished | None]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


#: Ends claimed entries from the rows of ``v``, each fenced by its lease token and PROCESSING status; shared by
#: both backends' batch statements.
FENCED_FINISH = """UPDATE scheduled_commands
SET status = v.status,
    completed_at = v.completed_at,
    started_at = CASE WHEN v.started_at IS NOT NULL THEN v.started_at
                      WHEN scheduled_commands.attempt_count = 0 THEN NULL
                      ELSE scheduled_commands.started_at END,
    result_payload = CASE WHEN v.status = 'COMPLETED' THEN v.result_payload ELSE scheduled_commands.result_payload END,
    scheduled_for = COALESCE(v.due, scheduled_commands.scheduled_for),
    retry_count = scheduled_commands.retry_count + v.retry_increment,
    attempt_count = scheduled_commands.attempt_count + v.attempt_increment,
    error_message = COALESCE(v.error_message, scheduled_commands.error_message),
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
FROM v
WHERE scheduled_commands.id = v.id AND scheduled_commands.lease_token = v.token
  AND scheduled_commands.status = 'PROCESSING'
RETURNING scheduled_commands.id, scheduled_commands.status, scheduled_commands.scheduled_for"""
