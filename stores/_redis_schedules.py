"""The recurring-schedule methods of ``RedisStore`` (a mixin; the store supplies the connection and scripts).

A schedule is a hash ``{prefix}:sched:{name}``: its definition as one JSON document (compared as a whole by the
upsert script), ``paused``, ``generation`` and the bookkeeping times; ``{prefix}:scheds`` holds the names.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from ._redis_codec import micros, schedule_fields, schedule_from_reply
from .schedules import StoredSchedule

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisSchedules"]


class RedisSchedules:
    if TYPE_CHECKING:  # supplied by RedisStore

        async def _run(self, script: str, *args: str | int) -> Any: ...
        async def _client(self) -> Redis: ...
        def _key(self, suffix: str) -> str: ...
        def _unavailable(self) -> contextlib.AbstractContextManager[None]: ...

    async def upsert_schedule(self, schedule: StoredSchedule) -> StoredSchedule:
        definition, fields = schedule_fields(schedule)
        return schedule_from_reply(await self._run("upsert_schedule", schedule.name, definition, *fields))

    async def get_schedule(self, name: str) -> StoredSchedule | None:
        client = await self._client()
        with self._unavailable():
            reply = await cast(Awaitable[dict[str, str]], client.hgetall(self._key(f"sched:{name}")))
        return schedule_from_reply([item for pair in reply.items() for item in pair]) if reply else None

    async def list_schedules(self) -> list[StoredSchedule]:
        client = await self._client()
        with self._unavailable():
            names = sorted(await cast(Awaitable[set[str]], client.smembers(self._key("scheds"))))
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self._key(f"sched:{name}"))
                replies: list[dict[str, str]] = await pipe.execute()
        return [schedule_from_reply([item for pair in r.items() for item in pair]) for r in replies if r]

    async def delete_schedule(self, name: str) -> bool:
        client = await self._client()
        with self._unavailable():
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key(f"sched:{name}"))
                pipe.srem(self._key("scheds"), name)
                deleted, _ = await pipe.execute()
        return bool(deleted)

    async def set_schedule_paused(self, name: str, paused: bool, *, now: datetime) -> StoredSchedule | None:
        reply = await self._run("set_schedule_paused", name, "1" if paused else "0", micros(now))
        return schedule_from_reply(reply) if reply else None

    async def record_schedule_run(
        self, name: str, generation: int, *, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        recorded = await self._run(
            "record_schedule_run",
            name,
            str(generation),
            micros(next_run_at) if next_run_at is not None else "",
            micros(last_run_at) if last_run_at is not None else "",
        )
        return bool(recorded)
