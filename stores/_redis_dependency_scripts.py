"""The Lua of ``RedisStore``'s dependencies (``ScheduleOptions.after``, groups); the rule they apply is
``stores/dependencies.py``'s.

Keys (``P`` is the store's prefix followed by ``:``; added by key layout 3):

- ``P dp:{id}``   list: the parents of dependant ``id``, in the order given
- ``P dc:{id}``   hash: its condition (``any``: ``1`` runs after any outcome, ``0`` after success only) and a field
                  ``>{parent}`` per parent whose outcome was counted (each pair counts once)
- ``P dk:{id}``   sorted set: the dependants of ``id``, scored by scheduling order
- ``P meta``      field ``deps`` = ``1`` once a dependant was ever stored under the prefix: until then, outcomes skip
                  the lookup of dependants altogether

``RESOLVE`` is part of every entry script (``_redis_scripts.LIB``): ``publish_finished`` runs it before the counters
are flushed, so every script that ends entries (the batched outcomes, the cancels, dismiss) resolves their
dependants in the same atomic run, cascading (a dependant it cancels joins the ids it walks).
"""

from __future__ import annotations

__all__ = ["ADD_DEPENDANTS_BODY", "PURGE_PAIRS", "RESOLVE"]

#: Defines ``resolve_dependants`` (declared earlier in ``LIB``) and ``resolution_reply``. Uses ``finished_ids``,
#: ``move_status``, ``push_due``, ``snapshot``, ``member``, ``wake`` and ``queue_of`` of ``LIB``.
RESOLVE = """
-- The dependants this run released (the earliest due time) and cancelled (their snapshots), for the client of the
-- store that ran it (it tells its own workers and its DependantsCancelledListener).
local released_earliest, cancelled_dependants = nil, {}
local function cancel_dependant(id, seq, queue, from, at, reason)
  local entry = P .. 'e:' .. id
  redis.call('HSET', entry, 'status', 'CANCELLED', 'completed_at', at, 'error_message', reason,
    'pending_parents', '0')
  move_status(id, seq, from, 'CANCELLED', queue, true)
  redis.call('ZADD', P .. 'done:CANCELLED', at, member(id, seq))
  cancelled_dependants[#cancelled_dependants + 1] = snapshot(entry)
end
-- A due time or priority written behind the store's back that the sets cannot hold is queued as due at once with
-- priority 0: the claim that takes it finds the hash unreadable and dead-letters it naming the field, and the
-- parent's outcome (this script) is never broken by a dependant's hash.
local function release_dependant(id, c)
  local queue = queue_of(c.queue)
  local due = readable_time(c.due) and c.due or '0'
  local priority = readable_time(c.priority) and c.priority or '0'
  redis.call('HSET', P .. 'e:' .. id, 'status', 'PENDING', 'pending_parents', '0')
  move_status(id, c.seq, 'WAITING', 'PENDING', queue, true)
  push_due(id, c.seq, priority, due, queue, tostring(c.command_type))
  released_earliest = earlier(released_earliest, due)
end
-- Walks ``finished_ids`` (the entries this run ended, and the dependants it cancels on the way).
resolve_dependants = function()
  if #finished_ids == 0 or redis.call('HGET', P .. 'meta', 'deps') ~= '1' then return end
  local i = 1
  while i <= #finished_ids do
    local parent = finished_ids[i]
    i = i + 1
    local children = redis.call('ZRANGE', P .. 'dk:' .. parent, 0, -1)
    if #children > 0 then
      local p = redis.call('HMGET', P .. 'e:' .. parent, 'status', 'completed_at')
      for _, child in ipairs(children) do
        local condition = P .. 'dc:' .. child
        if redis.call('HSETNX', condition, '>' .. parent, '1') == 1 then
          local f = redis.call('HMGET', P .. 'e:' .. child, 'status', 'seq', 'pending_parents', 'priority',
            'scheduled_for', 'queue', 'command_type', 'created_at')
          if f[1] == 'WAITING' then
            local c = {seq = f[2], priority = f[4], due = f[5], queue = f[6], command_type = f[7]}
            if p[1] == 'COMPLETED' or redis.call('HGET', condition, 'any') == '1' then
              local pending = (tonumber(f[3]) or 1) - 1
              if pending <= 0 then release_dependant(child, c)
              else redis.call('HSET', P .. 'e:' .. child, 'pending_parents', pending) end
            else
              local reason = 'ParentNotCompleted: parent ' .. parent .. ' ended ' .. tostring(p[1])
              local at = (readable_time(p[2]) and p[2]) or (readable_time(f[8]) and f[8]) or '0'
              cancel_dependant(child, c.seq, queue_of(c.queue), 'WAITING', at, reason)
            end
          end
        end
      end
    end
  end
  if released_earliest then wake(released_earliest) end
end
-- What a script that ended entries adds to its reply: the earliest due time released ('' for none), then the
-- snapshots of the dependants it cancelled.
local function resolution_reply()
  local reply = {released_earliest or ''}
  for _, cancelled in ipairs(cancelled_dependants) do reply[#reply + 1] = cancelled end
  return reply
end
"""

#: Part of the purge script: forget the pairs of a purged dependant ``id`` (a purged parent's stay while its
#: dependants are kept, so they still name it).
PURGE_PAIRS = """
local function forget_pairs(id)
  for _, parent in ipairs(redis.call('LRANGE', P .. 'dp:' .. id, 0, -1)) do
    redis.call('ZREM', P .. 'dk:' .. parent, id)
  end
  redis.call('DEL', P .. 'dp:' .. id, P .. 'dc:' .. id)
end
"""

#: ``add_dependants``, after ``LIB``. ARGV: prefix, then JSON: a list of [fields (flat name, value... list), parents
#: (a list, empty for an entry that waits for nothing), '1' for any outcome or '0' for success only]. All or none:
#: every check comes before the first write. Errors: ``EXISTS {id}``, ``UNKNOWN {parent}``, ``LATER {id} {parent}``
#: (a parent placed after its dependant in the batch). Returns ``resolution_reply()``.
ADD_DEPENDANTS_BODY = """
local batch = cjson.decode(ARGV[2])
local decoded, placed = {}, {}
for b, item in ipairs(batch) do
  local fields = {}
  for j = 1, #item[1], 2 do fields[item[1][j]] = item[1][j + 1] end
  local id = fields['id']
  if redis.call('EXISTS', P .. 'e:' .. id) == 1 then return redis.error_reply('EXISTS ' .. id) end
  decoded[b] = fields
  placed[id] = b
end
for b, item in ipairs(batch) do
  for _, parent in ipairs(item[2]) do
    local at = placed[parent]
    if at == nil then
      if redis.call('EXISTS', P .. 'e:' .. parent) == 0 then return redis.error_reply('UNKNOWN ' .. parent) end
    elseif at >= b then
      return redis.error_reply('LATER ' .. decoded[b]['id'] .. ' ' .. parent)
    end
  end
end
local earliest = nil
for b, item in ipairs(batch) do
  local fields, parents = decoded[b], item[2]
  local id = fields['id']
  local queue = queue_of(fields['queue'])
  local seq = string.format('%d', redis.call('HINCRBY', P .. 'meta', 'seq', 1))
  local status, pending, reason, broken_at = 'PENDING', 0, nil, nil
  if #parents > 0 then
    local any = item[3] == '1'
    local condition = P .. 'dc:' .. id
    redis.call('HSET', condition, 'any', item[3])
    for _, parent in ipairs(parents) do
      redis.call('RPUSH', P .. 'dp:' .. id, parent)
      redis.call('ZADD', P .. 'dk:' .. parent, seq, id)
      local parent_status = redis.call('HGET', P .. 'e:' .. parent, 'status')
      if parent_status == 'COMPLETED' or (any and (parent_status == 'FAILED' or parent_status == 'EXPIRED'
          or parent_status == 'CANCELLED')) then
        redis.call('HSET', condition, '>' .. parent, '1')
      elseif parent_status == 'FAILED' or parent_status == 'EXPIRED' or parent_status == 'CANCELLED' then
        redis.call('HSET', condition, '>' .. parent, '1')
        if reason == nil then reason = 'ParentNotCompleted: parent ' .. parent .. ' ended ' .. parent_status end
      else
        pending = pending + 1
      end
    end
    if reason ~= nil then status = 'CANCELLED' elseif pending > 0 then status = 'WAITING' end
  end
  fields['status'] = status
  local flat = {}
  for name, value in pairs(fields) do
    if name ~= 'pending_parents' then flat[#flat + 1] = name flat[#flat + 1] = value end
  end
  redis.call('HSET', P .. 'e:' .. id, 'seq', seq, 'pending_parents', pending, unpack(flat))
  index_entry(id, seq, fields)
  if status == 'CANCELLED' then
    cancel_dependant(id, seq, queue, nil, fields['created_at'], reason)
  else
    move_status(id, seq, nil, status, queue, true)
    if status == 'PENDING' then
      push_due(id, seq, fields['priority'], fields['scheduled_for'], queue, fields['command_type'])
      earliest = earlier(earliest, fields['scheduled_for'])
    end
  end
end
redis.call('HSET', P .. 'meta', 'deps', '1')
publish_finished()
if earliest then
  wake(earliest)
  released_earliest = earlier(released_earliest, earliest)
end
return resolution_reply()
"""
