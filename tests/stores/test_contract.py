"""The store contract (``stores/base.py``), asserted identically for every store in ``STORE_FACTORIES``.

Tests use only the public ``ScheduledCommandStore`` methods, so a new store passes or fails the very same suite.
Times come from a fixed base time, never from the wall clock.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduling.entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from stores import MemoryStore, ScheduledCommandStore
from stores.base import FinishedCount
from stores.schedules import StoredSchedule

#: As in ``conftest.py``: builds an unopened, empty store that may keep files in the given directory.
StoreFactory = Callable[[Path], ScheduledCommandStore]

PENDING = ScheduledCommandStatus.PENDING
PROCESSING = ScheduledCommandStatus.PROCESSING
COMPLETED = ScheduledCommandStatus.COMPLETED
FAILED = ScheduledCommandStatus.FAILED
CANCELLED = ScheduledCommandStatus.CANCELLED
EXPIRED = ScheduledCommandStatus.EXPIRED

#: Every time in this suite is an offset from here (whole seconds, so any backend round-trips them exactly).
BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
WORKER = "worker-1"


def at(seconds: float) -> datetime:
    """``BASE`` plus ``seconds``."""
    return BASE + timedelta(seconds=seconds)


def make_entry(**overrides: Any) -> ScheduledCommandEntry:
    """A valid PENDING entry due at ``BASE``; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "command_type": "tests.stores.SendEmail",
        "payload": '{"to": "someone@example.com"}',
        "status": PENDING,
        "scheduled_for": BASE,
        "created_at": BASE,
    }
    fields.update(overrides)
    return ScheduledCommandEntry.model_validate(fields)


def make_attempt(
    number: int = 1, *, outcome: str = "completed", finished: float = 1, **overrides: Any
) -> AttemptRecord:
    """An attempt by ``WORKER`` that started at ``BASE`` and finished ``finished`` seconds later."""
    fields: dict[str, Any] = {
        "attempt": number,
        "worker_id": WORKER,
        "started_at": BASE,
        "finished_at": at(finished),
        "outcome": outcome,
        "error": None if outcome == "completed" else "RuntimeError: boom\nTraceback ...",
    }
    fields.update(overrides)
    return AttemptRecord.model_validate(fields)


async def claim(
    store: ScheduledCommandStore, *, now: datetime = BASE, limit: int = 100, worker_id: str = WORKER
) -> list[ScheduledCommandEntry]:
    return await store.claim_due(now=now, limit=limit, worker_id=worker_id, lease_duration=LEASE)


async def add_and_claim(store: ScheduledCommandStore, **overrides: Any) -> ScheduledCommandEntry:
    """Add one entry and claim it at its due time; the claimed (PROCESSING) entry.

    Its priority is high unless overridden, so that it, not another PENDING entry of the test, is the one claimed.
    """
    entry = make_entry(**{"priority": 1000, **overrides})
    await store.add([entry])
    claimed = await claim(store, now=entry.scheduled_for, limit=1)
    assert [c.id for c in claimed] == [entry.id]
    return claimed[0]


async def claimed_ids(store: ScheduledCommandStore, *, now: datetime = BASE, limit: int = 100) -> list[str]:
    return [entry.id for entry in await claim(store, now=now, limit=limit)]


async def eventually(condition: Callable[[], bool], *, within: float = 2.0) -> None:
    """Wait until ``condition()`` holds (stores that notify through their backend may call listeners later)."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


#: Every lease-fenced method that ends a claim, called with an entry id and a token.
FencedCall = Callable[[ScheduledCommandStore, str, str], Awaitable[bool]]
FENCED_OUTCOMES: dict[str, FencedCall] = {
    "complete": lambda s, i, t: s.complete(i, t, result_payload='{"ok": true}', attempt=make_attempt()),
    "retry_later": lambda s, i, t: s.retry_later(
        i, t, due=at(100), error_message="RuntimeError: boom", attempt=make_attempt(outcome="failed")
    ),
    "dead_letter": lambda s, i, t: s.dead_letter(
        i, t, error_message="RuntimeError: boom", attempt=make_attempt(outcome="failed")
    ),
    "expire": lambda s, i, t: s.expire(i, t, now=at(1)),
    "release": lambda s, i, t: s.release(i, t),
}
fenced_outcome = pytest.mark.parametrize("outcome", list(FENCED_OUTCOMES.values()), ids=list(FENCED_OUTCOMES))

#: Transitions that put a PROCESSING entry into each terminal status.
TO_TERMINAL: dict[ScheduledCommandStatus, str] = {
    COMPLETED: "complete",
    FAILED: "dead_letter",
    EXPIRED: "expire",
}


async def entry_in_status(store: ScheduledCommandStore, status: ScheduledCommandStatus, **overrides: Any) -> str:
    """Add an entry due at ``BASE`` and bring it into ``status`` (terminal ones finish at ``BASE + 1s``)."""
    if status is PENDING:
        entry = make_entry(**overrides)
        await store.add([entry])
        return entry.id
    if status is CANCELLED:
        entry = make_entry(**overrides)
        await store.add([entry])
        assert await store.cancel(entry.id, now=at(1)) is not None
        return entry.id
    claimed = await add_and_claim(store, **overrides)
    if status is not PROCESSING:
        assert claimed.lease_token is not None
        assert await FENCED_OUTCOMES[TO_TERMINAL[status]](store, claimed.id, claimed.lease_token)
    return claimed.id


# -- lifecycle -------------------------------------------------------------------------------------------------


async def test_open_is_idempotent(store: ScheduledCommandStore) -> None:
    """Opening an already open store again is harmless and keeps it usable."""
    await store.open()
    await store.open()
    entry = make_entry()
    assert await store.add([entry]) == [entry.id]
    assert await store.get(entry.id) == entry


async def test_async_with_opens_and_closes(store_factory: StoreFactory, tmp_path: Path) -> None:
    """``async with store`` yields the store itself, opened, and it may be opened again after closing."""
    fresh = store_factory(tmp_path)
    async with fresh as opened:
        assert opened is fresh
        assert await opened.add([make_entry(id="a")]) == ["a"]
    async with fresh as reopened:
        assert reopened is fresh
        assert set(await reopened.count_by_status()) == set(ScheduledCommandStatus)


async def test_description_is_a_non_empty_string(store: ScheduledCommandStore) -> None:
    """``description`` names the store for logs."""
    assert isinstance(store.description, str)
    assert store.description


# -- add and get -----------------------------------------------------------------------------------------------


async def test_add_returns_ids_in_order_and_get_returns_the_entry(store: ScheduledCommandStore) -> None:
    """``add`` returns the ids in input order; ``get`` returns each entry field for field."""
    entries = [
        make_entry(
            priority=3,
            correlation_id="c-1",
            metadata={"user": "42"},
            expires_at=at(3600),
            max_retries=5,
            timeout_seconds=2.5,
        ),
        make_entry(scheduled_for=at(10), created_at=at(-5)),
    ]
    assert await store.add(entries) == [e.id for e in entries]
    for entry in entries:
        assert await store.get(entry.id) == entry


async def test_get_unknown_id_returns_none(store: ScheduledCommandStore) -> None:
    """``get`` of an id the store never held is ``None``."""
    assert await store.get(str(uuid.uuid4())) is None


async def test_add_empty_batch_returns_empty_list(store: ScheduledCommandStore) -> None:
    """Adding no entries stores nothing and returns no ids."""
    assert await store.add([]) == []
    assert sum((await store.count_by_status()).values()) == 0


async def test_add_with_existing_id_raises_and_stores_nothing(store: ScheduledCommandStore) -> None:
    """A batch containing an id the store already holds is rejected whole: nothing of it is stored."""
    existing = make_entry()
    await store.add([existing])
    fresh = make_entry(idempotency_key="k-fresh")
    later = make_entry()
    # The contract names no exception type for this; any error is accepted.
    with pytest.raises(Exception):  # noqa: B017
        await store.add([fresh, make_entry(id=existing.id, command_type="other"), later])
    assert await store.get(fresh.id) is None
    assert await store.get(later.id) is None
    assert await store.get(existing.id) == existing
    assert (await store.count_by_status())[PENDING] == 1
    retry = make_entry(idempotency_key="k-fresh")
    assert await store.add([retry]) == [retry.id], "the failed batch left its idempotency key behind"


async def test_add_with_duplicate_id_within_batch_raises_and_stores_nothing(store: ScheduledCommandStore) -> None:
    """A batch holding the same id twice is rejected whole: nothing of it is stored."""
    first = make_entry()
    other = make_entry()
    with pytest.raises(Exception):  # noqa: B017
        await store.add([first, other, make_entry(id=first.id, command_type="other")])
    assert await store.get(first.id) is None
    assert await store.get(other.id) is None
    assert sum((await store.count_by_status()).values()) == 0


# -- idempotency keys ------------------------------------------------------------------------------------------


async def test_add_with_held_idempotency_key_returns_holder_id(store: ScheduledCommandStore) -> None:
    """An entry whose idempotency key is held is not stored; the holder's id is returned in its place."""
    holder = make_entry(idempotency_key="welcome:42")
    await store.add([holder])
    duplicate = make_entry(idempotency_key="welcome:42", scheduled_for=at(50))
    plain = make_entry()
    assert await store.add([plain, duplicate]) == [plain.id, holder.id]
    assert await store.get(duplicate.id) is None
    assert await store.get(holder.id) == holder
    assert (await store.count_by_status())[PENDING] == 2


async def test_same_idempotency_key_twice_in_one_batch_stores_one(store: ScheduledCommandStore) -> None:
    """Two entries sharing a new key in one batch: the first is stored and both positions return its id."""
    first = make_entry(idempotency_key="k")
    second = make_entry(idempotency_key="k")
    assert await store.add([first, make_entry(id="between"), second]) == [first.id, "between", first.id]
    assert await store.get(second.id) is None
    assert (await store.count_by_status())[PENDING] == 2


@pytest.mark.parametrize("status", [PROCESSING, COMPLETED, FAILED, CANCELLED, EXPIRED])
async def test_idempotency_key_is_held_in_every_status(
    store: ScheduledCommandStore, status: ScheduledCommandStatus
) -> None:
    """The key stays held whatever the holder's status, including after it finished."""
    holder_id = await entry_in_status(store, status, idempotency_key="k")
    again = make_entry(idempotency_key="k")
    assert await store.add([again]) == [holder_id]
    assert await store.get(again.id) is None


async def test_idempotency_key_is_freed_by_purge(store: ScheduledCommandStore) -> None:
    """Once the holder is purged, the key schedules a new entry again."""
    holder_id = await entry_in_status(store, COMPLETED, idempotency_key="k")
    assert await store.purge(older_than=at(1000)) == 1
    again = make_entry(idempotency_key="k")
    assert await store.add([again]) == [again.id]
    assert again.id != holder_id
    assert await store.get(again.id) == again


# -- claim_due: ordering, due times, limits ------------------------------------------------------------------


async def test_claim_orders_by_priority_then_due_then_scheduling_order(store: ScheduledCommandStore) -> None:
    """Claims come in priority descending, then due time ascending, then scheduling order."""
    specs = [(0, 5), (5, 3), (5, 1), (1, 0), (5, 3), (0, 5), (-2, 0), (5, 1)]  # (priority, due offset)
    entries = [make_entry(priority=p, scheduled_for=at(d)) for p, d in specs]
    await store.add(entries[:3])
    await store.add(entries[3:5])
    for entry in entries[5:]:
        await store.add([entry])
    expected = [entries[i].id for i in sorted(range(len(specs)), key=lambda i: (-specs[i][0], specs[i][1], i))]
    assert await claimed_ids(store, now=at(10)) == expected


async def test_claim_among_equals_is_fifo_in_scheduling_order(store: ScheduledCommandStore) -> None:
    """Entries of equal priority and due time are claimed in the order they were scheduled."""
    entries = [make_entry() for _ in range(10)]
    await store.add(entries[:4])
    for entry in entries[4:]:
        await store.add([entry])
    claimed = [entry.id for _ in range(5) for entry in await claim(store, limit=2)]
    assert claimed == [e.id for e in entries]


async def test_claim_fifo_ignores_created_at_and_id(store: ScheduledCommandStore) -> None:
    """Scheduling order is the order of ``add``, not ``created_at`` nor the id's sort order."""
    entries = [make_entry(id=f"id-{9 - i}", created_at=at(-i)) for i in range(5)]
    await store.add(entries)
    assert await claimed_ids(store) == [e.id for e in entries]


async def test_future_high_priority_does_not_block_due_entries(store: ScheduledCommandStore) -> None:
    """A higher-priority entry that is not due yet does not hold back lower-priority due ones."""
    future = make_entry(priority=100, scheduled_for=at(60))
    due = [make_entry(priority=0, scheduled_for=at(0)), make_entry(priority=-5, scheduled_for=at(1))]
    await store.add([future, *due])
    assert await claimed_ids(store, now=at(30), limit=1) == [due[0].id]
    assert await claimed_ids(store, now=at(30), limit=1) == [due[1].id]
    assert await claimed_ids(store, now=at(30)) == []
    assert await claimed_ids(store, now=at(60)) == [future.id]


async def test_entries_not_yet_due_are_not_claimed(store: ScheduledCommandStore) -> None:
    """Only entries with ``scheduled_for <= now`` are claimed; the due time itself counts as due."""
    entry = make_entry(scheduled_for=at(10))
    await store.add([entry])
    assert await claim(store, now=at(9)) == []
    assert await claimed_ids(store, now=at(10)) == [entry.id]


async def test_claim_with_earlier_now_does_not_take_entries_due_later(store: ScheduledCommandStore) -> None:
    """Due is judged against each call's ``now``, even when it is earlier than a previous call's."""
    early = make_entry(scheduled_for=at(1))
    late = make_entry(scheduled_for=at(5))
    await store.add([early, late])
    assert await claimed_ids(store, now=at(10), limit=1) == [early.id]
    assert await claim(store, now=at(2)) == []
    assert await store.next_due_at() == at(5)
    assert await claimed_ids(store, now=at(5)) == [late.id]


async def test_claim_respects_limit(store: ScheduledCommandStore) -> None:
    """A claim returns at most ``limit`` entries; later claims take the rest."""
    entries = [make_entry() for _ in range(5)]
    await store.add(entries)
    assert len(await claim(store, limit=2)) == 2
    assert len(await claim(store, limit=2)) == 2
    assert len(await claim(store, limit=2)) == 1
    assert await claim(store, limit=2) == []


async def test_claimed_entries_are_processing_under_a_new_lease(store: ScheduledCommandStore) -> None:
    """A claimed entry is PROCESSING with the worker's lease, a token, the lease expiry and ``started_at = now``."""
    entries = [make_entry(), make_entry(scheduled_for=at(3))]
    await store.add(entries)
    now = at(7)
    claimed = await store.claim_due(now=now, limit=10, worker_id="w-7", lease_duration=timedelta(seconds=45))
    assert {c.id for c in claimed} == {e.id for e in entries}
    for entry in claimed:
        assert entry.status is PROCESSING
        assert entry.lease_owner == "w-7"
        assert entry.lease_token
        assert entry.lease_expires_at == now + timedelta(seconds=45)
        assert entry.started_at == now
        assert await store.get(entry.id) == entry
    assert claimed[0].lease_token != claimed[1].lease_token
    assert await claim(store, now=at(100)) == []


async def test_claim_does_not_change_other_fields(store: ScheduledCommandStore) -> None:
    """Claiming changes only status, lease fields and ``started_at``."""
    entry = make_entry(priority=2, correlation_id="c", metadata={"k": "v"}, idempotency_key="i", max_retries=7)
    await store.add([entry])
    (claimed,) = await claim(store)
    lease_fields = {"status", "lease_owner", "lease_token", "lease_expires_at", "started_at"}
    assert claimed.model_dump(exclude=lease_fields) == entry.model_dump(exclude=lease_fields)


TRACE_CONTEXT = '{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"k=v"}'


async def test_trace_context_is_kept_from_add_through_claim_and_retry(store: ScheduledCommandStore) -> None:
    """The trace context stored at scheduling comes back from ``get`` and ``claim_due``, after a single add and a
    bulk one (25 rows: PostgreSQL's COPY path), and after a retry; an entry without one has ``None``."""
    single = make_entry(trace_context=TRACE_CONTEXT, priority=1000)
    bulk = [make_entry(trace_context=TRACE_CONTEXT, scheduled_for=at(10)) for _ in range(25)]
    plain = make_entry(scheduled_for=at(20))
    await store.add([single])
    await store.add(bulk)
    await store.add([plain])
    for entry in (single, *bulk, plain):
        assert await store.get(entry.id) == entry
    (claimed,) = await claim(store)
    assert claimed.trace_context == TRACE_CONTEXT
    assert claimed.lease_token is not None
    attempt = make_attempt(outcome="failed", finished=2)
    assert await store.retry_later(claimed.id, claimed.lease_token, due=at(30), error_message="E: x", attempt=attempt)
    retried = await store.get(claimed.id)
    assert retried is not None and retried.trace_context == TRACE_CONTEXT
    reclaimed = {entry.id: entry.trace_context for entry in await claim(store, now=at(30))}
    assert reclaimed == {single.id: TRACE_CONTEXT} | {e.id: TRACE_CONTEXT for e in bulk} | {plain.id: None}


async def test_each_claim_gets_a_fresh_lease_token(store: ScheduledCommandStore) -> None:
    """Claiming an entry again after a release gives it a different token."""
    first = await add_and_claim(store)
    assert first.lease_token is not None
    assert await store.release(first.id, first.lease_token)
    (second,) = await claim(store)
    assert second.lease_token is not None
    assert second.lease_token != first.lease_token


async def test_expired_entries_are_claimed_like_any_other(store: ScheduledCommandStore) -> None:
    """An entry past its ``expires_at`` is still claimed: expiry is the caller's decision."""
    entry = make_entry(expires_at=at(1))
    await store.add([entry])
    assert await claimed_ids(store, now=at(100)) == [entry.id]


async def test_concurrent_claims_never_return_the_same_entry(store: ScheduledCommandStore) -> None:
    """20 concurrent claimers over 500 entries together take every entry exactly once."""
    entries = [make_entry(priority=i % 3, scheduled_for=at(i % 7)) for i in range(500)]
    await store.add(entries)

    async def claimer(worker: int) -> list[str]:
        taken: list[str] = []
        while batch := await claim(store, now=at(10), limit=7, worker_id=f"w-{worker}"):
            taken.extend(entry.id for entry in batch)
            await asyncio.sleep(0)
        return taken

    results = await asyncio.gather(*(claimer(n) for n in range(20)))
    every = [entry_id for taken in results for entry_id in taken]
    assert len(every) == len(set(every))
    assert set(every) == {e.id for e in entries}
    assert (await store.count_by_status())[PROCESSING] == 500


# -- fencing ---------------------------------------------------------------------------------------------------


@fenced_outcome
async def test_wrong_token_changes_nothing(store: ScheduledCommandStore, outcome: FencedCall) -> None:
    """Every fenced outcome with a token other than the lease's returns False and changes nothing."""
    claimed = await add_and_claim(store)
    assert not await outcome(store, claimed.id, "not-the-token")
    assert await store.get(claimed.id) == claimed
    assert await store.get_attempts(claimed.id) == []


@fenced_outcome
async def test_fenced_outcome_on_pending_entry_changes_nothing(
    store: ScheduledCommandStore, outcome: FencedCall
) -> None:
    """A PENDING entry has no lease, so no token ends it."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    assert await store.release(claimed.id, claimed.lease_token)
    before = await store.get(claimed.id)
    assert not await outcome(store, claimed.id, claimed.lease_token)
    assert await store.get(claimed.id) == before


@fenced_outcome
async def test_fenced_outcome_on_unknown_id_returns_false(store: ScheduledCommandStore, outcome: FencedCall) -> None:
    """A fenced outcome for an id the store does not hold returns False."""
    assert not await outcome(store, str(uuid.uuid4()), "token")


@fenced_outcome
async def test_token_works_only_once(store: ScheduledCommandStore, outcome: FencedCall) -> None:
    """After an outcome ends the claim, the same token no longer ends or extends anything."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    assert await outcome(store, claimed.id, claimed.lease_token)
    after = await store.get(claimed.id)
    for again in FENCED_OUTCOMES.values():
        assert not await again(store, claimed.id, claimed.lease_token)
    assert await store.renew_leases([(claimed.id, claimed.lease_token)], until=at(1000)) == set()
    assert await store.get(claimed.id) == after


@fenced_outcome
async def test_reclaimed_entry_fences_out_the_old_token(store: ScheduledCommandStore, outcome: FencedCall) -> None:
    """After ``reclaim_expired_leases`` the dead worker's token fails and the new worker's token succeeds."""
    old = await add_and_claim(store)
    assert old.lease_token is not None
    (reclaimed,) = await store.reclaim_expired_leases(now=at(61), limit=10, worker_id="worker-2", lease_duration=LEASE)
    new = reclaimed.entry
    assert new.lease_token is not None
    assert new.lease_token != old.lease_token
    assert not await outcome(store, old.id, old.lease_token)
    assert await store.get(old.id) == new
    assert await store.renew_leases([(old.id, old.lease_token)], until=at(500)) == set()
    assert await outcome(store, new.id, new.lease_token)


async def test_renew_leases_extends_only_leases_still_held(store: ScheduledCommandStore) -> None:
    """``renew_leases`` extends leases held under the given tokens and returns only those ids."""
    entries = [make_entry() for _ in range(4)]
    await store.add(entries)
    held, wrong, finished, released = await claim(store)
    assert finished.lease_token is not None
    assert released.lease_token is not None
    assert await FENCED_OUTCOMES["complete"](store, finished.id, finished.lease_token)
    assert await store.release(released.id, released.lease_token)
    assert held.lease_token is not None
    renewed = await store.renew_leases(
        [
            (held.id, held.lease_token),
            (wrong.id, "not-the-token"),
            (finished.id, finished.lease_token),
            (released.id, released.lease_token),
            (str(uuid.uuid4()), "token"),
        ],
        until=at(300),
    )
    assert renewed == {held.id}
    after = await store.get(held.id)
    assert after is not None
    assert after.lease_expires_at == at(300)
    assert after.lease_token == held.lease_token
    assert after.lease_owner == held.lease_owner
    assert after.status is PROCESSING
    assert await store.get(wrong.id) == wrong


async def test_renewed_lease_is_not_reclaimed_before_new_expiry(store: ScheduledCommandStore) -> None:
    """A renewed lease is not reclaimed at a time past its old expiry but before its new one."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    assert await store.renew_leases([(claimed.id, claimed.lease_token)], until=at(300)) == {claimed.id}
    assert await store.reclaim_expired_leases(now=at(200), limit=10, worker_id="w-2", lease_duration=LEASE) == []
    assert len(await store.reclaim_expired_leases(now=at(301), limit=10, worker_id="w-2", lease_duration=LEASE)) == 1


async def test_unexpired_lease_is_not_reclaimed(store: ScheduledCommandStore) -> None:
    """A lease that has not expired yet is left with its owner."""
    claimed = await add_and_claim(store)
    assert await store.reclaim_expired_leases(now=at(59), limit=10, worker_id="w-2", lease_duration=LEASE) == []
    assert await store.get(claimed.id) == claimed


async def test_reclaim_takes_over_with_new_lease_and_keeps_started_at(store: ScheduledCommandStore) -> None:
    """A reclaimed entry is PROCESSING under the new worker's lease, names the old owner and keeps ``started_at``."""
    old = await add_and_claim(store, scheduled_for=at(2))
    (reclaimed,) = await store.reclaim_expired_leases(
        now=at(100), limit=10, worker_id="worker-2", lease_duration=timedelta(seconds=30)
    )
    assert reclaimed.previous_owner == WORKER
    entry = reclaimed.entry
    assert entry.id == old.id
    assert entry.status is PROCESSING
    assert entry.lease_owner == "worker-2"
    assert entry.lease_expires_at == at(130)
    assert entry.started_at == old.started_at == at(2)
    assert entry.retry_count == old.retry_count
    assert await store.get(old.id) == entry
    assert await store.get_attempts(old.id) == []
    assert await store.reclaim_expired_leases(now=at(120), limit=10, worker_id="w-3", lease_duration=LEASE) == []


async def test_reclaim_respects_limit(store: ScheduledCommandStore) -> None:
    """``reclaim_expired_leases`` takes at most ``limit`` entries per call; later calls take the rest."""
    await store.add([make_entry() for _ in range(5)])
    await claim(store)
    taken: list[str] = []
    for expected in (2, 2, 1, 0):
        batch = await store.reclaim_expired_leases(now=at(100), limit=2, worker_id="w-2", lease_duration=LEASE)
        assert len(batch) == expected
        taken.extend(r.entry.id for r in batch)
    assert len(set(taken)) == 5


async def test_reclaim_ignores_entries_not_processing(store: ScheduledCommandStore) -> None:
    """Only PROCESSING entries are reclaimed, never PENDING or finished ones."""
    for status in (PENDING, COMPLETED, FAILED, CANCELLED, EXPIRED):
        await entry_in_status(store, status)
    assert await store.reclaim_expired_leases(now=at(10_000), limit=10, worker_id="w-2", lease_duration=LEASE) == []


# -- outcomes --------------------------------------------------------------------------------------------------


async def test_complete(store: ScheduledCommandStore) -> None:
    """complete: COMPLETED, ``completed_at = attempt.finished_at``, result stored, lease cleared, attempt recorded."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    attempt = make_attempt(finished=4)
    assert await store.complete(claimed.id, claimed.lease_token, result_payload='{"n": 1}', attempt=attempt)
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is COMPLETED
    assert entry.completed_at == at(4)
    assert entry.result_payload == '{"n": 1}'
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert entry.started_at == claimed.started_at
    assert entry.retry_count == 0
    assert await store.get_attempts(claimed.id) == [attempt]
    assert await claim(store, now=at(1000)) == []


async def test_complete_without_result(store: ScheduledCommandStore) -> None:
    """complete with ``result_payload=None`` leaves no result."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    assert await store.complete(claimed.id, claimed.lease_token, result_payload=None, attempt=make_attempt())
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is COMPLETED
    assert entry.result_payload is None


async def test_retry_later(store: ScheduledCommandStore) -> None:
    """retry_later: PENDING due at ``due``, ``retry_count + 1``, error stored, attempt recorded, lease cleared."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    attempt = make_attempt(outcome="failed", finished=2)
    assert await store.retry_later(
        claimed.id, claimed.lease_token, due=at(30), error_message="ValueError: bad", attempt=attempt
    )
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is PENDING
    assert entry.scheduled_for == at(30)
    assert entry.retry_count == 1
    assert entry.error_message == "ValueError: bad"
    assert entry.completed_at is None
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert await store.get_attempts(claimed.id) == [attempt]


async def test_retried_entry_is_claimable_again_only_once_due(store: ScheduledCommandStore) -> None:
    """After retry_later the entry is not claimed before ``due`` and is claimed from then on."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    await store.retry_later(
        claimed.id, claimed.lease_token, due=at(30), error_message="E: x", attempt=make_attempt(outcome="failed")
    )
    assert await claim(store, now=at(29)) == []
    (again,) = await claim(store, now=at(30))
    assert again.id == claimed.id
    assert again.retry_count == 1
    assert again.started_at == at(30)


async def test_dead_letter(store: ScheduledCommandStore) -> None:
    """dead_letter: FAILED, ``retry_count + 1``, ``completed_at = attempt.finished_at``, error and attempt kept."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    attempt = make_attempt(outcome="timed_out", finished=9)
    assert await store.dead_letter(claimed.id, claimed.lease_token, error_message="TimeoutError: ", attempt=attempt)
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is FAILED
    assert entry.retry_count == 1
    assert entry.completed_at == at(9)
    assert entry.error_message == "TimeoutError: "
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert await store.get_attempts(claimed.id) == [attempt]
    assert await claim(store, now=at(1000)) == []


async def test_expire(store: ScheduledCommandStore) -> None:
    """expire: EXPIRED with ``completed_at = now`` and no attempt recorded."""
    claimed = await add_and_claim(store, expires_at=at(1))
    assert claimed.lease_token is not None
    assert await store.expire(claimed.id, claimed.lease_token, now=at(5))
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is EXPIRED
    assert entry.completed_at == at(5)
    assert entry.retry_count == 0
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert await store.get_attempts(claimed.id) == []
    assert await claim(store, now=at(1000)) == []


async def test_release(store: ScheduledCommandStore) -> None:
    """release: PENDING, due time and ``retry_count`` unchanged, no attempt, claimable again."""
    claimed = await add_and_claim(store, scheduled_for=at(3), retry_count=2)
    assert claimed.lease_token is not None
    assert await store.release(claimed.id, claimed.lease_token)
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is PENDING
    assert entry.scheduled_for == at(3)
    assert entry.retry_count == 2
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert await store.get_attempts(claimed.id) == []
    assert await claimed_ids(store, now=at(3)) == [claimed.id]


async def test_released_entry_keeps_its_place_in_line(store: ScheduledCommandStore) -> None:
    """A released entry is claimed again in its original order among equals."""
    entries = [make_entry() for _ in range(3)]
    await store.add(entries)
    (first,) = await claim(store, limit=1)
    assert first.lease_token is not None
    assert await store.release(first.id, first.lease_token)
    assert await claimed_ids(store) == [e.id for e in entries]


# -- cancel and requeue ----------------------------------------------------------------------------------------


async def test_cancel_pending(store: ScheduledCommandStore) -> None:
    """cancel: PENDING -> CANCELLED with ``completed_at = now``; returns the cancelled entry; no longer claimable."""
    entry = make_entry(scheduled_for=at(5))
    await store.add([entry])
    cancelled = await store.cancel(entry.id, now=at(2))
    assert cancelled is not None
    assert cancelled.id == entry.id
    assert cancelled.status is CANCELLED
    assert cancelled.completed_at == at(2)
    assert await store.get(entry.id) == cancelled
    assert await claim(store, now=at(100)) == []


@pytest.mark.parametrize("status", [PROCESSING, COMPLETED, FAILED, CANCELLED, EXPIRED])
async def test_cancel_not_pending_returns_none(store: ScheduledCommandStore, status: ScheduledCommandStatus) -> None:
    """cancel of an entry that is not PENDING returns None and changes nothing."""
    entry_id = await entry_in_status(store, status)
    before = await store.get(entry_id)
    assert await store.cancel(entry_id, now=at(50)) is None
    assert await store.get(entry_id) == before


async def test_cancel_unknown_returns_none(store: ScheduledCommandStore) -> None:
    """cancel of an unknown id returns None."""
    assert await store.cancel(str(uuid.uuid4()), now=BASE) is None


async def test_cancelled_entry_waiting_in_line_is_not_claimed(store: ScheduledCommandStore) -> None:
    """An entry cancelled after a claim saw it due (but took another) is never claimed."""
    first, second = make_entry(priority=1), make_entry()
    await store.add([first, second])
    assert await claimed_ids(store, limit=1) == [first.id]
    assert await store.cancel(second.id, now=BASE) is not None
    assert await claim(store) == []


async def test_cancel_by_correlation_id(store: ScheduledCommandStore) -> None:
    """cancel_by_correlation_id cancels only the PENDING entries of that correlation id and returns them."""
    pending = [make_entry(correlation_id="c-1"), make_entry(correlation_id="c-1", scheduled_for=at(60))]
    await store.add(pending)
    processing_id = await entry_in_status(store, PROCESSING, correlation_id="c-1", scheduled_for=at(-10))
    completed_id = await entry_in_status(store, COMPLETED, correlation_id="c-1", scheduled_for=at(-10))
    other = make_entry(correlation_id="c-2")
    uncorrelated = make_entry()
    await store.add([other, uncorrelated])
    processing_before = await store.get(processing_id)
    completed_before = await store.get(completed_id)

    cancelled = await store.cancel_by_correlation_id("c-1", now=at(3))

    assert sorted(e.id for e in cancelled) == sorted(e.id for e in pending)
    for entry in cancelled:
        assert entry.status is CANCELLED
        assert entry.completed_at == at(3)
        assert await store.get(entry.id) == entry
    assert await store.get(processing_id) == processing_before
    assert await store.get(completed_id) == completed_before
    assert await store.get(other.id) == other
    assert await store.get(uncorrelated.id) == uncorrelated
    assert await store.cancel_by_correlation_id("c-1", now=at(4)) == []
    assert await store.cancel_by_correlation_id("unknown", now=at(4)) == []


async def test_requeue_failed(store: ScheduledCommandStore) -> None:
    """requeue: FAILED -> PENDING due ``now`` with ``retry_count`` 0, error kept; claimable at ``now``."""
    claimed = await add_and_claim(store, retry_count=3)
    assert claimed.lease_token is not None
    await store.dead_letter(
        claimed.id, claimed.lease_token, error_message="E: x", attempt=make_attempt(outcome="failed")
    )
    assert await store.requeue(claimed.id, now=at(500))
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is PENDING
    assert entry.scheduled_for == at(500)
    assert entry.retry_count == 0
    assert entry.error_message == "E: x"
    assert len(await store.get_attempts(claimed.id)) == 1
    assert await claim(store, now=at(499)) == []
    assert await claimed_ids(store, now=at(500)) == [claimed.id]


@pytest.mark.parametrize("status", [PENDING, PROCESSING, COMPLETED, CANCELLED, EXPIRED])
async def test_requeue_not_failed_returns_false(store: ScheduledCommandStore, status: ScheduledCommandStatus) -> None:
    """requeue of an entry that is not FAILED returns False and changes nothing."""
    entry_id = await entry_in_status(store, status)
    before = await store.get(entry_id)
    assert not await store.requeue(entry_id, now=at(50))
    assert await store.get(entry_id) == before


async def test_requeue_unknown_returns_false(store: ScheduledCommandStore) -> None:
    """requeue of an unknown id returns False."""
    assert not await store.requeue(str(uuid.uuid4()), now=BASE)


# -- dismiss (a dead letter) -----------------------------------------------------------------------------------


async def dead_lettered(store: ScheduledCommandStore, **overrides: Any) -> ScheduledCommandEntry:
    """An entry dead-lettered after two failed attempts (the second at ``BASE + 20s``); the FAILED entry."""
    entry = make_entry(max_retries=1, **overrides)
    await store.add([entry])
    for number in (1, 2):
        (claimed,) = await claim(store, now=at(10 * (number - 1)))
        assert claimed.lease_token is not None
        attempt = make_attempt(number, outcome="failed", finished=10 * number)
        if number == 1:
            assert await store.retry_later(
                entry.id, claimed.lease_token, due=at(10), error_message="E: first", attempt=attempt
            )
        else:
            assert await store.dead_letter(entry.id, claimed.lease_token, error_message="E: second", attempt=attempt)
    failed = await store.get(entry.id)
    assert failed is not None and failed.status is FAILED
    return failed


async def test_dismiss_failed_keeps_its_error_and_attempts(store: ScheduledCommandStore) -> None:
    """dismiss: FAILED -> CANCELLED with ``completed_at = now``; the error, counts and attempts are kept; it leaves
    the FAILED entries and is never claimed."""
    failed = await dead_lettered(store)
    attempts = await store.get_attempts(failed.id)
    assert [a.attempt for a in attempts] == [1, 2]

    dismissed = await store.dismiss(failed.id, now=at(500))

    assert dismissed is not None
    assert dismissed == failed.model_copy(update={"status": CANCELLED, "completed_at": at(500)})
    assert (dismissed.error_message, dismissed.retry_count, dismissed.attempt_count) == ("E: second", 2, 2)
    assert await store.get(failed.id) == dismissed
    assert await store.get_attempts(failed.id) == attempts
    assert await store.list_entries(status=FAILED) == []
    assert await store.list_entries(status=CANCELLED) == [dismissed]
    counts = await store.count_by_status()
    assert (counts[FAILED], counts[CANCELLED]) == (0, 1)
    assert await store.count_by_command_type(FAILED) == {}
    assert await store.next_due_at() is None
    assert await claim(store, now=at(10_000)) == []


@pytest.mark.parametrize("status", [PENDING, PROCESSING, COMPLETED, CANCELLED, EXPIRED])
async def test_dismiss_not_failed_returns_none(store: ScheduledCommandStore, status: ScheduledCommandStatus) -> None:
    """dismiss of an entry that is not FAILED returns None and changes nothing (a PENDING one stays claimable)."""
    entry_id = await entry_in_status(store, status)
    before = await store.get(entry_id)
    assert await store.dismiss(entry_id, now=at(50)) is None
    assert await store.get(entry_id) == before
    if status is PENDING:
        assert await claimed_ids(store) == [entry_id]


async def test_dismiss_unknown_returns_none(store: ScheduledCommandStore) -> None:
    """dismiss of an unknown id returns None and adds nothing."""
    assert await store.dismiss(str(uuid.uuid4()), now=BASE) is None
    assert sum((await store.count_by_status()).values()) == 0


async def test_dismissed_entry_cannot_be_requeued_or_dismissed_again(store: ScheduledCommandStore) -> None:
    """A dismissed entry is CANCELLED for good: requeue and a second dismiss refuse it; a requeued one cannot be
    dismissed until it fails again."""
    failed = await dead_lettered(store)
    dismissed = await store.dismiss(failed.id, now=at(100))
    assert dismissed is not None
    assert not await store.requeue(failed.id, now=at(200))
    assert await store.dismiss(failed.id, now=at(200)) is None
    assert await store.get(failed.id) == dismissed

    other = await dead_lettered(store)
    assert await store.requeue(other.id, now=at(300))
    assert await store.dismiss(other.id, now=at(300)) is None
    requeued = await store.get(other.id)
    assert requeued is not None and requeued.status is PENDING
    assert await claimed_ids(store, now=at(300)) == [other.id]


async def test_dismissed_entry_is_purged_like_any_cancelled_one(store: ScheduledCommandStore) -> None:
    """A dismissed entry is purgeable by its dismissal time (``completed_at``), not by when it failed."""
    failed = await dead_lettered(store)
    assert await store.dismiss(failed.id, now=at(1000)) is not None
    assert await store.count_purgeable(older_than=at(999)) == 0
    assert await store.purge(older_than=at(999), statuses=[FAILED, CANCELLED]) == 0
    assert await store.count_purgeable(older_than=at(1001), statuses=[CANCELLED]) == 1
    assert await store.purge(older_than=at(1001), statuses=[FAILED]) == 0
    assert await store.purge(older_than=at(1001), statuses=[CANCELLED]) == 1
    assert await store.get(failed.id) is None
    assert await store.get_attempts(failed.id) == []


async def test_concurrent_requeue_and_dismiss_have_exactly_one_winner(store: ScheduledCommandStore) -> None:
    """Requeue and dismiss racing on one dead letter (several of each, at once): exactly one changes it, and the
    entry ends in the winner's status."""
    for round_ in range(3):
        failed = await dead_lettered(store)
        calls = [store.requeue(failed.id, now=at(100)) for _ in range(3)]
        calls += [store.dismiss(failed.id, now=at(100)) for _ in range(3)]
        if round_ % 2:
            calls.reverse()
        results = await asyncio.gather(*calls)
        requeued = [r for r in results if r is True]
        dismissed = [r for r in results if isinstance(r, ScheduledCommandEntry)]
        assert len(requeued) + len(dismissed) == 1, results
        entry = await store.get(failed.id)
        assert entry is not None
        assert entry.status is (PENDING if requeued else CANCELLED)
        if dismissed:
            assert dismissed[0] == entry
        if entry.status is PENDING:  # out of the way of the next round's claims
            assert await store.cancel(entry.id, now=at(100)) is not None


# -- attempts, counts, listing ---------------------------------------------------------------------------------


async def test_get_attempts_oldest_first(store: ScheduledCommandStore) -> None:
    """Every attempt is recorded and ``get_attempts`` returns them oldest first."""
    entry = make_entry()
    await store.add([entry])
    recorded = []
    for number in (1, 2):
        (claimed,) = await claim(store, now=at(100 * number))
        assert claimed.lease_token is not None
        attempt = make_attempt(number, outcome="failed", started_at=at(100 * number), finished=100 * number + 1)
        await store.retry_later(
            claimed.id, claimed.lease_token, due=at(100 * number + 50), error_message="E: x", attempt=attempt
        )
        recorded.append(attempt)
    (claimed,) = await claim(store, now=at(300))
    assert claimed.lease_token is not None
    last = make_attempt(3, outcome="lost", started_at=at(300), finished=301, worker_id="worker-9")
    await store.dead_letter(claimed.id, claimed.lease_token, error_message="E: y", attempt=last)
    recorded.append(last)
    assert await store.get_attempts(entry.id) == recorded


async def test_get_attempts_unknown_or_unattempted_is_empty(store: ScheduledCommandStore) -> None:
    """``get_attempts`` is an empty list for an unknown id and for an entry never attempted."""
    entry = make_entry()
    await store.add([entry])
    assert await store.get_attempts(entry.id) == []
    assert await store.get_attempts(str(uuid.uuid4())) == []


async def test_count_by_status_of_empty_store(store: ScheduledCommandStore) -> None:
    """An empty store counts zero in every status, each status present."""
    assert await store.count_by_status() == dict.fromkeys(ScheduledCommandStatus, 0)


async def test_count_by_status_follows_transitions(store: ScheduledCommandStore) -> None:
    """``count_by_status`` reflects every transition, with zeros for empty statuses."""
    for status, n in ((PENDING, 3), (PROCESSING, 2), (COMPLETED, 1), (FAILED, 2), (CANCELLED, 1)):
        for _ in range(n):
            await entry_in_status(store, status)
    assert await store.count_by_status() == {
        PENDING: 3,
        PROCESSING: 2,
        COMPLETED: 1,
        FAILED: 2,
        CANCELLED: 1,
        EXPIRED: 0,
        ScheduledCommandStatus.WAITING: 0,
    }


async def test_list_entries_filters(store: ScheduledCommandStore) -> None:
    """``list_entries`` returns the entries matching every filter given, in scheduling order."""
    a = make_entry(command_type="A", correlation_id="c-1")
    b = make_entry(command_type="B", correlation_id="c-1")
    c = make_entry(command_type="A", correlation_id="c-2")
    d = make_entry(command_type="A")
    await store.add([a, b, c, d])
    assert await store.cancel(c.id, now=at(1)) is not None

    async def ids(**filters: Any) -> list[str]:
        return [entry.id for entry in await store.list_entries(**filters)]

    assert await ids() == [a.id, b.id, c.id, d.id]
    assert await ids(status=PENDING) == [a.id, b.id, d.id]
    assert await ids(status=CANCELLED) == [c.id]
    assert await ids(status=FAILED) == []
    assert await ids(command_type="A") == [a.id, c.id, d.id]
    assert await ids(correlation_id="c-1") == [a.id, b.id]
    assert await ids(correlation_id="c-1", command_type="A") == [a.id]
    assert await ids(command_type="A", status=PENDING) == [a.id, d.id]
    assert await ids(correlation_id="c-2", status=PENDING) == []
    assert await ids(correlation_id="unknown") == []
    assert await store.list_entries(status=CANCELLED) == [await store.get(c.id)]


async def test_list_entries_accepts_an_unreadable_row_handler(store: ScheduledCommandStore) -> None:
    """Every store takes ``on_unreadable``; rows that convert are listed and never handed to it (rows that do not,
    possible only in a SQL store, are covered by tests/reliability/test_hostile_store_rows.py)."""
    entries = [make_entry() for _ in range(3)]
    await store.add(entries)
    unreadable: list[object] = []
    listed = await store.list_entries(on_unreadable=unreadable.append)
    assert [e.id for e in listed] == [e.id for e in entries]
    assert unreadable == []


async def test_list_entries_pages_are_complete_and_disjoint(store: ScheduledCommandStore) -> None:
    """Pages of ``limit``/``offset`` over 25 entries cover them all once, in scheduling order."""
    entries = [make_entry(priority=i % 4, scheduled_for=at(25 - i)) for i in range(25)]
    for start in range(0, 25, 5):
        await store.add(entries[start : start + 5])
    pages = [await store.list_entries(limit=10, offset=offset) for offset in (0, 10, 20, 30)]
    assert [len(page) for page in pages] == [10, 10, 5, 0]
    assert [e.id for page in pages for e in page] == [e.id for e in entries]
    assert [e.id for e in await store.list_entries(limit=50)] == [e.id for e in entries]
    assert len(await store.list_entries()) == 25


async def test_list_entries_newest_first(store: ScheduledCommandStore) -> None:
    """``newest_first`` lists in reverse scheduling order, paging included."""
    entries = [make_entry(command_type="A" if i % 2 else "B") for i in range(12)]
    for entry in entries:
        await store.add([entry])
    newest = [e.id for e in reversed(entries)]
    assert [e.id for e in await store.list_entries(newest_first=True)] == newest
    pages = [await store.list_entries(newest_first=True, limit=5, offset=o) for o in (0, 5, 10)]
    assert [e.id for page in pages for e in page] == newest
    only_a = [e.id for e in reversed(entries) if e.command_type == "A"]
    assert [e.id for e in await store.list_entries(command_type="A", newest_first=True)] == only_a


# -- next_due_at -----------------------------------------------------------------------------------------------


async def test_next_due_at_is_none_without_pending_entries(store: ScheduledCommandStore) -> None:
    """``next_due_at`` is None for an empty store and for a store holding only non-PENDING entries."""
    assert await store.next_due_at() is None
    for status in (PROCESSING, COMPLETED, FAILED, CANCELLED, EXPIRED):
        await entry_in_status(store, status)
    assert await store.next_due_at() is None


async def test_next_due_at_is_earliest_pending(store: ScheduledCommandStore) -> None:
    """``next_due_at`` is the earliest ``scheduled_for`` among PENDING entries, whatever their priority."""
    await store.add([make_entry(scheduled_for=at(40)), make_entry(scheduled_for=at(20), priority=-3)])
    await store.add([make_entry(scheduled_for=at(30), priority=9)])
    assert await store.next_due_at() == at(20)


async def test_next_due_at_ignores_claimed_and_finished(store: ScheduledCommandStore) -> None:
    """Claimed and finished entries no longer count for ``next_due_at``."""
    a, b, c = (
        make_entry(scheduled_for=at(1)),
        make_entry(scheduled_for=at(2), priority=5),
        make_entry(scheduled_for=at(3)),
    )
    await store.add([a, b, c])
    assert await claimed_ids(store, now=at(10), limit=1) == [b.id]
    assert await store.next_due_at() == at(1)
    assert await claimed_ids(store, now=at(10), limit=1) == [a.id]
    assert await store.next_due_at() == at(3)
    assert await claimed_ids(store, now=at(10)) == [c.id]
    assert await store.next_due_at() is None


async def test_next_due_at_reflects_cancel(store: ScheduledCommandStore) -> None:
    """Cancelling the earliest entry moves ``next_due_at`` to the next one."""
    early, late = make_entry(scheduled_for=at(5)), make_entry(scheduled_for=at(9))
    await store.add([early, late])
    await store.cancel(early.id, now=BASE)
    assert await store.next_due_at() == at(9)
    await store.cancel(late.id, now=BASE)
    assert await store.next_due_at() is None


async def test_next_due_at_reflects_retry_later(store: ScheduledCommandStore) -> None:
    """A retried entry counts for ``next_due_at`` at its new due time."""
    other = make_entry(scheduled_for=at(50))
    await store.add([other])
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    assert await store.next_due_at() == at(50)
    await store.retry_later(
        claimed.id, claimed.lease_token, due=at(20), error_message="E: x", attempt=make_attempt(outcome="failed")
    )
    assert await store.next_due_at() == at(20)


async def test_next_due_at_reflects_release_and_requeue(store: ScheduledCommandStore) -> None:
    """Released and requeued entries count for ``next_due_at`` again."""
    released = await add_and_claim(store, scheduled_for=at(4))
    assert released.lease_token is not None
    assert await store.next_due_at() is None
    assert await store.release(released.id, released.lease_token)
    assert await store.next_due_at() == at(4)
    failed_id = await entry_in_status(store, FAILED, scheduled_for=at(-100))
    assert await store.requeue(failed_id, now=at(2))
    assert await store.next_due_at() == at(2)


# -- purge -----------------------------------------------------------------------------------------------------


async def test_purge_deletes_only_terminal_entries_finished_before(store: ScheduledCommandStore) -> None:
    """purge deletes terminal entries finished before ``older_than`` (and their attempts) and returns the count."""
    old = [await entry_in_status(store, status) for status in (COMPLETED, FAILED, CANCELLED, EXPIRED)]
    pending_id = await entry_in_status(store, PENDING, scheduled_for=at(-1000))
    processing_id = await entry_in_status(store, PROCESSING, scheduled_for=at(-1000))
    recent = await add_and_claim(store, scheduled_for=at(1))
    assert recent.lease_token is not None
    await store.complete(recent.id, recent.lease_token, result_payload=None, attempt=make_attempt(finished=50))

    assert await store.purge(older_than=at(10)) == 4

    for entry_id in old:
        assert await store.get(entry_id) is None
        assert await store.get_attempts(entry_id) == []
    assert await store.get(pending_id) is not None
    assert await store.get(processing_id) is not None
    assert await store.get(recent.id) is not None
    assert len(await store.get_attempts(recent.id)) == 1
    assert await store.count_by_status() == {
        PENDING: 1,
        PROCESSING: 1,
        COMPLETED: 1,
        FAILED: 0,
        CANCELLED: 0,
        EXPIRED: 0,
        ScheduledCommandStatus.WAITING: 0,
    }
    assert await store.purge(older_than=at(10)) == 0


async def test_purge_is_strictly_before_older_than(store: ScheduledCommandStore) -> None:
    """An entry finished exactly at ``older_than`` is kept."""
    entry_id = await entry_in_status(store, CANCELLED)  # completed_at = BASE + 1s
    assert await store.purge(older_than=at(1)) == 0
    assert await store.get(entry_id) is not None
    assert await store.purge(older_than=at(2)) == 1


async def test_purge_only_given_statuses(store: ScheduledCommandStore) -> None:
    """purge deletes only the statuses asked for."""
    ids = {status: await entry_in_status(store, status) for status in TERMINAL_STATUSES}
    assert await store.purge(older_than=at(100), statuses=[CANCELLED, EXPIRED]) == 2
    for status, entry_id in ids.items():
        assert (await store.get(entry_id) is None) == (status in {CANCELLED, EXPIRED})


async def test_purge_never_deletes_pending_or_processing(store: ScheduledCommandStore) -> None:
    """PENDING and PROCESSING entries survive purge even when their statuses are asked for."""
    pending_id = await entry_in_status(store, PENDING, scheduled_for=at(-1000), created_at=at(-1000))
    processing_id = await entry_in_status(store, PROCESSING, scheduled_for=at(-1000), created_at=at(-1000))
    completed_id = await entry_in_status(store, COMPLETED)
    purged = await store.purge(older_than=at(10_000), statuses=list(ScheduledCommandStatus))
    assert purged == 1
    assert await store.get(pending_id) is not None
    assert await store.get(processing_id) is not None
    assert await store.get(completed_id) is None


async def test_purged_id_can_be_scheduled_afresh(store: ScheduledCommandStore) -> None:
    """An id freed by purge can be added again and behaves as a new entry (due at its new time)."""
    first = make_entry(scheduled_for=at(100))
    await store.add([first])
    await store.cancel(first.id, now=at(1))
    assert await store.purge(older_than=at(10)) == 1
    again = make_entry(id=first.id, scheduled_for=at(200))
    assert await store.add([again]) == [first.id]
    assert await claim(store, now=at(150)) == []
    assert await store.next_due_at() == at(200)
    assert await claimed_ids(store, now=at(200)) == [first.id]


# -- wake-ups --------------------------------------------------------------------------------------------------


async def test_wakeup_on_add_with_earliest_due(store: ScheduledCommandStore) -> None:
    """Adding entries calls each listener with the earliest due time added."""
    calls: list[datetime] = []
    other: list[datetime] = []
    store.add_wakeup_listener(calls.append)
    store.add_wakeup_listener(other.append)
    await store.add(
        [make_entry(scheduled_for=at(30)), make_entry(scheduled_for=at(10)), make_entry(scheduled_for=at(20))]
    )
    await eventually(lambda: bool(calls) and bool(other))
    assert set(calls) == {at(10)}
    assert set(other) == {at(10)}


async def test_wakeup_on_requeue(store: ScheduledCommandStore) -> None:
    """requeue calls listeners with its ``now``, the new due time."""
    failed_id = await entry_in_status(store, FAILED)
    calls: list[datetime] = []
    store.add_wakeup_listener(calls.append)
    assert await store.requeue(failed_id, now=at(77))
    await eventually(lambda: bool(calls))
    assert set(calls) == {at(77)}


async def test_wakeup_on_release(store: ScheduledCommandStore) -> None:
    """release calls listeners with the entry's (unchanged) due time."""
    claimed = await add_and_claim(store, scheduled_for=at(8))
    assert claimed.lease_token is not None
    calls: list[datetime] = []
    store.add_wakeup_listener(calls.append)
    assert await store.release(claimed.id, claimed.lease_token)
    await eventually(lambda: bool(calls))
    assert set(calls) == {at(8)}


async def test_removed_wakeup_listener_is_not_called(store: ScheduledCommandStore) -> None:
    """After ``remove_wakeup_listener`` the listener is not called again; removing twice is harmless."""
    removed: list[datetime] = []
    kept: list[datetime] = []
    store.add_wakeup_listener(removed.append)
    store.add_wakeup_listener(kept.append)
    store.remove_wakeup_listener(removed.append)
    store.remove_wakeup_listener(removed.append)
    await store.add([make_entry(scheduled_for=at(5))])
    await eventually(lambda: bool(kept))
    await asyncio.sleep(0)
    assert removed == []
    assert set(kept) == {at(5)}


# -- property: claim order -------------------------------------------------------------------------------------

_batches = st.lists(
    st.lists(st.tuples(st.integers(-2, 2), st.integers(0, 6)), min_size=1, max_size=6),  # (priority, due offset)
    min_size=1,
    max_size=5,
)
_claims = st.lists(st.tuples(st.integers(0, 8), st.integers(1, 5)), min_size=1, max_size=8)  # (now offset, limit)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=_batches, claims=_claims)
async def test_claim_order_property(
    store_factory: StoreFactory,
    tmp_path: Path,
    batches: list[list[tuple[int, int]]],
    claims: list[tuple[int, int]],
) -> None:
    """Any claim sequence, ``now`` going back and forth, takes the due entries by (-priority, due, scheduling order)."""
    directory = tmp_path / uuid.uuid4().hex  # a fresh directory per example (the fixture is shared by examples)
    directory.mkdir()
    async with store_factory(directory) as store:
        specs: list[tuple[int, int, str]] = []  # (priority, due offset, id), in scheduling order
        for batch in batches:
            entries = [make_entry(priority=p, scheduled_for=at(d)) for p, d in batch]
            await store.add(entries)
            specs.extend((p, d, e.id) for (p, d), e in zip(batch, entries, strict=True))
        remaining = sorted(range(len(specs)), key=lambda i: (-specs[i][0], specs[i][1], i))
        for now_offset, limit in claims:
            expected = [i for i in remaining if specs[i][1] <= now_offset][:limit]
            assert await claimed_ids(store, now=at(now_offset), limit=limit) == [specs[i][2] for i in expected]
            remaining = [i for i in remaining if i not in expected]
            assert await store.next_due_at() == (at(min(specs[i][1] for i in remaining)) if remaining else None)
        assert await claimed_ids(store, now=at(100), limit=len(specs)) == [specs[i][2] for i in remaining]


# -- operator queries ------------------------------------------------------------------------------------------


async def test_purge_with_a_limit_deletes_in_steps(store: ScheduledCommandStore) -> None:
    """purge(limit=n) deletes at most n; repeated calls finish the job (how progress is shown)."""
    ids = [await entry_in_status(store, COMPLETED) for _ in range(5)]
    assert await store.purge(older_than=at(10), limit=2) == 2
    assert await store.purge(older_than=at(10), limit=2) == 2
    assert await store.purge(older_than=at(10), limit=2) == 1
    assert await store.purge(older_than=at(10), limit=2) == 0
    assert all([await store.get(i) is None for i in ids])


async def test_count_purgeable_matches_what_purge_deletes(store: ScheduledCommandStore) -> None:
    """count_purgeable counts exactly what purge with the same arguments deletes (a dry run)."""
    for status in (COMPLETED, COMPLETED, FAILED, CANCELLED, EXPIRED, PENDING, PROCESSING):
        await entry_in_status(store, status)
    assert await store.count_purgeable(older_than=at(10)) == 5
    assert await store.count_purgeable(older_than=at(10), statuses=[COMPLETED, PENDING]) == 2
    assert await store.count_purgeable(older_than=at(1)) == 0
    assert await store.purge(older_than=at(10), statuses=[COMPLETED, PENDING]) == 2


async def test_count_by_command_type_counts_one_status(store: ScheduledCommandStore) -> None:
    """count_by_command_type gives the number of entries per type in one status (the dead-letter report)."""
    for command_type in ("a.Send", "a.Send", "b.Charge"):
        await entry_in_status(store, FAILED, command_type=command_type)
    await entry_in_status(store, COMPLETED, command_type="a.Send")
    assert await store.count_by_command_type(FAILED) == {"a.Send": 2, "b.Charge": 1}
    assert await store.count_by_command_type(CANCELLED) == {}


@pytest.mark.parametrize("answer", ["store", "base default"])
async def test_ids_starting_with_finds_entries_by_the_start_of_their_id(
    store: ScheduledCommandStore, answer: str
) -> None:
    """ids_starting_with: ids with that prefix in any status, in id order, at most ``limit``; LIKE wildcards in the
    prefix match only themselves. The base class's default (built on list_entries) gives the same answers."""
    ids = ["ab12-0001", "ab12-0002", "ab13-0001", "a_b%-0001", "zz99-0001"]
    await store.add([make_entry(id=entry_id) for entry_id in ids])
    await entry_in_status(store, FAILED, id="ab12-0003")
    lookup = store.ids_starting_with if answer == "store" else ScheduledCommandStore.ids_starting_with.__get__(store)
    assert await lookup("ab12") == ["ab12-0001", "ab12-0002", "ab12-0003"]
    assert await lookup("ab12", limit=2) == ["ab12-0001", "ab12-0002"]
    assert await lookup("ab1") == ["ab12-0001", "ab12-0002", "ab12-0003", "ab13-0001"]
    assert await lookup("ab13-0001") == ["ab13-0001"]
    assert await lookup("a_b%") == ["a_b%-0001"]
    assert await lookup("a_") == ["a_b%-0001"]
    assert await lookup("a%") == []
    assert await lookup("AB12") == []
    assert await lookup("nothing") == []


async def test_requeue_failed_requeues_every_dead_letter_or_one_type(store: ScheduledCommandStore) -> None:
    """requeue_failed moves FAILED entries (of one type when asked) back to PENDING, due now, and returns their ids."""
    send = [await entry_in_status(store, FAILED, command_type="a.Send") for _ in range(2)]
    charge = await entry_in_status(store, FAILED, command_type="b.Charge")
    done = await entry_in_status(store, COMPLETED, command_type="a.Send")
    assert sorted(await store.requeue_failed(now=at(50), command_type="a.Send")) == sorted(send)
    for entry_id in send:
        entry = await store.get(entry_id)
        assert entry is not None
        assert (entry.status, entry.scheduled_for, entry.retry_count) == (PENDING, at(50), 0)
    assert (await store.get(done)).status is COMPLETED  # type: ignore[union-attr]
    assert await store.requeue_failed(now=at(60)) == [charge]
    assert await store.requeue_failed(now=at(70)) == []


async def finish_at(store: ScheduledCommandStore, status: ScheduledCommandStatus, seconds: float) -> str:
    """An entry that reached terminal ``status`` with ``completed_at = at(seconds)``."""
    if status is CANCELLED:
        entry = make_entry(scheduled_for=at(seconds + 1))
        await store.add([entry])
        assert await store.cancel(entry.id, now=at(seconds)) is not None
        return entry.id
    claimed = await add_and_claim(store, scheduled_for=at(min(seconds, 0)))
    assert claimed.lease_token is not None
    token = claimed.lease_token
    if status is COMPLETED:
        assert await store.complete(claimed.id, token, result_payload=None, attempt=make_attempt(finished=seconds))
    elif status is FAILED:
        attempt = make_attempt(outcome="failed", finished=seconds)
        assert await store.dead_letter(claimed.id, token, error_message="RuntimeError: boom", attempt=attempt)
    else:
        assert await store.expire(claimed.id, token, now=at(seconds))
    return claimed.id


async def test_count_finished_since_counts_terminal_entries_per_bucket_and_status(
    store: ScheduledCommandStore,
) -> None:
    """count_finished_since: per bucket ``[since + n*bucket, +bucket)`` and terminal status, by completed_at;
    entries finished before ``since``, PENDING and PROCESSING ones are left out; empty buckets are absent."""
    await finish_at(store, CANCELLED, -1)  # before since
    await finish_at(store, CANCELLED, 0)  # exactly at since: bucket 0
    await finish_at(store, COMPLETED, 59.999999)  # the last microsecond of bucket 0
    await finish_at(store, COMPLETED, 60)  # the first of bucket 1
    await finish_at(store, COMPLETED, 61)
    await finish_at(store, FAILED, 61.5)
    await finish_at(store, EXPIRED, 125)
    await finish_at(store, CANCELLED, 600)
    await entry_in_status(store, PENDING, scheduled_for=at(-1000))
    await entry_in_status(store, PROCESSING, scheduled_for=at(-1000))

    minute = timedelta(minutes=1)
    assert await store.count_finished_since(BASE, bucket=minute) == [
        FinishedCount(BASE, CANCELLED, 1),
        FinishedCount(BASE, COMPLETED, 1),
        FinishedCount(at(60), COMPLETED, 2),
        FinishedCount(at(60), FAILED, 1),
        FinishedCount(at(120), EXPIRED, 1),
        FinishedCount(at(600), CANCELLED, 1),
    ]
    assert await store.count_finished_since(at(601), bucket=minute) == []
    hour = await store.count_finished_since(at(-3600), bucket=timedelta(hours=1))
    assert [(c.start, c.status, c.count) for c in hour] == [
        (at(-3600), CANCELLED, 1),
        (BASE, CANCELLED, 2),
        (BASE, COMPLETED, 3),
        (BASE, EXPIRED, 1),
        (BASE, FAILED, 1),
    ]


async def test_count_finished_since_buckets_start_at_since_to_the_microsecond(store: ScheduledCommandStore) -> None:
    """Buckets are aligned on ``since``, whatever its sub-second part, and cut exactly."""
    for seconds in (10.499999, 10.5, 20.499999, 20.5):
        await finish_at(store, COMPLETED, seconds)
    since = at(0.5)
    ten = timedelta(seconds=10)
    assert await store.count_finished_since(since, bucket=ten) == [
        FinishedCount(since, COMPLETED, 1),
        FinishedCount(since + ten, COMPLETED, 2),
        FinishedCount(since + 2 * ten, COMPLETED, 1),
    ]


async def test_count_finished_since_refuses_a_bucket_that_is_not_positive(store: ScheduledCommandStore) -> None:
    with pytest.raises(ValueError, match="bucket must be a positive duration"):
        await store.count_finished_since(BASE, bucket=timedelta(0))


class _StoreWithBaseThroughput(MemoryStore):
    """A store that answers throughput with the ABC's default (built on ``list_entries``), as a new store would."""

    count_finished_since = ScheduledCommandStore.count_finished_since


async def test_the_default_count_finished_since_agrees_with_the_stores() -> None:
    """The ABC's default implementation gives what MemoryStore's own does."""
    plain, memory = _StoreWithBaseThroughput(), MemoryStore()
    for target in (plain, memory):
        for status, seconds in ((CANCELLED, -1), (COMPLETED, 0), (FAILED, 59.5), (EXPIRED, 60), (COMPLETED, 61)):
            await finish_at(target, status, seconds)
    minute = timedelta(minutes=1)
    expected = await memory.count_finished_since(BASE, bucket=minute)
    assert len(expected) == 4
    assert await plain.count_finished_since(BASE, bucket=minute) == expected


# -- running entries ------------------------------------------------------------------------------------------------


async def test_count_running_counts_processing_entries_under_a_live_lease(store: ScheduledCommandStore) -> None:
    """PROCESSING under a lease that has not expired at ``now`` counts; the lease's expiry itself does not;
    entries in any other status never count, whatever their past lease."""
    assert await store.count_running(now=BASE) == 0
    for status in (PENDING, COMPLETED, FAILED, CANCELLED, EXPIRED):
        await entry_in_status(store, status)
    assert await store.count_running(now=BASE) == 0
    first = await add_and_claim(store)  # lease until BASE + 60 s
    later = await add_and_claim(store, scheduled_for=at(30))  # lease until BASE + 90 s
    assert await store.count_running(now=at(59)) == 2
    assert await store.count_running(now=at(60)) == 1  # expired at that very instant: reclaimable, not running
    assert await store.count_running(now=at(90)) == 0
    assert later.lease_token is not None
    assert await store.renew_leases([(later.id, later.lease_token)], until=at(200)) == {later.id}
    assert await store.count_running(now=at(90)) == 1
    (reclaimed,) = await store.reclaim_expired_leases(now=at(100), limit=10, worker_id="w-2", lease_duration=LEASE)
    assert reclaimed.entry.id == first.id
    assert await store.count_running(now=at(100)) == 2  # taken over by a live worker
    assert await store.release(later.id, later.lease_token)
    assert await store.count_running(now=at(100)) == 1


async def test_count_running_through_the_default_agrees_with_the_stores() -> None:
    """The ABC's default (built on ``list_entries``) gives what MemoryStore's own does."""

    class StoreWithBaseCount(MemoryStore):
        count_running = ScheduledCommandStore.count_running

    plain, memory = StoreWithBaseCount(), MemoryStore()
    for target in (plain, memory):
        await add_and_claim(target)
        await add_and_claim(target, scheduled_for=at(30))
        await entry_in_status(target, COMPLETED)
    for now in (BASE, at(60), at(90)):
        assert await plain.count_running(now=now) == await memory.count_running(now=now)
    assert [await plain.count_running(now=now) for now in (BASE, at(60), at(90))] == [2, 1, 0]


# -- recurring schedules ------------------------------------------------------------------------------------------


def make_schedule(**overrides: Any) -> StoredSchedule:
    fields: dict[str, Any] = {
        "name": "nightly",
        "command_type": "tests.stores.Report",
        "payload": "{}",
        "cron": "0 2 * * *",
        "timezone": "Europe/Paris",
        "options_json": '{"priority":1}',
        "created_at": BASE,
        "updated_at": BASE,
    }
    fields.update(overrides)
    return StoredSchedule.model_validate(fields)


def make_occurrence(name: str, generation: int, seconds: float, **overrides: Any) -> ScheduledCommandEntry:
    return make_entry(
        recurring_name=name,
        occurrence_at=at(seconds),
        scheduled_for=at(seconds),
        idempotency_key=f"recurring:{name}:{generation}:{at(seconds).isoformat()}",
        occurrence_generation=generation,
        **overrides,
    )


async def test_upsert_schedule_inserts_then_keeps_an_unchanged_definition(store: ScheduledCommandStore) -> None:
    stored = await store.upsert_schedule(make_schedule())
    assert stored == make_schedule()
    again = await store.upsert_schedule(make_schedule(updated_at=at(60)))
    assert again == stored
    assert await store.get_schedule("nightly") == stored
    assert await store.get_schedule("other") is None


async def test_upsert_schedule_with_a_changed_definition_bumps_the_generation(store: ScheduledCommandStore) -> None:
    await store.upsert_schedule(make_schedule())
    await store.set_schedule_paused("nightly", True, now=at(5))
    assert await store.record_schedule_run("nightly", 2, last_run_at=at(1), next_run_at=at(2)) is True
    changed = await store.upsert_schedule(
        make_schedule(interval=timedelta(minutes=5), cron=None, updated_at=at(60), created_at=at(60))
    )
    assert (changed.generation, changed.interval, changed.cron, changed.paused) == (3, timedelta(minutes=5), None, True)
    assert (changed.created_at, changed.updated_at, changed.last_run_at) == (BASE, at(60), at(1))
    assert await store.get_schedule("nightly") == changed
    for field, value in [
        ("payload", '{"a": 1}'),
        ("timezone", "UTC"),
        ("options_json", "{}"),
        ("misfire_policy", "run_all"),
    ]:
        before = await store.get_schedule("nightly")
        assert before is not None
        after = await store.upsert_schedule(before.model_copy(update={field: value}))
        assert after.generation == before.generation + 1


async def test_concurrent_upserts_of_one_new_schedule_store_it_once(
    store_factory: StoreFactory, tmp_path: Path
) -> None:
    async with store_factory(tmp_path) as first:
        others = [store_factory(tmp_path) for _ in range(3)] if not isinstance(first, MemoryStore) else [first] * 3
        for other in others:
            await other.open()
        try:
            results = await asyncio.gather(*(s.upsert_schedule(make_schedule()) for s in [first, *others]))
            assert {r.generation for r in results} == {1}
            assert len(await first.list_schedules()) == 1
        finally:
            for other in others:
                if other is not first:
                    await other.close()


async def test_list_and_delete_schedules(store: ScheduledCommandStore) -> None:
    for name in ("b", "a", "c"):
        await store.upsert_schedule(make_schedule(name=name))
    assert [s.name for s in await store.list_schedules()] == ["a", "b", "c"]
    assert await store.delete_schedule("b") is True
    assert await store.delete_schedule("b") is False
    assert [s.name for s in await store.list_schedules()] == ["a", "c"]


async def test_set_schedule_paused_bumps_the_generation(store: ScheduledCommandStore) -> None:
    await store.upsert_schedule(make_schedule(next_run_at=at(100)))
    paused = await store.set_schedule_paused("nightly", True, now=at(10))
    assert paused is not None
    assert (paused.paused, paused.generation, paused.updated_at, paused.next_run_at) == (True, 2, at(10), None)
    resumed = await store.set_schedule_paused("nightly", False, now=at(20))
    assert resumed is not None and (resumed.paused, resumed.generation) == (False, 3)
    assert await store.set_schedule_paused("missing", True, now=at(20)) is None


async def test_record_schedule_run_is_fenced_by_generation(store: ScheduledCommandStore) -> None:
    await store.upsert_schedule(make_schedule())
    assert await store.record_schedule_run("nightly", 2, last_run_at=at(1), next_run_at=at(2)) is False
    assert await store.record_schedule_run("nightly", 1, last_run_at=at(1), next_run_at=at(2)) is True
    assert await store.record_schedule_run("nightly", 1, last_run_at=None, next_run_at=at(3)) is True
    stored = await store.get_schedule("nightly")
    assert stored is not None and (stored.last_run_at, stored.next_run_at) == (at(1), at(3))
    assert await store.record_schedule_run("missing", 1, last_run_at=None, next_run_at=None) is False


async def test_occurrence_fields_round_trip_and_their_key_is_unique(store: ScheduledCommandStore) -> None:
    occurrence = make_occurrence("nightly", 1, 60)
    assert await store.add([occurrence]) == [occurrence.id]
    duplicate = make_occurrence("nightly", 1, 60)
    assert await store.add([duplicate]) == [occurrence.id]
    stored = await store.get(occurrence.id)
    assert stored is not None and (stored.recurring_name, stored.occurrence_at) == ("nightly", at(60))
    [claimed] = await claim(store, now=at(60))
    assert (claimed.recurring_name, claimed.occurrence_at) == ("nightly", at(60))


async def test_cancel_occurrences_cancels_pending_ones_of_that_schedule(store: ScheduledCommandStore) -> None:
    old = make_occurrence("nightly", 1, 10)
    current = make_occurrence("nightly", 2, 20)
    other = make_occurrence("night", 1, 10)
    running = make_occurrence("nightly", 1, 0)
    await store.add([running, old, current, other])
    await claim(store, now=at(0))
    cancelled = await store.cancel_occurrences("nightly", now=at(30), keep_generation=2)
    assert [e.id for e in cancelled] == [old.id]
    assert cancelled[0].status is CANCELLED and cancelled[0].completed_at == at(30)
    assert [e.id for e in await store.cancel_occurrences("nightly", now=at(40))] == [current.id]
    assert await store.cancel_occurrences("nightly", now=at(50)) == []
    still = await store.get(other.id)
    assert still is not None and still.status is PENDING
    held = await store.get(running.id)
    assert held is not None and held.status is PROCESSING
