"""``GroupCommit``: requests that arrive together are written together, each caller waiting for its own result.

Idle, a request is written at once (no added latency); while one batch is being written, the requests arriving
meanwhile wait for it and then go together in the next, so busy callers share one transaction (or one script run)
instead of paying one each. Every store uses it where many small writes meet: ending claims (SQL, Redis) and
scheduling one command at a time (SQL).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

Request = TypeVar("Request")
Result = TypeVar("Result")


class GroupCommit(Generic[Request, Result]):
    """Writes requests in batches through ``write``, which returns one result per request, in order.

    Args:
        write: writes a batch (one transaction or script run) and returns each request's result.
        max_batch: the most requests one batch carries.
        key: requests with equal keys never share a batch (the later one goes in the next batch, in order).
        fail_together: errors of a batch handed to every request in it (the database is away: each caller
            retries on its own). Any other error of a batch of several has each request written again alone, so
            one bad request (a duplicate id, text the driver cannot encode) fails only its own caller.
    """

    def __init__(
        self,
        write: Callable[[list[Request]], Awaitable[list[Result]]],
        *,
        max_batch: int,
        key: Callable[[Request], Hashable] | None = None,
        fail_together: tuple[type[BaseException], ...] = (),
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self._write = write
        self._max_batch = max_batch
        self._key = key
        self._fail_together = fail_together
        self._queue: list[tuple[Request, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, request: Request) -> Result:
        """Write ``request`` with whatever else is waiting; return its result once its batch is written."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        # Awaited directly (no ``asyncio.shield``, which costs a second future and its callbacks per call): a caller
        # cancelled while its request is on the way cancels only its own future. The batch is written by the
        # writer task, which nobody awaits, and skips a future already done (its request is still written).
        return await future

    async def _drain(self) -> None:
        while self._queue:
            await self._write_batch(self._next_batch())

    def _next_batch(self) -> list[tuple[Request, asyncio.Future[Result]]]:
        if self._key is None:
            first, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            return first
        batch: list[tuple[Request, asyncio.Future[Result]]] = []
        later: list[tuple[Request, asyncio.Future[Result]]] = []
        keys: set[Hashable] = set()
        for item in self._queue:
            key = self._key(item[0])
            if len(batch) < self._max_batch and key not in keys:
                keys.add(key)
                batch.append(item)
            else:
                later.append(item)
        self._queue = later
        return batch

    async def _write_batch(self, batch: list[tuple[Request, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._write([request for request, _ in batch])
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except self._fail_together as exc:
            _fail_all(batch, exc)
            return
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is retried alone or handed to its waiter
            if len(batch) == 1:
                _fail_all(batch, exc)
                return
            for item in batch:
                await self._write_batch([item])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail_all(batch: list[tuple[Request, asyncio.Future[Result]]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
            with contextlib.suppress(BaseException):
                future.exception()  # retrieved: a waiter that left does not log it as unhandled
