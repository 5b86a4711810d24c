"""The Lua scripts of ``RedisStore``, in one place: each store operation that changes state is one script, run
atomically by the server in one round trip (EVALSHA; redis-py re-sends the source after a server restart).

Key layout (``P`` is the store's prefix followed by ``:``; times are integer microseconds since the epoch, UTC):

- ``P meta``            hash: ``layout`` (the layout version), ``seq`` (the scheduling-order counter)
- ``P e:{id}``          hash: one entry, a field per attribute; absent fields are ``None``
- ``P a:{id}``          list: the entry's attempts, as JSON, oldest first
- ``P d:{priority}|{queue}|{type}``  sorted set of PENDING entries of one priority, queue and command type,
                        scored by due time; ``P pq:{priority}`` the set of ``{queue}|{type}`` pairs that have some;
                        ``P prio`` sorted set of the priorities that have some (claims walk it highest first)
- ``P q:{queue}``, ``P queues``, ``P qs:{queue}``, ``P qdepth``, ``P qrun``, ``P locks``: queue settings, starts,
                        counters and held locks (``_redis_queues.py``, where the claim script is)
- ``P leases``          sorted set of PROCESSING entries, scored by lease expiry (recovery takes the lowest)
- ``P done:{status}``   sorted set of entries in a terminal status, scored by ``completed_at`` (purge, throughput)
- ``P all``, ``P s:{status}``, ``P t:{command type}``, ``P c:{correlation id}``, ``P r:{schedule name}``
                        sorted sets of entry ids scored by scheduling order: the listing and filtering indexes
- ``P dp:{id}``, ``P dc:{id}``, ``P dk:{id}``: the parents, condition and dependants of entries scheduled after
                        others (``_redis_dependency_scripts.py``, layout 3)
- ``P idem``            hash: idempotency key -> id of the entry holding it
- ``P counts``          hash: status -> number of entries
- ``P sched:{name}``    hash: one recurring schedule; ``P scheds``: set of schedule names (their scripts are in
                        ``_redis_schedules.py``)
- ``P w:{id}``          hash: one worker of the registry; ``P workers``: sorted set of worker ids by last seen
                        (their scripts are in ``_redis_workers.py``)
- ``P audit``           sorted set of audit records by time, ``{seq:016d}:{JSON}``; ``P audit:seq`` its counter
                        (``_redis_audit.py``)
- ``P wakeup``          pub/sub channel: the due time of entries that just became PENDING
- ``P finished``        pub/sub channel: the ids of entries that just reached a terminal status, a JSON list per
                        script run

Members of ``d:``, ``leases`` and ``done`` are ``{seq:016d}:{id}``: among equal scores Redis orders members
lexically, which is then scheduling order, the last key of the claim order.
"""

from __future__ import annotations

from ._redis_dependency_scripts import PURGE_PAIRS, RESOLVE

__all__ = [
    "ADD",
    "COUNT_FINISHED",
    "FINISH",
    "LAYOUT_VERSION",
    "LIB",
    "LIST",
    "NEXT_DUE",
    "PURGE",
    "RECLAIM",
    "RENEW",
]

#: The key layout this code writes; a store holding a newer one is refused (``SchemaVersionError``), an older one
#: upgraded on opening (``_redis_layout``).
LAYOUT_VERSION = 3

# Shared by every entry script. ARGV[1] is always the key prefix.
LIB = (
    """
local P = ARGV[1] .. ':'
local finished_ids = {}
local count_deltas, depth_deltas, running_deltas = {}, {}, {}
local resolve_dependants  -- defined at the end (``_redis_dependency_scripts.RESOLVE``)
local function member(id, seq) return string.format('%016d', tonumber(seq)) .. ':' .. id end
local function id_of(m) return string.sub(m, 18) end
local function add_to(deltas, name, by) deltas[name] = (deltas[name] or 0) + by end
-- The counters (per status, and per queue its PENDING and PROCESSING entries) change in Lua tables and reach the
-- server once per script run (flush), not twice per entry moved.
local function count(status, queue, by)
  add_to(count_deltas, status, by)
  if status == 'PENDING' then add_to(depth_deltas, queue, by)
  elseif status == 'PROCESSING' then add_to(running_deltas, queue, by) end
end
-- ``status_set``: the caller writes the status field itself, with the other fields it sets (one call, not two).
local function move_status(id, seq, old, new, queue, status_set)
  if old then
    redis.call('ZREM', P .. 's:' .. old, id)
    count(old, queue, -1)
  end
  redis.call('ZADD', P .. 's:' .. new, seq, id)
  count(new, queue, 1)
  if not status_set then redis.call('HSET', P .. 'e:' .. id, 'status', new) end
  if new ~= 'PENDING' and new ~= 'PROCESSING' and new ~= 'WAITING' then finished_ids[#finished_ids + 1] = id end
end
local function flush_counts()
  for _, pair in ipairs({{'counts', count_deltas}, {'qdepth', depth_deltas}, {'qrun', running_deltas}}) do
    for name, by in pairs(pair[2]) do
      if by ~= 0 then redis.call('HINCRBY', P .. pair[1], name, by) end
    end
  end
end
-- The ids that reached a terminal status, published once per script run (a JSON list), not once per entry: every
-- store of the prefix parses each message, and a batch of outcomes is one message instead of a hundred.
local function publish_finished()
  resolve_dependants()
  flush_counts()
  if #finished_ids > 0 then redis.call('PUBLISH', P .. 'finished', cjson.encode(finished_ids)) end
end
-- An entry's queue as stored (absent: the default queue).
local function queue_of(value) if value == false or value == nil then return 'default' end return value end
-- PENDING entries wait in one sorted set per (priority, queue, command type): ``P d:{priority}|{queue}|{type}``;
-- ``P pq:{priority}`` holds the ``{queue}|{type}`` pairs that have some, ``P prio`` the priorities.
local function push_due(id, seq, priority, due, queue, command_type)
  local pair = queue .. '|' .. command_type
  redis.call('ZADD', P .. 'd:' .. priority .. '|' .. pair, due, member(id, seq))
  redis.call('SADD', P .. 'pq:' .. priority, pair)
  redis.call('ZADD', P .. 'prio', priority, priority)
end
-- After members left ``P d:{priority}|{pair}``: drop the pair, and the priority, once they hold nothing.
local function forget_if_empty(priority, pair)
  if redis.call('EXISTS', P .. 'd:' .. priority .. '|' .. pair) == 0 then
    redis.call('SREM', P .. 'pq:' .. priority, pair)
    if redis.call('SCARD', P .. 'pq:' .. priority) == 0 then redis.call('ZREM', P .. 'prio', priority) end
  end
end
local function pop_due(id, seq, priority, queue, command_type)
  local pair = queue_of(queue) .. '|' .. tostring(command_type)
  redis.call('ZREM', P .. 'd:' .. priority .. '|' .. pair, member(id, seq))
  forget_if_empty(priority, pair)
end
-- A lock is held by the PROCESSING entry that took it (``P locks``: lock -> entry id) until that entry leaves
-- PROCESSING.
local function release_lock(id, lock)
  if lock and redis.call('HGET', P .. 'locks', lock) == id then redis.call('HDEL', P .. 'locks', lock) end
end
local function wake(due) redis.call('PUBLISH', P .. 'wakeup', due) end
-- A new entry in the listing indexes: every entry's, its command type's, correlation id's and schedule's.
local function index_entry(id, seq, fields)
  redis.call('ZADD', P .. 'all', seq, id)
  redis.call('ZADD', P .. 't:' .. fields['command_type'], seq, id)
  if fields['correlation_id'] then redis.call('ZADD', P .. 'c:' .. fields['correlation_id'], seq, id) end
  if fields['recurring_name'] then redis.call('ZADD', P .. 'r:' .. fields['recurring_name'], seq, id) end
end
-- The earlier of two due times (``earliest`` nil: none yet).
local function earlier(earliest, due)
  if earliest == nil or tonumber(due) < tonumber(earliest) then return due end
  return earliest
end
-- An entry as one JSON string (its HGETALL list): the client parses one string per entry, in C, instead of a
-- reply of fifty elements.
-- The id of the key comes last, so it wins over an ``id`` field written behind the store's back.
local function snapshot(entry)
  local flat = redis.call('HGETALL', entry)
  flat[#flat + 1] = 'id'
  flat[#flat + 1] = string.sub(entry, #P + 3)
  return cjson.encode(flat)
end
-- Whether a stored time is an integer the scripts can compare (a hash written behind the store's back may hold
-- anything, or nothing).
local function readable_time(value) return type(value) == 'string' and string.match(value, '^-?%d+$') ~= nil end
-- a <= b, exactly, for times as decimal integer strings (scores are doubles: about 32 microseconds apart in the
-- year 9000, so a score range can hold an entry a few microseconds too late, which is checked here).
local function at_or_before(a, b)
  local a_negative, b_negative = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if a_negative ~= b_negative then return a_negative end
  if a_negative then a, b = string.sub(b, 2), string.sub(a, 2) end
  if #a ~= #b then return #a < #b end
  return a <= b
end
"""
    + RESOLVE
)

#: ARGV: prefix, then the batch as JSON: a list of entries, each a flat name, value, name, value... list of strings
#: (one argument, not one per field: packing thousands of arguments costs the client more than the JSON does).
#: Returns the ids (the holder's id where an idempotency key is held).
ADD = (
    LIB
    + """
local batch = cjson.decode(ARGV[2])
local decoded = {}
for b, flat in ipairs(batch) do
  local fields = {}
  for j = 1, #flat, 2 do fields[flat[j]] = flat[j + 1] end
  if redis.call('EXISTS', P .. 'e:' .. fields['id']) == 1 then
    return redis.error_reply('EXISTS ' .. fields['id'])
  end
  decoded[b] = fields
end
local ids, earliest = {}, nil
for b, flat in ipairs(batch) do
  local fields = decoded[b]
  local id, key = fields['id'], fields['idempotency_key']
  local holder = key and redis.call('HGET', P .. 'idem', key)
  if holder then
    ids[b] = holder
  else
    ids[b] = id
    local seq = string.format('%d', redis.call('HINCRBY', P .. 'meta', 'seq', 1))
    redis.call('HSET', P .. 'e:' .. id, 'seq', seq, unpack(flat))
    local queue = queue_of(fields['queue'])
    move_status(id, seq, nil, 'PENDING', queue)
    index_entry(id, seq, fields)
    if key then redis.call('HSET', P .. 'idem', key, id) end
    push_due(id, seq, fields['priority'], fields['scheduled_for'], queue, fields['command_type'])
    earliest = earlier(earliest, fields['scheduled_for'])
  end
end
flush_counts()
if earliest then wake(earliest) end
return ids
"""
)

#: ARGV: prefix, until, then id/token pairs. Returns the ids renewed.
RENEW = (
    LIB
    + """
local renewed = {}
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  local entry = P .. 'e:' .. id
  local current = redis.call('HMGET', entry, 'status', 'lease_token', 'seq')
  if current[1] == 'PROCESSING' and current[2] == ARGV[i + 1] then
    redis.call('HSET', entry, 'lease_expires_at', ARGV[2])
    redis.call('ZADD', P .. 'leases', ARGV[2], member(id, current[3]))
    renewed[#renewed + 1] = id
  end
end
return renewed
"""
)

#: The fenced ends of claims, several in one run (outcomes arriving together share a round trip). ARGV: prefix, then
#: JSON: a list of requests {entry id, lease token, new status, attempt JSON ('' for none), '1' to count a failure,
#: [name, value, ...] to set, [name, ...] to delete}. Returns per request the entry's ``scheduled_for`` after the
#: change, or nil when the lease is not held, then ``resolution_reply()`` (what the outcomes did to dependants).
FINISH = (
    LIB
    + """
-- An entry leaving PROCESSING may free its lock or a place under its queue's max_running: entries waiting for
-- either are due already, so every worker is woken (once per run, with the epoch: look now).
local freed, capped = false, {}
local function limited(queue)
  if capped[queue] == nil then capped[queue] = redis.call('HEXISTS', P .. 'q:' .. queue, 'max_running') == 1 end
  return capped[queue]
end
local function finish(r)
  local id, new, attempt, assigned, deleted = r[1], r[3], r[4], r[6], r[7]
  local entry = P .. 'e:' .. id
  local current = redis.call('HMGET', entry, 'status', 'lease_token', 'seq', 'queue', 'lock')
  if current[1] ~= 'PROCESSING' or current[2] ~= r[2] then return false end
  local seq, queue = current[3], queue_of(current[4])
  local m = member(id, seq)
  redis.call('ZREM', P .. 'leases', m)
  redis.call('HDEL', entry, 'lease_owner', 'lease_token', 'lease_expires_at')
  move_status(id, seq, 'PROCESSING', new, queue)
  release_lock(id, current[5])
  if current[5] or limited(queue) then freed = true end
  if attempt ~= '' then
    redis.call('HSET', entry, 'attempt_count', redis.call('RPUSH', P .. 'a:' .. id, attempt))
  elseif (tonumber(redis.call('HGET', entry, 'attempt_count')) or 0) == 0 then
    redis.call('HDEL', entry, 'started_at')  -- never ran: expired or released before its first attempt
  end
  if r[5] == '1' then redis.call('HINCRBY', entry, 'retry_count', 1) end
  if #assigned > 0 then redis.call('HSET', entry, unpack(assigned)) end
  if #deleted > 0 then redis.call('HDEL', entry, unpack(deleted)) end
  if new == 'PENDING' then
    local after = redis.call('HMGET', entry, 'priority', 'scheduled_for', 'command_type')
    push_due(id, seq, after[1], after[2], queue, after[3])
    if attempt == '' then wake(after[2]) end
    return after[2] or ''  -- '' (not nil, which means "not held"): no readable due time
  end
  redis.call('ZADD', P .. 'done:' .. new, redis.call('HGET', entry, 'completed_at'), m)
  return redis.call('HGET', entry, 'scheduled_for') or ''
end
local results = {}
for i, r in ipairs(cjson.decode(ARGV[2])) do results[i] = finish(r) end
publish_finished()
if freed then wake('0') end
results[#results + 1] = resolution_reply()
return results
"""
)

#: ARGV: prefix, now, limit, worker id, lease expiry, token prefix. Returns {previous owner, previous expiry,
#: JSON} per entry taken over, lowest expiry (then scheduling order) first.
RECLAIM = (
    LIB
    + """
local taken = {}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local entry = P .. 'e:' .. id_of(m)
  local previous = redis.call('HMGET', entry, 'lease_owner', 'lease_expires_at')
  redis.call('HSET', entry, 'lease_owner', ARGV[4], 'lease_token', ARGV[6] .. '-' .. (#taken + 1),
    'lease_expires_at', ARGV[5])
  redis.call('ZADD', P .. 'leases', ARGV[5], m)
  taken[#taken + 1] = {previous[1], previous[2], snapshot(entry)}
end
return taken
"""
)

#: ARGV: prefix, index key, offset, limit, '1' for newest first, then field/value pairs every entry must match.
#: Returns the matching entries (JSON each), one page.
LIST = (
    LIB
    + """
local index, offset, limit, newest = P .. ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), ARGV[5] == '1'
local function range(start, stop)
  if newest then return redis.call('ZREVRANGE', index, start, stop) end
  return redis.call('ZRANGE', index, start, stop)
end
local page = {}
if limit == 0 then return page end
if #ARGV == 5 then
  for _, id in ipairs(range(offset, offset + limit - 1)) do page[#page + 1] = snapshot(P .. 'e:' .. id) end
  return page
end
local names = {}
for i = 6, #ARGV, 2 do names[#names + 1] = ARGV[i] end
local skipped, position, chunk = 0, 0, 500
while #page < limit do
  local ids = range(position, position + chunk - 1)
  if #ids == 0 then break end
  position = position + chunk
  for _, id in ipairs(ids) do
    local entry = P .. 'e:' .. id
    local values = redis.call('HMGET', entry, unpack(names))
    local matches = true
    for j = 1, #names do
      if values[j] ~= ARGV[5 + 2 * j] then matches = false break end
    end
    if matches then
      if skipped < offset then skipped = skipped + 1
      elseif #page < limit then page[#page + 1] = snapshot(entry) end
    end
  end
end
return page
"""
)

#: ARGV: prefix. Returns the earliest due time of PENDING entries, or nil. Read from the entries, not the scores:
#: a double holds microseconds exactly only within about 285 years of 1970.
NEXT_DUE = (
    LIB
    + """
local earliest = nil
for _, priority in ipairs(redis.call('ZRANGE', P .. 'prio', 0, -1)) do
  for _, pair in ipairs(redis.call('SMEMBERS', P .. 'pq:' .. priority)) do
    local first = redis.call('ZRANGE', P .. 'd:' .. priority .. '|' .. pair, 0, 0, 'WITHSCORES')
    if first[1] then
      local due = redis.call('HGET', P .. 'e:' .. id_of(first[1]), 'scheduled_for')
      if not readable_time(due) then due = string.format('%d', tonumber(first[2])) end
      if earliest == nil or tonumber(due) < tonumber(earliest) then earliest = due end
    end
  end
end
return earliest or false
"""
)

#: ARGV: prefix, older than, limit, then statuses. Deletes entries finished before ``older than``; returns how many.
PURGE = (
    LIB
    + PURGE_PAIRS
    + """
local older, limit, deleted = ARGV[2], tonumber(ARGV[3]), 0
for s = 4, #ARGV do
  local status = ARGV[s]
  local done = P .. 'done:' .. status
  if deleted >= limit then break end
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', done, '-inf', '(' .. older, 'LIMIT', 0, limit - deleted)) do
    local id = id_of(m)
    local entry = P .. 'e:' .. id
    local f = redis.call('HMGET', entry, 'command_type', 'correlation_id', 'recurring_name', 'idempotency_key')
    redis.call('ZREM', done, m)
    redis.call('ZREM', P .. 'all', id)
    redis.call('ZREM', P .. 's:' .. status, id)
    redis.call('HINCRBY', P .. 'counts', status, -1)
    if f[1] then redis.call('ZREM', P .. 't:' .. f[1], id) end
    if f[2] then redis.call('ZREM', P .. 'c:' .. f[2], id) end
    if f[3] then redis.call('ZREM', P .. 'r:' .. f[3], id) end
    if f[4] and redis.call('HGET', P .. 'idem', f[4]) == id then redis.call('HDEL', P .. 'idem', f[4]) end
    redis.call('DEL', entry, P .. 'a:' .. id)
    forget_pairs(id)
    deleted = deleted + 1
  end
end
return deleted
"""
)

#: ARGV: prefix, since, bucket length, then statuses. Returns status, bucket index, count triples.
COUNT_FINISHED = (
    LIB
    + """
local since, bucket = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for s = 4, #ARGV do
  local counts = {}
  local found = redis.call('ZRANGEBYSCORE', P .. 'done:' .. ARGV[s], ARGV[2], '+inf', 'WITHSCORES')
  for i = 2, #found, 2 do
    local index = math.floor((tonumber(found[i]) - since) / bucket)
    counts[index] = (counts[index] or 0) + 1
  end
  for index, count in pairs(counts) do
    out[#out + 1] = {ARGV[s], index, count}
  end
end
return out
"""
)
