"""The worker-registry methods of ``RedisStore`` (a mixin; the store supplies the connection and scripts).

A worker is a hash ``{prefix}:w:{worker id}`` (a field per attribute; times as integer microseconds, the lists as
JSON); ``{prefix}:workers`` is a sorted set of worker ids scored by ``last_seen_at``, so forgetting the workers not
seen since a time is one range. Each change is one script, atomic on the server.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import cast

from ._redis_access import RedisAccess
from ._redis_codec import from_micros, micros
from .workers import StoredWorker, StoredWorkerState

__all__ = ["FORGET_WORKERS", "REGISTER_WORKER", "TOUCH_WORKER", "RedisWorkers"]

# ARGV: prefix, worker id, last seen (micros), then field, value pairs.
REGISTER_WORKER = """
local key = ARGV[1] .. ':w:' .. ARGV[2]
redis.call('DEL', key)
for i = 4, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
redis.call('ZADD', ARGV[1] .. ':workers', ARGV[3], ARGV[2])
return 1
"""

# ARGV: prefix, worker id, now (micros), state ('' keeps it).
TOUCH_WORKER = """
local key = ARGV[1] .. ':w:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('HSET', key, 'last_seen_at', ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', key, 'state', ARGV[4])
  if ARGV[4] == 'stopped' then redis.call('HSET', key, 'stopped_at', ARGV[3]) end
end
redis.call('ZADD', ARGV[1] .. ':workers', ARGV[3], ARGV[2])
return 1
"""

# ARGV: prefix, seen before (micros, exclusive).
FORGET_WORKERS = """
local ids = redis.call('ZRANGEBYSCORE', ARGV[1] .. ':workers', '-inf', '(' .. ARGV[2])
for _, id in ipairs(ids) do
  redis.call('DEL', ARGV[1] .. ':w:' .. id)
  redis.call('ZREM', ARGV[1] .. ':workers', id)
end
return #ids
"""


def _fields(worker: StoredWorker) -> list[str]:
    fields = [
        ("host", worker.host),
        ("pid", str(worker.pid)),
        ("queues", json.dumps(list(worker.queues))),
        ("command_types", json.dumps(list(worker.command_types))),
        ("started_at", micros(worker.started_at)),
        ("last_seen_at", micros(worker.last_seen_at)),
        ("lease_us", str(worker.lease_duration // timedelta(microseconds=1))),
        ("state", worker.state),
    ]
    if worker.stopped_at is not None:
        fields.append(("stopped_at", micros(worker.stopped_at)))
    return [item for pair in fields for item in pair]


def _from_hash(worker_id: str, values: dict[str, str]) -> StoredWorker:
    return StoredWorker(
        worker_id=worker_id,
        host=values["host"],
        pid=int(values["pid"]),
        queues=tuple(json.loads(values["queues"])),
        command_types=tuple(json.loads(values["command_types"])),
        started_at=from_micros(values["started_at"]),
        last_seen_at=from_micros(values["last_seen_at"]),
        lease_duration=timedelta(microseconds=int(values["lease_us"])),
        state=cast(StoredWorkerState, values["state"]),
        stopped_at=from_micros(values["stopped_at"]) if "stopped_at" in values else None,
    )


class RedisWorkers(RedisAccess):
    async def register_worker(self, worker: StoredWorker) -> None:
        await self._run("register_worker", worker.worker_id, micros(worker.last_seen_at), *_fields(worker))

    async def touch_worker(self, worker_id: str, *, now: datetime, state: StoredWorkerState | None = None) -> bool:
        return bool(await self._run("touch_worker", worker_id, micros(now), state or ""))

    async def list_workers(self) -> list[StoredWorker]:
        client = await self._client()
        with self._unavailable():
            ids = await cast(Awaitable[list[str]], client.zrange(self._key("workers"), 0, -1))
            async with client.pipeline(transaction=False) as pipe:
                for worker_id in ids:
                    pipe.hgetall(self._key(f"w:{worker_id}"))
                replies: list[dict[str, str]] = await pipe.execute()
        workers = [_from_hash(worker_id, reply) for worker_id, reply in zip(ids, replies, strict=True) if reply]
        return sorted(workers, key=lambda worker: (worker.started_at, worker.worker_id))

    async def forget_workers(self, *, seen_before: datetime) -> int:
        return int(await self._run("forget_workers", micros(seen_before)))
