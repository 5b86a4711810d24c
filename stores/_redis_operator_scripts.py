"""The operator scripts of ``RedisStore``: cancel, requeue, dismiss (the transitions of ``stores._transitions``,
applied by one Lua function, ``TRANSITION``) and the request to cancel a running entry. The key layout is described
in ``_redis_scripts``.
"""

from __future__ import annotations

from ._redis_scripts import LIB

__all__ = ["CANCEL", "DISMISS", "REQUEST_CANCEL", "REQUEUE", "TRANSITION"]

#: An operator transition of ``stores._transitions``, as ``transition_args`` passes it: ARGV[2] its source statuses
#: (JSON), ARGV[3] the new status, ARGV[4] and ARGV[5] the field changes (JSON: [name, value, ...] to set, [name, ...]
#: to delete). ``transition(id)`` applies it to an entry in a source status, with the indexes of both statuses;
#: whether it did. The caller flushes the counters (``flush_counts`` or ``publish_finished``).
TRANSITION = """
local sources, new = cjson.decode(ARGV[2]), ARGV[3]
local assigned, deleted = cjson.decode(ARGV[4]), cjson.decode(ARGV[5])
local function settled(status) return status ~= 'PENDING' and status ~= 'PROCESSING' and status ~= 'WAITING' end
local function transition(id)
  local entry = P .. 'e:' .. id
  local current = redis.call('HMGET', entry, 'status', 'seq', 'priority', 'queue', 'command_type')
  local from, seq, queue = current[1], current[2], queue_of(current[4])
  local allowed = false
  for _, source in ipairs(sources) do if from == source then allowed = true end end
  if not allowed then return false end
  if from == 'PENDING' then pop_due(id, seq, current[3], current[4], current[5])
  elseif settled(from) then redis.call('ZREM', P .. 'done:' .. from, member(id, seq)) end
  move_status(id, seq, from, new, queue)
  if #assigned > 0 then redis.call('HSET', entry, unpack(assigned)) end
  if #deleted > 0 then redis.call('HDEL', entry, unpack(deleted)) end
  if new == 'PENDING' then
    local due = redis.call('HGET', entry, 'scheduled_for')
    push_due(id, seq, current[3], due, queue, current[5])
    wake(due)
  elseif settled(new) then
    redis.call('ZADD', P .. 'done:' .. new, redis.call('HGET', entry, 'completed_at'), member(id, seq))
  end
  return true
end
"""

#: ``stores._transitions.CANCEL`` for one entry or an index's. ARGV: prefix, the transition (``TRANSITION``), index
#: ('id', 'c' or 'r'), value, kept occurrence generation ('' for none). Returns the cancelled entries, in scheduling
#: order, then ``resolution_reply()`` (their dependants).
CANCEL = (
    LIB
    + TRANSITION
    + """
local index, keep = ARGV[6], ARGV[8]
local ids
if index == 'id' then ids = {ARGV[7]} else ids = redis.call('ZRANGE', P .. index .. ':' .. ARGV[7], 0, -1) end
local cancelled = {}
for _, id in ipairs(ids) do
  local entry = P .. 'e:' .. id
  local kept = keep ~= '' and redis.call('HGET', entry, 'occurrence_generation') == keep
  if not kept and transition(id) then cancelled[#cancelled + 1] = snapshot(entry) end
end
publish_finished()
cancelled[#cancelled + 1] = resolution_reply()
return cancelled
"""
)

#: Ask the holder of a PROCESSING entry to cancel its attempt: ``cancel_requested_at`` (the first request's kept),
#: and the holder is woken on the ``finished`` channel (it re-reads the entry). ARGV: prefix, id, now. Returns the
#: entry, or false when it is not PROCESSING.
REQUEST_CANCEL = (
    LIB
    + """
local id, now = ARGV[2], ARGV[3]
local entry = P .. 'e:' .. id
if redis.call('HGET', entry, 'status') ~= 'PROCESSING' then return false end
redis.call('HSETNX', entry, 'cancel_requested_at', now)
redis.call('PUBLISH', P .. 'finished', id)
return snapshot(entry)
"""
)

#: ``stores._transitions.REQUEUE``. ARGV: prefix, the transition (``TRANSITION``), id. Returns 1, or 0 when the entry
#: is not FAILED.
REQUEUE = (
    LIB
    + TRANSITION
    + """
if not transition(ARGV[6]) then return 0 end
flush_counts()
return 1
"""
)

#: ``stores._transitions.DISMISS``. ARGV: prefix, the transition (``TRANSITION``), id. Returns the dismissed entry,
#: or nil when it is not FAILED.
DISMISS = (
    LIB
    + TRANSITION
    + """
if not transition(ARGV[6]) then return false end
publish_finished()
return snapshot(P .. 'e:' .. ARGV[6])
"""
)
