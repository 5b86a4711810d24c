"""Upgrades of ``RedisStore``'s key layout, one Lua script per version step, run on opening (atomically: the server
runs a script alone, so no claim sees a half-moved layout).

Layout 1 -> 2 (queues, routing, locks and limits): the PENDING entries move from one sorted set per priority
(``due:{priority}``) to one per priority, queue and command type (``d:{priority}|default|{type}``; layout 1 held
the default queue only), and the per-queue counters start from the status counters. The step touches every PENDING
entry once, in one script run: on a million PENDING entries it holds the server for seconds, once. Workers of
layout 1 must be stopped before a worker of layout 2 opens the prefix (they would go on writing the old sets).

Layout 2 -> 3 (dependencies: ``ScheduleOptions.after``, groups): new keys only (``dp:``, ``dc:``, ``dk:``, see
``_redis_dependency_scripts.py``) and a new status (WAITING); no layout-2 key changes meaning, so the step only
records the version. Workers of layout 2 must still be stopped first: they would end a parent without resolving
its dependants.
"""

from __future__ import annotations

__all__ = ["UPGRADES"]

# ARGV: prefix. Returns the number of PENDING entries moved, or -1 when the layout was not 1.
_LAYOUT_1_TO_2 = """
local P = ARGV[1] .. ':'
if redis.call('HGET', P .. 'meta', 'layout') ~= '1' then return -1 end
local moved = 0
for _, priority in ipairs(redis.call('ZRANGE', P .. 'prio', 0, -1)) do
  local old = P .. 'due:' .. priority
  local members = redis.call('ZRANGE', old, 0, -1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local m = members[i]
    local command_type = redis.call('HGET', P .. 'e:' .. string.sub(m, 18), 'command_type') or ''
    local pair = 'default|' .. command_type
    redis.call('ZADD', P .. 'd:' .. priority .. '|' .. pair, members[i + 1], m)
    redis.call('SADD', P .. 'pq:' .. priority, pair)
    moved = moved + 1
  end
  redis.call('DEL', old)
end
local counts = redis.call('HMGET', P .. 'counts', 'PENDING', 'PROCESSING')
if counts[1] then redis.call('HSET', P .. 'qdepth', 'default', counts[1]) end
if counts[2] then redis.call('HSET', P .. 'qrun', 'default', counts[2]) end
redis.call('HSET', P .. 'meta', 'layout', '2')
return moved
"""

# ARGV: prefix. Returns 0 (nothing moves), or -1 when the layout was not 2.
_LAYOUT_2_TO_3 = """
local P = ARGV[1] .. ':'
if redis.call('HGET', P .. 'meta', 'layout') ~= '2' then return -1 end
redis.call('HSET', P .. 'meta', 'layout', '3')
return 0
"""

#: Layout version -> the script that upgrades a prefix from it to the next version (ARGV: the prefix).
UPGRADES = {1: _LAYOUT_1_TO_2, 2: _LAYOUT_2_TO_3}
