"""The claim on PostgreSQL: one statement, with or without fleet-wide queue limits.

Routing walks the routed index (queue, command_type, priority, scheduled_for, seq) with loose index scans. The
(queue, type) ``pairs`` to read: a worker that names its queues and its command types, with at most
``DIRECT_PAIRS_MAX`` pairs between them, gives them as named (in its unpaused queues), with no probe
(``CLAIM_NAMED``, ``CLAIM_LIMITED_NAMED``; ``claim_statement`` picks the statement for a route); otherwise they are
discovered, ``queues`` the distinct PENDING queues (one probe each), keeping the worker's unpaused ones, and
``types`` the distinct command types within each, keeping those the worker handles. Entries of other queues and
types cost one probe per distinct value, not a scan, whether 10 or 10 million of them are pending; past
``DIRECT_PAIRS_MAX`` named pairs, discovery costs less than a probe per pair (a worker handling 100 types, 3 of them
pending). ``priorities``: the distinct priorities of each pair from the highest down, one probe each plus one (a
pair with nothing pending costs one). 4 queues and 4 types with entries of each: 32 probes, where discovering the
pairs first took 57. (Walking a pair's lower priorities only when they can beat the window's bound saves 16 more,
about 40 buffers, but the larger statement cost 0.6 ms more server CPU per claim, prepared, than it saved.)
The candidates are then read as one queue's would be, about ``window`` rows whatever the number of groups (each
group yielding ``limit`` rows cost 16 groups four times the rows and buffers of one queue):

- ``heads``: each (queue, type, priority) group's first ``share`` due entries, ``share`` being ``window`` divided
  among the groups (rounded up), so they hold at least ``window`` rows when every group has enough due;
- ``bound``: the ``window``-th best of them. The best ``window`` of all are never worse than it, and a group whose
  last head is better than it may hold more of them: ``rest`` reads those, only the rows between the group's last
  head and the bound (when no bound exists, fewer than ``window`` heads, between its last head and ``:now``), at
  most ``limit - share`` per group, so the best ``limit`` of all are always read and no group reads past ``limit``;
- ``candidates``: the best ``window`` of ``heads`` and ``rest``.

When groups are alike (the usual case) ``rest`` reads nothing: one probe per group that filled its share. Each
group's scan names its queue as ``queue = ANY(ARRAY[q])``: not an equality the planner propagates, so the order
``queue, scheduled_for, seq`` is one only the routed index gives, and the planner never walks the due-time index
filtering out other groups' rows (it did when the groups' entries were interleaved in time, reading every group's
rows for each). The type and priority stay plain equalities, so the ``scheduled_for`` bound ends the index scan
(a row comparison would end it only at the end of the priority: PostgreSQL before 18 stops on its first column).

``eligible`` leaves out the candidates whose lock a PROCESSING entry holds (from the rows ``candidates`` read:
fetching them again by key cost a third of the claim on one queue), ``firsts`` keeps the first of each lock;
``locked`` orders them and locks a batch, skipping rows other workers are claiming; the UPDATE claims them. Two
claims racing for one lock: the unique index on the lock of PROCESSING entries fails the second, which the store
runs again.

``CLAIM`` leaves limited queues (``max_running`` or a rate) out: it is the claim of a worker none of whose queues is
limited, and costs what it cost before limits existed. ``CLAIM_LIMITED`` claims every queue, limited ones within
their limits, in the same one statement. A statement in READ COMMITTED reads one snapshot, taken when it starts, and
keeps it while it waits for row locks: a count of the queue's PROCESSING entries or recent starts may miss a claim
committed a moment before, however the statement serializes on the queue's row. So the limits are not counted, they
are held as rows that a racing claim cannot take twice:

- ``max_running``: each claimed entry of the queue takes a running slot, a number from 1 to ``max_running`` that no
  PROCESSING entry of the queue holds (``queue_slot``); the unique index on (queue, queue_slot) of PROCESSING
  entries makes two claims taking one slot impossible: the second fails, as a lock race does, and runs again with a
  new snapshot. An entry frees its slot by leaving PROCESSING, whichever statement ends it.
- a rate of ``count`` per ``per``: each start takes one of the queue's ``count`` start slots (rows of
  ``scheduled_queue_starts``) whose last start is older than ``per``, under ``FOR UPDATE SKIP LOCKED``. A row
  locked by ``FOR UPDATE`` is read in its latest committed version and its condition checked again (PostgreSQL's
  EvalPlanQual): a slot another claim took after this statement's snapshot is seen as taken. ``count`` slots each
  used at most once per ``per`` is exactly "at most ``count`` starts within any window of ``per``". Slots are
  created as they are first needed, numbered up from the highest one (``ON CONFLICT DO NOTHING`` against a claim
  creating the same number), so a queue limited to a million per hour holds only as many rows as it ever started
  within an hour.

The snapshot's counts still serve as a first cut (``allowed``): the batch is not filled with entries of a queue at
its limit while other queues' entries wait.
"""

from __future__ import annotations

from stores.queues import Route

__all__ = [
    "CLAIM",
    "CLAIM_LIMITED",
    "CLAIM_LIMITED_NAMED",
    "CLAIM_NAMED",
    "CLAIM_WINDOW_FACTOR",
    "DIRECT_PAIRS_MAX",
    "claim_statement",
]

#: Extra candidates per priority in the claim, so concurrent claimers skipping each other's locked rows still fill
#: their batches.
CLAIM_WINDOW_FACTOR = 4

#: Up to this many (queue, command type) pairs named by the worker, the claim probes each pair directly instead of
#: discovering the pending queues and types (see the module docstring).
DIRECT_PAIRS_MAX = 32

# The (queue, type) pairs to read, discovered (``_DISCOVER``) or as the worker names them (``_NAMED``); then the walk,
# the lock step and (``{limited}``) the condition on the queue's row that leaves limited queues out.
_DISCOVER = """
WITH RECURSIVE queues(q) AS (
    SELECT min(queue) FROM scheduled_commands WHERE status = 'PENDING'
  UNION ALL
    SELECT (SELECT min(queue) FROM scheduled_commands WHERE status = 'PENDING' AND queue > queues.q)
    FROM queues WHERE queues.q IS NOT NULL
),
types(q, t) AS (
    SELECT queues.q, (SELECT min(command_type) FROM scheduled_commands WHERE status = 'PENDING' AND queue = queues.q)
    FROM queues
    WHERE queues.q IS NOT NULL AND (CAST(:queues AS text[]) IS NULL OR queues.q = ANY(CAST(:queues AS text[])))
      AND NOT EXISTS (SELECT 1 FROM scheduled_queues WHERE name = queues.q AND (paused{limited}))
  UNION ALL
    SELECT types.q, (
        SELECT min(command_type) FROM scheduled_commands
        WHERE status = 'PENDING' AND queue = types.q AND command_type > types.t)
    FROM types WHERE types.t IS NOT NULL
),
pairs(q, t) AS (
    SELECT types.q, types.t FROM types
    WHERE types.t IS NOT NULL AND (CAST(:types AS text[]) IS NULL OR types.t = ANY(CAST(:types AS text[])))
),"""

_NAMED = """
WITH RECURSIVE pairs(q, t) AS (
    SELECT named.q, named_types.t
    FROM unnest(CAST(:queues AS text[])) AS named(q) CROSS JOIN unnest(CAST(:types AS text[])) AS named_types(t)
    WHERE NOT EXISTS (SELECT 1 FROM scheduled_queues WHERE name = named.q AND (paused{limited}))
),"""

# ``queue = ANY(ARRAY[q])`` in the group scans is deliberate: it keeps the planner on the routed index (docstring).
_WALK = """
priorities(q, t, p) AS (
    SELECT pairs.q, pairs.t, (
        SELECT max(priority) FROM scheduled_commands
        WHERE status = 'PENDING' AND queue = pairs.q AND command_type = pairs.t)
    FROM pairs
  UNION ALL
    SELECT priorities.q, priorities.t, (
        SELECT max(priority) FROM scheduled_commands
        WHERE status = 'PENDING' AND queue = priorities.q AND command_type = priorities.t AND priority < priorities.p)
    FROM priorities WHERE priorities.p IS NOT NULL
),
groups AS (
    SELECT priorities.q, priorities.t, priorities.p, (:window + n.n - 1) / n.n AS share
    FROM priorities CROSS JOIN (SELECT greatest(count(*), 1) AS n FROM priorities WHERE p IS NOT NULL) AS n
    WHERE priorities.p IS NOT NULL
),
heads AS (
    SELECT groups.q, groups.t, groups.p, groups.share, c.seq, c.lock, c.scheduled_for, c.nth FROM groups
    CROSS JOIN LATERAL (
        SELECT seq, lock, scheduled_for, row_number() OVER (ORDER BY scheduled_for, seq) AS nth FROM (
            SELECT seq, lock, scheduled_for FROM scheduled_commands
            WHERE status = 'PENDING' AND queue = ANY(ARRAY[groups.q]) AND command_type = groups.t
              AND priority = groups.p AND scheduled_for <= :now
            ORDER BY queue, scheduled_for, seq
            LIMIT groups.share
        ) AS first_rows
    ) AS c
),
bound AS (
    SELECT p, scheduled_for, seq FROM heads ORDER BY p DESC, scheduled_for, seq OFFSET :window - 1 LIMIT 1
),
rest AS (
    SELECT tails.q, tails.p, c.seq, c.lock, c.scheduled_for FROM heads AS tails
    LEFT JOIN bound ON true
    CROSS JOIN LATERAL (
        SELECT seq, lock, scheduled_for FROM scheduled_commands
        WHERE status = 'PENDING' AND queue = ANY(ARRAY[tails.q]) AND command_type = tails.t
          AND priority = tails.p AND (priority, scheduled_for, seq) > (tails.p, tails.scheduled_for, tails.seq)
          AND scheduled_for <= CASE WHEN bound.p = tails.p THEN bound.scheduled_for ELSE :now END
          AND (bound.p IS DISTINCT FROM tails.p OR (scheduled_for, seq) <= (bound.scheduled_for, bound.seq))
        ORDER BY queue, scheduled_for, seq
        LIMIT :limit - tails.share
    ) AS c
    WHERE tails.nth = tails.share AND tails.share < :limit
      AND (bound.p IS NULL OR tails.p > bound.p
           OR (tails.p = bound.p AND (tails.scheduled_for, tails.seq) < (bound.scheduled_for, bound.seq)))
),
candidates AS (
    SELECT seq, lock, queue, priority, scheduled_for FROM (
        SELECT seq, lock, q AS queue, p AS priority, scheduled_for FROM heads
      UNION ALL
        SELECT seq, lock, q AS queue, p AS priority, scheduled_for FROM rest
    ) AS merged
    ORDER BY priority DESC, scheduled_for, seq
    LIMIT :window
),
eligible AS (
    SELECT seq, lock, queue, priority, scheduled_for FROM candidates AS e
    WHERE lock IS NULL OR NOT EXISTS (
        SELECT 1 FROM scheduled_commands AS holder WHERE holder.lock = e.lock AND holder.status = 'PROCESSING')
),
firsts AS (
    SELECT seq, queue, priority, scheduled_for FROM (
        SELECT seq, lock, queue, priority, scheduled_for,
               row_number() OVER (PARTITION BY lock ORDER BY priority DESC, scheduled_for, seq) AS nth
        FROM eligible
    ) AS ranked
    WHERE lock IS NULL OR nth = 1
),"""

# ``(status || '')``: no index on PENDING entries can serve this step, so the candidates are fetched by key whatever
# the statistics say. A table filled in bulk and not analyzed yet had the planner scan every due entry's index key
# here, filtering by ``seq``, in every claim (9,660 rows read for 40 candidates, 10,000 pending).
_LOCKED = """
locked AS (
    SELECT seq, queue, priority, scheduled_for FROM scheduled_commands
    WHERE seq = ANY(ARRAY(SELECT seq FROM {source})) AND (status || '') = 'PENDING' AND scheduled_for <= :now
    ORDER BY priority DESC, scheduled_for, seq
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)"""

_CLAIMED = """
UPDATE scheduled_commands AS t
SET status = 'PROCESSING', started_at = :now, lease_owner = :worker_id,
    lease_token = replace(gen_random_uuid()::text, '-', ''), lease_expires_at = :lease_expires_at,
    queue_slot = {slot}
FROM {source}
WHERE t.seq = {source}.seq
RETURNING t.*
"""

_UNLIMITED = " OR max_running IS NOT NULL OR rate_count IS NOT NULL"

#: The claim of a worker whose queues have no limits (limited queues left out: see the module docstring), its
#: (queue, type) pairs discovered.
CLAIM = (
    _DISCOVER.format(limited=_UNLIMITED)
    + _WALK
    + _LOCKED.format(source="firsts")
    + _CLAIMED.format(slot="NULL", source="locked")
)

#: ``CLAIM`` through the (queue, type) pairs the worker names.
CLAIM_NAMED = (
    _NAMED.format(limited=_UNLIMITED)
    + _WALK
    + _LOCKED.format(source="firsts")
    + _CLAIMED.format(slot="NULL", source="locked")
)

# Limited queues, after the walk. ``limits``: the limited queues among the candidates', with what the snapshot shows
# each may still start (a first cut: see the module docstring). ``allowed``: no more of a limited queue than that.
# ``running_slots``: the lowest running slots no PROCESSING entry holds, numbered per queue. ``wanted``: how many
# start slots each rate limited queue needs for the locked batch (no more than it has running slots for);
# ``reused`` takes free slots (their latest start older than ``per``, re-checked on the row's latest version when
# locked), ``added`` creates the missing ones up to ``count``; ``rated`` counts what each queue got. ``granted``: the
# locked entries that got what their queue requires, the first ones of each queue; each takes its running slot.
# Locked entries left out stay PENDING (their row locks end with the statement).
_LIMITS = (
    """
limits AS (
    SELECT l.name AS queue, l.max_running, l.rate_count, l.rate_per_us * interval '1 microsecond' AS per,
           running.n AS running,
           least(l.max_running - running.n, l.rate_count - (
               SELECT count(*) FROM scheduled_queue_starts AS s
               WHERE s.queue = l.name AND s.slot < l.rate_count
                 AND s.started_at > :now - l.rate_per_us * interval '1 microsecond')) AS allowance
    FROM scheduled_queues AS l
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM scheduled_commands AS r WHERE r.status = 'PROCESSING' AND r.queue = l.name
    ) AS running
    WHERE l.name IN (SELECT queue FROM firsts) AND (l.max_running IS NOT NULL OR l.rate_count IS NOT NULL)
),
allowed AS (
    SELECT seq FROM firsts WHERE queue NOT IN (SELECT queue FROM limits)
  UNION ALL
    SELECT seq FROM (
        SELECT firsts.seq, limits.allowance,
               row_number() OVER (PARTITION BY firsts.queue ORDER BY firsts.priority DESC, firsts.scheduled_for,
                                  firsts.seq) AS nth
        FROM firsts JOIN limits ON limits.queue = firsts.queue
    ) AS ranked
    WHERE nth <= allowance
),"""
    + _LOCKED.format(source="allowed")
    + """,
running_slots AS (
    SELECT limits.queue, slots.slot, row_number() OVER (PARTITION BY limits.queue ORDER BY slots.slot) AS nth
    FROM limits CROSS JOIN LATERAL generate_series(1, least(limits.max_running, limits.running + :limit)) AS slots(slot)
    WHERE limits.max_running IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM scheduled_commands AS holder
        WHERE holder.status = 'PROCESSING' AND holder.queue = limits.queue AND holder.queue_slot = slots.slot)
),
wanted AS (
    SELECT limits.queue, limits.rate_count, limits.per,
           CASE WHEN limits.max_running IS NULL THEN count(*)
                ELSE least(count(*), (SELECT count(*) FROM running_slots WHERE running_slots.queue = limits.queue))
           END AS n
    FROM locked JOIN limits ON limits.queue = locked.queue
    WHERE limits.rate_count IS NOT NULL
    GROUP BY limits.queue, limits.max_running, limits.rate_count, limits.per
),
reused AS (
    UPDATE scheduled_queue_starts AS s SET started_at = :now
    FROM (
        SELECT free.queue, free.slot FROM wanted CROSS JOIN LATERAL (
            SELECT queue, slot FROM scheduled_queue_starts
            WHERE queue = wanted.queue AND slot < wanted.rate_count AND started_at <= :now - wanted.per
            ORDER BY started_at
            LIMIT wanted.n
            FOR UPDATE SKIP LOCKED
        ) AS free
    ) AS free
    WHERE s.queue = free.queue AND s.slot = free.slot
    RETURNING s.queue
),
added AS (
    INSERT INTO scheduled_queue_starts (queue, slot, started_at)
    SELECT wanted.queue, created.slot, :now FROM wanted
    CROSS JOIN LATERAL (
        SELECT coalesce(max(slot), -1) AS slot FROM scheduled_queue_starts WHERE queue = wanted.queue
    ) AS top
    CROSS JOIN LATERAL generate_series(
        top.slot + 1,
        least(wanted.rate_count - 1, top.slot + wanted.n - (SELECT count(*) FROM reused WHERE queue = wanted.queue))
    ) AS created(slot)
    ON CONFLICT DO NOTHING
    RETURNING queue
),
rated AS (
    SELECT queue, count(*) AS n FROM (SELECT queue FROM reused UNION ALL SELECT queue FROM added) AS taken
    GROUP BY queue
),
granted AS (
    SELECT ranked.seq, running_slots.slot FROM (
        SELECT seq, queue, row_number() OVER (PARTITION BY queue ORDER BY priority DESC, scheduled_for, seq) AS nth
        FROM locked
    ) AS ranked
    LEFT JOIN limits ON limits.queue = ranked.queue
    LEFT JOIN rated ON rated.queue = ranked.queue
    LEFT JOIN running_slots ON running_slots.queue = ranked.queue AND running_slots.nth = ranked.nth
    WHERE limits.queue IS NULL
       OR ((limits.rate_count IS NULL OR ranked.nth <= coalesce(rated.n, 0))
           AND (limits.max_running IS NULL OR running_slots.slot IS NOT NULL))
)"""
)

#: The claim of a worker one of whose queues is limited: every queue, limited ones within their limits.
CLAIM_LIMITED = _DISCOVER.format(limited="") + _WALK + _LIMITS + _CLAIMED.format(slot="granted.slot", source="granted")

#: ``CLAIM_LIMITED`` through the (queue, type) pairs the worker names.
CLAIM_LIMITED_NAMED = (
    _NAMED.format(limited="") + _WALK + _LIMITS + _CLAIMED.format(slot="granted.slot", source="granted")
)


def claim_statement(route: Route, *, limited: bool) -> str:
    """The claim for a worker's route: through its named (queue, type) pairs when it names both and they are at
    most ``DIRECT_PAIRS_MAX``, otherwise discovering the pending queues and types."""
    queues, types = route.queues, route.command_types
    named = queues is not None and types is not None and len(queues) * len(types) <= DIRECT_PAIRS_MAX
    if limited:
        return CLAIM_LIMITED_NAMED if named else CLAIM_LIMITED
    return CLAIM_NAMED if named else CLAIM
