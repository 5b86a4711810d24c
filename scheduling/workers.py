"""The live fleet as the application sees it: ``WorkerInfo``, and how it is read from the store's registry.

Workers register when they start and heartbeat with their lease renewals (``scheduling._registry``). The store
keeps what each worker said; the decision made here is whether a worker is *gone*: it exited cleanly, or it has not
been seen for longer than its own lease duration, so it has missed every renewal of its leases (it crashed, hung or
lost the store). An entry such a worker still holds is *stuck* until another worker's recovery takes it over.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.errors import UnreadableEntryError, UnsupportedFeatureError
from stores.queues import DEFAULT_QUEUE
from stores.workers import StoredWorker

__all__ = [
    "WAITING",
    "WORKER_STATES",
    "Fleet",
    "WaitingForWorker",
    "WorkerInfo",
    "WorkerState",
    "count_stuck",
    "is_stuck",
    "list_workers",
    "live_command_types",
    "waiting_by_queue",
    "waiting_for_a_worker",
    "waiting_for_workers",
    "worker_state",
    "workers_by_state",
]

#: Without a registered worker, an entry overdue this long, of a type none PROCESSING, is reported as waiting for a
#: worker that handles it (``waiting_for_a_worker``).
WAITING = timedelta(minutes=1)
#: ``running``; ``stopping`` (draining at shutdown); ``gone`` (exited, or not seen for a lease duration).
WorkerState = Literal["running", "stopping", "gone"]

#: Every state, in the order reports show them.
WORKER_STATES: tuple[WorkerState, ...] = ("running", "stopping", "gone")

#: Entries read per page when counting what each worker holds.
_PAGE = 1_000


class WorkerInfo(BaseModel):
    """One worker process of the fleet: a live one, or one gone recently (gone workers are forgotten after
    ``SchedulerSettings.worker_retention``).

    .. versionadded:: 0.5
    """

    model_config = ConfigDict(frozen=True)

    #: Its ``SchedulerSettings.worker_id``, the name in its leases and the audit trail.
    worker_id: str
    host: str
    pid: int
    #: The queues it claims from; empty: every queue.
    queues: tuple[str, ...]
    #: The command types it has handlers for.
    command_types: tuple[str, ...]
    started_at: AwareDatetime
    #: Its latest heartbeat.
    last_seen_at: AwareDatetime
    #: Entries it holds: PROCESSING under its lease (expired ones included, for a gone worker: they are stuck).
    running: int
    state: WorkerState


class WaitingForWorker(BaseModel):
    """Due PENDING entries of one queue and command type that no live worker would claim: none that is not gone
    claims the queue with a handler for the type (``waiting_by_queue``). They wait, never dead-lettered for that,
    until such a worker starts.

    .. versionadded:: 0.5
    """

    model_config = ConfigDict(frozen=True)

    queue: str
    command_type: str
    count: int


class Fleet(BaseModel):
    """The workers at ``now`` and the entries stuck with gone ones: what ``cqrs-scheduling workers --json`` prints."""

    now: AwareDatetime
    workers: list[WorkerInfo]
    #: Registered workers per state, every state present.
    by_state: dict[str, int]
    #: Entries held by gone workers (PROCESSING under an expired lease), not yet recovered.
    stuck: int
    #: Due PENDING entries per queue and command type that no live worker would claim (``waiting_by_queue``).
    waiting: dict[str, dict[str, int]] = {}

    @classmethod
    async def read(cls, store: ScheduledCommandStore, now: datetime) -> Fleet:
        workers = await list_workers(store, now)
        by_state: dict[str, int] = dict.fromkeys(WORKER_STATES, 0)
        for worker in workers:
            by_state[worker.state] += 1
        stuck = await count_stuck(store, now)
        return cls(now=now, workers=workers, by_state=by_state, stuck=stuck, waiting=await waiting_by_queue(store, now))


def worker_state(worker: StoredWorker, now: datetime) -> WorkerState:
    """``gone`` once the worker stopped, or was last seen longer than its lease duration before ``now``."""
    if worker.state == "stopped" or now - worker.last_seen_at > worker.lease_duration:
        return "gone"
    return worker.state


async def list_workers(store: ScheduledCommandStore, now: datetime) -> list[WorkerInfo]:
    """Every registered worker, by start time, with its state at ``now`` and the entries it holds."""
    workers = await store.list_workers()
    held: dict[str, int] = {}
    if workers:
        for entry in await _processing(store):
            if entry.lease_owner is not None:
                held[entry.lease_owner] = held.get(entry.lease_owner, 0) + 1
    return [
        WorkerInfo(
            worker_id=worker.worker_id,
            host=worker.host,
            pid=worker.pid,
            queues=worker.queues,
            command_types=worker.command_types,
            started_at=worker.started_at,
            last_seen_at=worker.last_seen_at,
            running=held.get(worker.worker_id, 0),
            state=worker_state(worker, now),
        )
        for worker in workers
    ]


async def live_command_types(store: ScheduledCommandStore, now: datetime) -> set[str] | None:
    """The command types the live (not gone) workers have handlers for; ``None`` when no worker is registered at
    all (nothing is known: workers of a version before the registry, or none started yet)."""
    workers = await store.list_workers()
    if not workers:
        return None
    return {command_type for w in workers if worker_state(w, now) != "gone" for command_type in w.command_types}


async def waiting_for_a_worker(
    store: ScheduledCommandStore,
    now: datetime,
    *,
    handled: Collection[str] | None = None,
    after: timedelta | None = None,
) -> dict[str, int]:
    """Due PENDING entries per type that no live worker would claim (``waiting_by_queue``, summed over the queues);
    with ``handled``, those of the types not in it, whatever their queue."""
    if handled is not None:
        overdue = await store.count_by_command_type(
            ScheduledCommandStatus.PENDING, due_before=now - (after or timedelta())
        )
        return {command_type: n for command_type, n in sorted(overdue.items()) if command_type not in handled}
    totals: dict[str, int] = {}
    for waiting in (await waiting_by_queue(store, now, after=after)).values():
        for command_type, n in waiting.items():
            totals[command_type] = totals.get(command_type, 0) + n
    return dict(sorted(totals.items()))


async def waiting_by_queue(
    store: ScheduledCommandStore, now: datetime, *, after: timedelta | None = None
) -> dict[str, dict[str, int]]:
    """Due PENDING entries per queue and type that no live worker would claim: none that is not gone claims the
    queue (its ``queues`` name it, or are empty: every queue) with a handler for the type. With no worker registered
    at all, a guess instead: overdue by more than ``after`` (``WAITING``), of a type none PROCESSING.

    A store without queues (RedisStore) keeps every entry in ``default``."""
    workers = await store.list_workers()
    if workers:
        live = [worker for worker in workers if worker_state(worker, now) != "gone"]
        claims: list[tuple[frozenset[str] | None, frozenset[str]]] = [
            (frozenset(worker.queues) or None, frozenset(worker.command_types)) for worker in live
        ]
        due_before = now - (after or timedelta())
    else:
        handled = frozenset(await store.count_by_command_type(ScheduledCommandStatus.PROCESSING))
        claims = [(None, handled)]
        due_before = now - (after or WAITING)
    try:
        queues = [queue.name for queue in await store.list_queues() if queue.depth]
    except UnsupportedFeatureError:
        queues = [DEFAULT_QUEUE]
    waiting: dict[str, dict[str, int]] = {}
    for queue in queues:
        handled_here = {t for names, types in claims if names is None or queue in names for t in types}
        overdue = await store.count_by_command_type(ScheduledCommandStatus.PENDING, due_before=due_before, queue=queue)
        unhandled = {t: n for t, n in sorted(overdue.items()) if t not in handled_here}
        if unhandled:
            waiting[queue] = unhandled
    return waiting


async def waiting_for_workers(
    store: ScheduledCommandStore, now: datetime, *, after: timedelta | None = None
) -> list[WaitingForWorker]:
    """``waiting_by_queue`` as typed rows, by queue then command type."""
    waiting = await waiting_by_queue(store, now, after=after)
    return [
        WaitingForWorker(queue=queue, command_type=command_type, count=count)
        for queue, types in sorted(waiting.items())
        for command_type, count in sorted(types.items())
    ]


async def workers_by_state(store: ScheduledCommandStore, now: datetime) -> dict[str, int]:
    """How many registered workers are in each state at ``now`` (every state present)."""
    counts: dict[str, int] = dict.fromkeys(WORKER_STATES, 0)
    for worker in await store.list_workers():
        counts[worker_state(worker, now)] += 1
    return counts


def is_stuck(entry: ScheduledCommandEntry, now: datetime) -> bool:
    """PROCESSING under a lease expired at ``now``: its worker is gone and no live worker has recovered it yet."""
    return (
        entry.status is ScheduledCommandStatus.PROCESSING
        and entry.lease_expires_at is not None
        and entry.lease_expires_at <= now
    )


async def count_stuck(store: ScheduledCommandStore, now: datetime, *, processing: int | None = None) -> int:
    """Entries held by a worker that is gone: PROCESSING under a lease expired at ``now``, not yet recovered.

    ``processing``: the PROCESSING count when the caller has just read it (counting every entry twice costs a
    scan of the whole table at a million entries)."""
    if processing is None:
        processing = (await store.count_by_status()).get(ScheduledCommandStatus.PROCESSING, 0)
    if not processing:
        return 0
    return max(0, processing - await store.count_running(now=now))


async def _processing(store: ScheduledCommandStore) -> list[ScheduledCommandEntry]:
    entries: list[ScheduledCommandEntry] = []
    offset = 0
    while True:
        page = await store.list_entries(
            status=ScheduledCommandStatus.PROCESSING, limit=_PAGE, offset=offset, on_unreadable=_skip
        )
        entries.extend(page)
        if len(page) < _PAGE:
            return entries
        offset += _PAGE


def _skip(error: UnreadableEntryError) -> None:
    """A row that does not read is shown by the entry listings; counting what a worker holds leaves it out."""
