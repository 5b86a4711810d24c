"""The contract: the claim order as a property, and the operator queries."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stores.base import FinishedCount, ScheduledCommandStore

from ._helpers import (
    BASE,
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    LEASE,
    PENDING,
    PROCESSING,
    StoreFactory,
    add_and_claim,
    at,
    claimed_ids,
    entry_in_status,
    finish_at,
    make_entry,
)

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
