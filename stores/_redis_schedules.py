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

__all__ = ["RECORD_SCHEDULE_RUN", "SET_SCHEDULE_PAUSED", "UPSERT_SCHEDULE", "RedisSchedules"]

#: ARGV: prefix, name, definition, then the other fields as name/value pairs ('' for absent). Inserts the
#: schedule, keeps it when the definition is unchanged, else replaces the definition and bumps the generation.
#: Returns the stored schedule (HGETALL).
UPSERT_SCHEDULE = """
local key = ARGV[1] .. ':sched:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, 'name', ARGV[2], 'definition', ARGV[3])
  for i = 4, #ARGV, 2 do
    if ARGV[i + 1] ~= '' then redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
  end
  redis.call('SADD', ARGV[1] .. ':scheds', ARGV[2])
elseif redis.call('HGET', key, 'definition') ~= ARGV[3] then
  local updated = ''
  for i = 4, #ARGV, 2 do if ARGV[i] == 'updated_at' then updated = ARGV[i + 1] end end
  redis.call('HSET', key, 'definition', ARGV[3], 'updated_at', updated)
  redis.call('HINCRBY', key, 'generation', 1)
end
return redis.call('HGETALL', key)
"""

#: ARGV: prefix, name, '1' to pause or '0' to resume, now. Returns the updated schedule, or nil when unknown.
SET_SCHEDULE_PAUSED = """
local key = ARGV[1] .. ':sched:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return false end
redis.call('HSET', key, 'paused', ARGV[3], 'updated_at', ARGV[4])
redis.call('HINCRBY', key, 'generation', 1)
if ARGV[3] == '1' then redis.call('HDEL', key, 'next_run_at') end
return redis.call('HGETALL', key)
"""

#: ARGV: prefix, name, generation, next run ('' for none), last run ('' to keep). Returns 1, or 0 when the schedule
#: is unknown or at another generation.
RECORD_SCHEDULE_RUN = """
local key = ARGV[1] .. ':sched:' .. ARGV[2]
if redis.call('HGET', key, 'generation') ~= ARGV[3] then return 0 end
if ARGV[4] == '' then redis.call('HDEL', key, 'next_run_at') else redis.call('HSET', key, 'next_run_at', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', key, 'last_run_at', ARGV[5]) end
return 1
"""


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
