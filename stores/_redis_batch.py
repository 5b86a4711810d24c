"""``OutcomeBatcher``: outcomes that arrive together go to Redis in one script run.

Idle, an outcome is sent at once (no added latency); while one batch is on its way, the outcomes arriving meanwhile
wait for it and then go together, so a busy worker pays one round trip for many commands. The script applies the
requests one after another, each fenced by its own lease token, so their order within a batch is their order of
arrival.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["OutcomeBatcher"]

#: The most requests one script run carries (a run blocks the server while it works).
MAX_BATCH = 500


class OutcomeBatcher:
    def __init__(self, write: Callable[[list[list[Any]]], Awaitable[list[bool]]]) -> None:
        self._write = write
        self._queue: list[tuple[list[Any], asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, request: list[Any]) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((request, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        # Shielded: a caller cancelled while its outcome is on the way must not cancel the others' batch.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            try:
                results = await self._write([request for request, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - every waiter sees the failure (StoreUnavailableError: each retries)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                        with contextlib.suppress(BaseException):
                            future.exception()  # retrieved: a waiter that left does not log it as unhandled
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
