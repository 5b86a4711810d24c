"""The contract: opening, adding and getting entries, idempotency keys, claiming (order, due times, limits)
and fencing by lease token."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandStatus

from ._helpers import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    FENCED_OUTCOMES,
    LEASE,
    PENDING,
    PROCESSING,
    WORKER,
    FencedCall,
    StoreFactory,
    add_and_claim,
    at,
    claim,
    claimed_ids,
    entry_in_status,
    fenced_outcome,
    make_attempt,
    make_entry,
)

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
