"""Queues on ``RedisStore``: the routed claim (queues, command types, pausing, locks, fleet-wide limits) as one Lua
script, and the queue methods of the store (a mixin: pausing, limits, listing).

Keys (``P`` is the prefix and a colon; see ``_redis_scripts`` for the rest):

- ``P d:{priority}|{queue}|{type}``  sorted set of the PENDING entries of one priority, queue and command type,
                                     scored by due time; ``P pq:{priority}`` the set of ``{queue}|{type}`` pairs
                                     that have some; ``P prio`` the priorities that have some
- ``P q:{queue}``                    hash: ``paused`` ('1'), ``max_running``, ``rate_count``, ``rate_per_us``;
                                     ``P queues`` the set of queues that have one
- ``P qs:{queue}``                   sorted set of the starts of a rate-limited queue, scored by time
- ``P qdepth``, ``P qrun``           hashes: queue -> PENDING, PROCESSING entries
- ``P locks``                        hash: lock -> id of the PROCESSING entry that holds it

A claim walks the priorities highest first; within one, it merges the pairs the route allows (a lazy k-way merge
by due time, then scheduling order), reading each pair's due entries a batch at a time. Its cost grows with the
pairs of queue and command type that have due entries at that priority, not with how many types the worker
handles: a worker with 50 handlers facing one busy type reads one sorted set.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime, timedelta

from ._redis_access import RedisAccess
from ._redis_codec import from_micros
from ._redis_scripts import LIB
from .queues import QueueInfo, QueueLimits, RateLimit, Route, check_queue_name

__all__ = ["CLAIM", "SET_QUEUE", "RedisQueues", "route_args"]

#: ARGV: prefix, now, limit, worker id, lease expiry, token prefix, allowed queues (JSON list, '' for any), allowed
#: command types (likewise). Returns the claimed entries (JSON each), in claim order.
CLAIM = (
    LIB
    + """
local now, limit, owner, expiry, token = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6]
local function allowed(list)
  if list == '' then return nil end
  local set = {}
  for _, name in ipairs(cjson.decode(list)) do set[name] = true end
  return set
end
local allow_queue, allow_type = allowed(ARGV[7]), allowed(ARGV[8])
-- Per queue: whether it may be claimed (not paused) and how many more of its entries may start (nil: no limit).
local queues = {}
local function queue_state(queue)
  local state = queues[queue]
  if state then return state end
  local cfg = redis.call('HMGET', P .. 'q:' .. queue, 'paused', 'max_running', 'rate_count', 'rate_per_us')
  state = {open = cfg[1] ~= '1'}
  if state.open and cfg[2] then
    state.left = tonumber(cfg[2]) - (tonumber(redis.call('HGET', P .. 'qrun', queue)) or 0)
  end
  if state.open and cfg[3] then
    state.starts = P .. 'qs:' .. queue
    -- A start at or before now - per has left the window (formatted whole: Lua would print 1.7e+15).
    redis.call('ZREMRANGEBYSCORE', state.starts, '-inf', string.format('%.0f', tonumber(now) - tonumber(cfg[4])))
    local by_rate = tonumber(cfg[3]) - redis.call('ZCARD', state.starts)
    if state.left == nil or by_rate < state.left then state.left = by_rate end
  end
  queues[queue] = state
  return state
end
local function may_start(state) return state.left == nil or state.left > 0 end
local claimed, taken_locks = {}, {}
for _, priority in ipairs(redis.call('ZREVRANGE', P .. 'prio', 0, -1)) do
  if #claimed >= limit then break end
  local sources = {}
  for _, pair in ipairs(redis.call('SMEMBERS', P .. 'pq:' .. priority)) do
    local bar = string.find(pair, '|', 1, true)
    local queue, command_type = string.sub(pair, 1, bar - 1), string.sub(pair, bar + 1)
    if (allow_queue == nil or allow_queue[queue]) and (allow_type == nil or allow_type[command_type]) then
      local state = queue_state(queue)
      if state.open and may_start(state) then
        sources[#sources + 1] = {key = P .. 'd:' .. priority .. '|' .. pair, pair = pair, queue = queue,
          state = state, members = {}, scores = {}, next = 1, skipped = 0, more = true, took = false, want = 0}
      end
    end
  end
  -- Each set is read a few members at a time (a fair share of the batch, twice as many at each refill), and the
  -- sets are merged through a binary heap of their heads: a pick costs log(sets), not a scan of every set. One
  -- set (the common case) needs no merge, so its members come without scores.
  local merge = #sources > 1
  local function fill(source)
    if source.next <= #source.members then return true end
    if not source.more then return false end
    -- Members claimed left the set; those skipped stay ahead of the next read.
    local want = math.min(limit - #claimed, source.want)
    source.want = source.want * 2
    source.next, source.members, source.scores = 1, {}, {}
    if merge then
      local found = redis.call('ZRANGEBYSCORE', source.key, '-inf', now, 'WITHSCORES', 'LIMIT', source.skipped, want)
      for j = 1, #found, 2 do
        source.members[#source.members + 1] = found[j]
        source.scores[#source.scores + 1] = tonumber(found[j + 1])
      end
    else
      source.members = redis.call('ZRANGEBYSCORE', source.key, '-inf', now, 'LIMIT', source.skipped, want)
    end
    source.more = #source.members == want
    return #source.members > 0
  end
  local function before(a, b)
    local at, bt = a.scores[a.next], b.scores[b.next]
    return at < bt or (at == bt and a.members[a.next] < b.members[b.next])
  end
  local heap = {}
  local function push(source)
    heap[#heap + 1] = source
    local i = #heap
    while i > 1 and before(heap[i], heap[math.floor(i / 2)]) do
      local parent = math.floor(i / 2)
      heap[i], heap[parent] = heap[parent], heap[i]
      i = parent
    end
  end
  local function pop()
    local top, last = heap[1], heap[#heap]
    heap[#heap] = nil
    if #heap > 0 then
      heap[1] = last
      local i = 1
      while true do
        local smallest = i
        for child = 2 * i, 2 * i + 1 do
          if child <= #heap and before(heap[child], heap[smallest]) then smallest = child end
        end
        if smallest == i then break end
        heap[i], heap[smallest] = heap[smallest], heap[i]
        i = smallest
      end
    end
    return top
  end
  local share = merge and math.max(2, math.ceil(limit / #sources)) or limit
  for _, source in ipairs(sources) do
    source.want = share
    if fill(source) then push(source) end
  end
  while #claimed < limit and #heap > 0 do
    local best = pop()
    -- A set whose queue may start no more in this claim leaves the heap, its head untouched.
    if may_start(best.state) then
      local m = best.members[best.next]
      best.next = best.next + 1
      local id = id_of(m)
      local entry = P .. 'e:' .. id
      -- The order comes from the member, not the hash (which may have been written behind the store's back); an
      -- unreadable due time is claimed at its score, so that the client dead-letters it naming the field.
      local seq = string.format('%d', tonumber(string.sub(m, 1, 16)))
      local current = redis.call('HMGET', entry, 'scheduled_for', 'lock')
      local due, lock = current[1], current[2]
      local free = not lock or (not taken_locks[lock] and redis.call('HEXISTS', P .. 'locks', lock) == 0)
      if free and (not readable_time(due) or at_or_before(due, now)) then
        redis.call('ZREM', best.key, m)
        best.took = true
        move_status(id, seq, 'PENDING', 'PROCESSING', best.queue, true)
        local lease_token = token .. '-' .. (#claimed + 1)
        redis.call('HSET', entry, 'status', 'PROCESSING', 'seq', seq, 'started_at', now, 'lease_owner', owner,
          'lease_token', lease_token, 'lease_expires_at', expiry)
        redis.call('ZADD', P .. 'leases', expiry, m)
        if lock then
          taken_locks[lock] = true
          redis.call('HSET', P .. 'locks', lock, id)
        end
        local state = best.state
        if state.left then state.left = state.left - 1 end
        if state.starts then redis.call('ZADD', state.starts, now, lease_token) end
        claimed[#claimed + 1] = snapshot(entry)
      else
        best.skipped = best.skipped + 1
      end
      if may_start(best.state) and fill(best) then push(best) end
    end
  end
  for _, source in ipairs(sources) do
    if source.took then forget_if_empty(priority, source.pair) end
  end
end
flush_counts()
return claimed
"""
)

#: ARGV: prefix, queue, then field/value pairs to set ('' deletes the field). Drops the queue's hash (and its starts)
#: once it holds nothing.
SET_QUEUE = """
local key = ARGV[1] .. ':q:' .. ARGV[2]
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '' then redis.call('HDEL', key, ARGV[i]) else redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
end
if redis.call('HEXISTS', key, 'rate_count') == 0 then redis.call('DEL', ARGV[1] .. ':qs:' .. ARGV[2]) end
if redis.call('EXISTS', key) == 0 then
  redis.call('SREM', ARGV[1] .. ':queues', ARGV[2])
else
  redis.call('SADD', ARGV[1] .. ':queues', ARGV[2])
end
return 1
"""


def route_args(route: Route | None) -> tuple[str, str]:
    """The claim script's queue and command type arguments for ``route`` ('' for any)."""
    if route is None:
        return "", ""

    def listed(names: frozenset[str] | None) -> str:
        return "" if names is None else json.dumps(sorted(names), ensure_ascii=False, separators=(",", ":"))

    return listed(route.queues), listed(route.command_types)


def _limits(values: dict[str, str]) -> QueueLimits:
    rate = None
    if "rate_count" in values and "rate_per_us" in values:
        rate = RateLimit(count=int(values["rate_count"]), per=timedelta(microseconds=int(values["rate_per_us"])))
    max_running = int(values["max_running"]) if "max_running" in values else None
    return QueueLimits(max_running=max_running, rate=rate)


class RedisQueues(RedisAccess):
    async def set_queue_paused(self, name: str, paused: bool) -> None:
        check_queue_name(name)
        await self._run("set_queue", name, "paused", "1" if paused else "")

    async def set_queue_limits(self, name: str, limits: QueueLimits) -> None:
        check_queue_name(name)
        rate = limits.rate
        await self._run(
            "set_queue",
            name,
            "max_running",
            str(limits.max_running) if limits.max_running is not None else "",
            "rate_count",
            str(rate.count) if rate is not None else "",
            "rate_per_us",
            str(rate.per // timedelta(microseconds=1)) if rate is not None else "",
        )

    async def list_queues(self) -> list[QueueInfo]:
        client = await self._client()
        with self._unavailable():
            async with client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self._key("qdepth"))
                pipe.hgetall(self._key("qrun"))
                pipe.smembers(self._key("queues"))
                depth, running, configured = await pipe.execute()
            names = sorted(configured)
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self._key(f"q:{name}"))
                settings: list[dict[str, str]] = await pipe.execute()
        stored = dict(zip(names, settings, strict=True))
        active = {name for name in depth.keys() | running.keys() if int(depth.get(name, 0)) + int(running.get(name, 0))}
        infos = []
        for name in sorted(active | {name for name, values in stored.items() if values}):
            values = stored.get(name, {})
            limits = _limits(values)
            infos.append(
                QueueInfo(
                    name=name,
                    paused=values.get("paused") == "1",
                    depth=int(depth.get(name, 0)),
                    running=int(running.get(name, 0)),
                    max_running=limits.max_running,
                    rate=limits.rate,
                )
            )
        return infos

    async def next_start_at(self, now: datetime, queues: Collection[str] | None = None) -> datetime | None:
        """When the earliest unpaused rate limited queue (of ``queues``) that spent its rate frees a start: its
        ``rate.count``-th latest start (older ones leave the set at the next claim) plus ``rate.per``."""
        client = await self._client()
        with self._unavailable():
            configured: set[str] = await client.smembers(self._key("queues"))  # type: ignore[assignment]  # decoded
            names = [name for name in sorted(configured) if queues is None or name in queues]
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(self._key(f"q:{name}"))
                settings: list[dict[str, str]] = await pipe.execute()
            rated: list[tuple[str, RateLimit]] = []
            for name, values in zip(names, settings, strict=True):
                rate = _limits(values).rate
                if rate is not None and values.get("paused") != "1":
                    rated.append((name, rate))
            async with client.pipeline(transaction=False) as pipe:
                for name, rate in rated:
                    pipe.zrevrange(self._key(f"qs:{name}"), rate.count - 1, rate.count - 1, withscores=True)
                nth_latest: list[list[tuple[str, float]]] = await pipe.execute()
        earliest: datetime | None = None
        for (_, rate), found in zip(rated, nth_latest, strict=True):
            if not found:
                continue  # fewer starts than the rate allows: not spent
            frees_at = from_micros(int(found[0][1])) + rate.per
            if frees_at > now and (earliest is None or frees_at < earliest):
                earliest = frees_at
        return earliest
