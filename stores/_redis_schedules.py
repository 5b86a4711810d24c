"""The recurring-schedule methods of ``RedisStore`` (a mixin; the store supplies the connection and scripts).

A schedule is a hash ``{prefix}:sched:{name}``: its definition as one JSON document, ``paused``, ``generation`` and
the bookkeeping times; ``{prefix}:scheds`` holds the names. What a redefinition or a pause changes is decided by
``stores._transitions`` from the schedule as read; the scripts insert and write it fenced by that reading (a
schedule changed meanwhile is read and decided again).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import datetime
from typing import cast

from ._redis_access import RedisAccess
from ._redis_codec import micros, schedule_fields, schedule_from_reply
from ._transitions import redefined_schedule, schedule_paused_changes
from .schedules import StoredSchedule

__all__ = ["INSERT_SCHEDULE", "RECORD_SCHEDULE_RUN", "REPLACE_SCHEDULE", "RedisSchedules"]

#: ARGV: prefix, name, definition, then the other fields as name/value pairs ('' for absent). Inserts the
#: schedule unless one of that name is stored. Returns the stored schedule (HGETALL).
INSERT_SCHEDULE = """
local key = ARGV[1] .. ':sched:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, 'name', ARGV[2], 'definition', ARGV[3])
  for i = 4, #ARGV, 2 do
    if ARGV[i + 1] ~= '' then redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
  end
  redis.call('SADD', ARGV[1] .. ':scheds', ARGV[2])
end
return redis.call('HGETALL', key)
"""

#: A fenced write of what ``stores._transitions`` decided from a schedule read before (a redefinition, a pause).
#: ARGV: prefix, name, the schedule as read (its HGETALL, JSON), then field/value pairs ('' for absent). Writes them
#: if the schedule is still as read. Returns the updated schedule, or nil when it changed (or went) meanwhile.
REPLACE_SCHEDULE = """
local key = ARGV[1] .. ':sched:' .. ARGV[2]
local expected, current, held = cjson.decode(ARGV[3]), redis.call('HGETALL', key), {}
if #current ~= #expected or #current == 0 then return false end
for i = 1, #current, 2 do held[current[i]] = current[i + 1] end
for i = 1, #expected, 2 do if held[expected[i]] ~= expected[i + 1] then return false end end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', key, ARGV[i]) else redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
end
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


class RedisSchedules(RedisAccess):
    async def upsert_schedule(self, schedule: StoredSchedule) -> StoredSchedule:
        definition, fields = schedule_fields(schedule)
        while True:
            held = await self._run("insert_schedule", schedule.name, definition, *fields)
            stored = schedule_from_reply(held)
            if stored.definition() == schedule.definition():
                return stored
            redefined = await self._replace_schedule(held, redefined_schedule(stored, schedule))
            if redefined is not None:
                return redefined
            # Changed meanwhile (redefined, paused, run or deleted): decide again on what is stored now.

    async def get_schedule(self, name: str) -> StoredSchedule | None:
        held = await self._read_schedule(name)
        return schedule_from_reply(held) if held else None

    async def _read_schedule(self, name: str) -> list[str]:
        """The schedule's hash as stored, a flat HGETALL list (empty when unknown)."""
        client = await self._client()
        with self._unavailable():
            reply = await cast(Awaitable[dict[str, str]], client.hgetall(self._key(f"sched:{name}")))
        return [item for pair in reply.items() for item in pair]

    async def _replace_schedule(self, held: list[str], updated: StoredSchedule) -> StoredSchedule | None:
        """Store ``updated`` if the schedule is still ``held`` (as read); None when it changed meanwhile."""
        definition, fields = schedule_fields(updated)
        expected = json.dumps(held, ensure_ascii=False)
        reply = await self._run("replace_schedule", updated.name, expected, "definition", definition, *fields)
        return schedule_from_reply(reply) if reply else None

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
        while True:
            held = await self._read_schedule(name)
            if not held:
                return None
            stored = schedule_from_reply(held)
            changes = schedule_paused_changes(paused, now=now, next_generation=stored.generation + 1)
            updated = await self._replace_schedule(held, stored.model_copy(update=changes))
            if updated is not None:
                return updated
            # Changed meanwhile: decide again on what is stored now.

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
