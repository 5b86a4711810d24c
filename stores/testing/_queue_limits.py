"""The store contract of fleet-wide queue limits (``set_queue_limits``): ``max_running`` caps the queue's PROCESSING
entries, a rate caps its starts within any window of ``rate.per``; enforced by the claim, identically for every store
that has them, concurrent claims included: part of ``QueueContract``.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from stores.base import ScheduledCommandStore
from stores.queues import QueueInfo, QueueLimits, RateLimit, Route

from ._helpers import LEASE, WORKER, at, make_attempt, make_entry
from ._queues import claim_ids


async def complete(store: ScheduledCommandStore, entry_id: str) -> None:
    entry = await store.get(entry_id)
    assert entry is not None and entry.lease_token is not None and entry.started_at is not None
    attempt = make_attempt(started_at=entry.started_at)  # as a worker's: the attempt starts when claimed
    assert await store.complete(entry_id, entry.lease_token, result_payload=None, attempt=attempt)


async def test_max_running_caps_the_processing_entries_of_the_queue(fleet_store: ScheduledCommandStore) -> None:
    limited = [make_entry(queue="api", scheduled_for=at(i)) for i in range(5)]
    free = [make_entry(scheduled_for=at(i)) for i in range(3)]
    await fleet_store.add(limited + free)
    await fleet_store.set_queue_limits("api", QueueLimits(max_running=2))
    first = await claim_ids(fleet_store, now=at(9))
    assert sorted(first) == sorted([limited[0].id, limited[1].id, *(entry.id for entry in free)])
    assert await claim_ids(fleet_store, now=at(9)) == []
    await complete(fleet_store, limited[0].id)
    assert await claim_ids(fleet_store, now=at(9)) == [limited[2].id]
    assert await claim_ids(fleet_store, Route.of(["api"], None), now=at(9)) == []


async def test_a_rate_caps_the_starts_within_any_window(fleet_store: ScheduledCommandStore) -> None:
    entries = [make_entry(queue="api", scheduled_for=at(0)) for _ in range(5)]
    await fleet_store.add(entries)
    await fleet_store.set_queue_limits("api", QueueLimits(rate=RateLimit(count=3, per=timedelta(seconds=10))))
    started = await claim_ids(fleet_store, now=at(1))
    assert len(started) == 3
    for entry_id in started:  # finished entries still count: the rate is of starts, not of running entries
        await complete(fleet_store, entry_id)
    assert await claim_ids(fleet_store, now=at(10)) == []
    assert len(await claim_ids(fleet_store, now=at(11.5))) == 2


async def test_next_start_at_is_when_a_spent_rate_frees_its_next_start(fleet_store: ScheduledCommandStore) -> None:
    """A worker whose claim came back empty sleeps until ``next_start_at``: the moment the oldest start of a queue
    at its rate leaves the window, and a claim at that moment starts the next entry."""
    await fleet_store.add([make_entry(queue="api", scheduled_for=at(0)) for _ in range(5)])
    await fleet_store.add([make_entry(queue="other", scheduled_for=at(0))])
    rate = RateLimit(count=2, per=timedelta(seconds=10))
    await fleet_store.set_queue_limits("api", QueueLimits(rate=rate))
    assert await fleet_store.next_start_at(at(1)) is None  # no start yet: nothing spent
    assert len(await claim_ids(fleet_store, Route.of(["api"], None), limit=1, now=at(1))) == 1
    assert await fleet_store.next_start_at(at(1)) is None  # one start of two: not spent
    assert len(await claim_ids(fleet_store, Route.of(["api"], None), now=at(3))) == 1
    assert await fleet_store.next_start_at(at(3)) == at(11)
    assert await fleet_store.next_start_at(at(3), ["api", "x"]) == at(11)
    assert await fleet_store.next_start_at(at(3), ["other"]) is None  # not one of the worker's queues
    assert await claim_ids(fleet_store, Route.of(["api"], None), now=at(10.999)) == []
    assert len(await claim_ids(fleet_store, Route.of(["api"], None), now=at(11))) == 1
    assert await fleet_store.next_start_at(at(11)) == at(13)  # the next oldest start
    await fleet_store.set_queue_paused("api", True)
    assert await fleet_store.next_start_at(at(11)) is None  # a paused queue starts nothing
    await fleet_store.set_queue_paused("api", False)
    assert await fleet_store.next_start_at(at(13)) is None  # free at 13: no wait past now
    await fleet_store.set_queue_limits("api", QueueLimits(rate=RateLimit(count=1, per=timedelta(seconds=10))))
    assert await fleet_store.next_start_at(at(13)) == at(21)  # a lowered rate: its latest start counts


async def test_both_limits_hold_together_and_none_clears_them(fleet_store: ScheduledCommandStore) -> None:
    await fleet_store.add([make_entry(queue="api", scheduled_for=at(0)) for _ in range(6)])
    rate = RateLimit(count=2, per=timedelta(minutes=1))
    await fleet_store.set_queue_limits("api", QueueLimits(max_running=1, rate=rate))
    assert await fleet_store.list_queues() == [QueueInfo(name="api", depth=6, max_running=1, rate=rate)]
    (first,) = await claim_ids(fleet_store, now=at(1))
    await complete(fleet_store, first)
    assert len(await claim_ids(fleet_store, now=at(2))) == 1  # the second start of the minute
    await fleet_store.set_queue_limits("api", QueueLimits(max_running=5))
    assert len(await claim_ids(fleet_store, now=at(3))) == 4  # the rate cleared: max_running caps at 5 running
    await fleet_store.set_queue_limits("api", QueueLimits())
    assert len(await claim_ids(fleet_store, now=at(3))) == 0  # all 6 are running or done
    assert await fleet_store.list_queues() == [QueueInfo(name="api", running=5)]


async def test_a_limited_queue_without_entries_is_listed(fleet_store: ScheduledCommandStore) -> None:
    await fleet_store.set_queue_limits("later", QueueLimits(max_running=3))
    assert await fleet_store.list_queues() == [QueueInfo(name="later", max_running=3)]


async def test_concurrent_claims_never_exceed_max_running(fleet_store: ScheduledCommandStore) -> None:
    """Claims racing each other (PostgreSQL: on separate connections) take at most ``max_running`` together."""
    await fleet_store.add([make_entry(queue="api", scheduled_for=at(0)) for _ in range(40)])
    await fleet_store.set_queue_limits("api", QueueLimits(max_running=3))
    claims = [
        fleet_store.claim_due(now=at(1), limit=5, worker_id=f"{WORKER}-{n}", lease_duration=LEASE) for n in range(8)
    ]
    batches = await asyncio.gather(*claims)
    assert sum(len(batch) for batch in batches) == 3


async def test_limits_refuse_a_bad_queue_name(fleet_store: ScheduledCommandStore) -> None:
    with pytest.raises(ValueError, match="'bad name!'"):
        await fleet_store.set_queue_limits("bad name!", QueueLimits(max_running=1))
