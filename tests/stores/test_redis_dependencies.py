"""Dependencies on ``RedisStore``, beyond the contract suite: the paths that end a parent outside a worker's plain
outcome (a hash that cannot be read, dead-lettered at the claim; lease recovery; a recurring schedule's cancelled
occurrences) resolve its dependants in the same script; a dependant added by one store instance while another
completes its parent is released whichever runs first; purging leaves no key of the pairs behind."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import redis

from stores import RedisStore
from stores.dependencies import Dependency
from stores.entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus

T0 = datetime(2030, 1, 1, tzinfo=UTC)
LEASE = timedelta(minutes=1)
PENDING, WAITING = ScheduledCommandStatus.PENDING, ScheduledCommandStatus.WAITING
CANCELLED, FAILED = ScheduledCommandStatus.CANCELLED, ScheduledCommandStatus.FAILED


def entry(entry_id: str | None = None, *, at: datetime = T0, **fields: object) -> ScheduledCommandEntry:
    return ScheduledCommandEntry.model_validate(
        {
            "id": entry_id or str(uuid.uuid4()),
            "command_type": "tests.Job",
            "payload": "{}",
            "status": PENDING,
            "scheduled_for": at,
            "created_at": at,
            **fields,
        }
    )


def attempt(outcome: str = "completed", at: datetime = T0) -> AttemptRecord:
    return AttemptRecord.model_validate(
        {"attempt": 1, "worker_id": "w", "started_at": at, "finished_at": at, "outcome": outcome}
    )


async def status(store: RedisStore, entry_id: str) -> ScheduledCommandEntry:
    found = await store.get(entry_id)
    assert found is not None
    return found


async def test_a_parent_dead_lettered_as_unreadable_cancels_its_dependant(redis_url: str, redis_prefix: str) -> None:
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        heard: list[ScheduledCommandEntry] = []
        store.set_dependants_cancelled_listener("test", heard.extend)
        parent, child = entry("bad"), entry()
        await store.add([parent])
        await store.add_dependants([child], {child.id: Dependency((parent.id,))})
        with redis.Redis.from_url(redis_url) as client:
            client.hset(f"{redis_prefix}:e:bad", "timeout_seconds", "NaN?")
        assert await store.claim_due(now=T0, limit=10, worker_id="w", lease_duration=LEASE) == []
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            assert client.hget(f"{redis_prefix}:e:bad", "status") == "FAILED"
        cancelled = await status(store, child.id)
        assert cancelled.status is CANCELLED
        assert cancelled.error_message == f"ParentNotCompleted: parent {parent.id} ended FAILED"
        assert [e.id for e in heard] == [child.id]


async def test_lease_recovery_then_the_new_holders_outcome_releases_once(redis_url: str, redis_prefix: str) -> None:
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        parent, child = entry(), entry()
        await store.add([parent])
        await store.add_dependants([child], {child.id: Dependency((parent.id,))})
        (first,) = await store.claim_due(now=T0, limit=1, worker_id="dead", lease_duration=LEASE)
        later = T0 + 2 * LEASE
        (taken,) = await store.reclaim_expired_leases(now=later, limit=10, worker_id="w2", lease_duration=LEASE)
        token = taken.entry.lease_token
        assert token is not None and token != first.lease_token
        assert not await store.complete(parent.id, first.lease_token or "", result_payload=None, attempt=attempt())
        assert (await status(store, child.id)).status is WAITING  # the lost lease's outcome changed nothing
        assert await store.complete(parent.id, token, result_payload="1", attempt=attempt(at=later))
        released = await status(store, child.id)
        assert released.status is PENDING and released.pending_parents == 0
        assert [e.id for e in await store.claim_due(now=later, limit=10, worker_id="w2", lease_duration=LEASE)] == [
            child.id
        ]


async def test_cancelling_a_schedules_occurrences_cancels_their_dependants(redis_url: str, redis_prefix: str) -> None:
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        occurrence = entry(recurring_name="nightly", occurrence_generation=1, at=T0 + timedelta(hours=1))
        child = entry()
        await store.add([occurrence])
        await store.add_dependants([child], {child.id: Dependency((occurrence.id,))})
        assert [e.id for e in await store.cancel_occurrences("nightly", now=T0)] == [occurrence.id]
        cancelled = await status(store, child.id)
        assert cancelled.status is CANCELLED and cancelled.completed_at == T0
        assert cancelled.error_message == f"ParentNotCompleted: parent {occurrence.id} ended CANCELLED"


async def test_a_dependant_added_while_its_parent_completes_is_never_left_waiting(
    redis_url: str, redis_prefix: str
) -> None:
    """Two store instances (two connections, as two processes), 30 times: whichever script runs first, the dependant
    ends PENDING, released exactly once."""
    async with (
        RedisStore(redis_url, prefix=redis_prefix) as worker,
        RedisStore(redis_url, prefix=redis_prefix) as producer,
    ):
        for _ in range(30):
            parent, child = entry(), entry()
            await worker.add([parent])
            (claimed,) = await worker.claim_due(now=T0, limit=1, worker_id="w", lease_duration=LEASE)
            completed, _ = await asyncio.gather(
                worker.complete(parent.id, claimed.lease_token or "", result_payload=None, attempt=attempt()),
                producer.add_dependants([child], {child.id: Dependency((parent.id,))}),
            )
            assert completed
            released = await status(worker, child.id)
            assert released.status is PENDING and released.pending_parents == 0, released
            (taken,) = await worker.claim_due(now=T0, limit=1, worker_id="w", lease_duration=LEASE)
            assert taken.id == child.id
            await worker.complete(child.id, taken.lease_token or "", result_payload=None, attempt=attempt())


async def test_purging_a_workflow_leaves_no_key_of_its_pairs(redis_url: str, redis_prefix: str) -> None:
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        members = [entry() for _ in range(3)]
        callback = entry()
        after = {callback.id: Dependency(tuple(m.id for m in members), on_success_only=False)}
        await store.add_dependants([*members, callback], after)
        assert await store.get_dependants(members[0].id) == [callback.id]
        for member in members:
            assert await store.cancel(member.id, now=T0) is not None
        assert (await status(store, callback.id)).status is PENDING
        assert await store.cancel(callback.id, now=T0) is not None
        assert await store.purge(older_than=T0 + timedelta(seconds=1)) == 4
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            left = list(client.scan_iter(match=f"{redis_prefix}:d[pck]:*"))
        assert left == []
        assert await store.get_parents(callback.id) == []


async def test_a_dependant_hash_written_behind_our_back_never_breaks_its_parents_outcome(
    redis_url: str, redis_prefix: str
) -> None:
    """A WAITING dependant whose due time and priority were overwritten with text: the parent's outcome is written
    and releases it; the claim that takes it dead-letters it naming the field, as for any corrupt hash."""
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        parent, child = entry(), entry("corrupt")
        await store.add([parent])
        await store.add_dependants([child], {child.id: Dependency((parent.id,))})
        with redis.Redis.from_url(redis_url) as client:
            client.hset(f"{redis_prefix}:e:corrupt", mapping={"scheduled_for": "soon", "priority": "high"})
        (claimed,) = await store.claim_due(now=T0, limit=10, worker_id="w", lease_duration=LEASE)
        assert await store.complete(parent.id, claimed.lease_token or "", result_payload=None, attempt=attempt())
        assert (await store.count_by_status())[ScheduledCommandStatus.COMPLETED] == 1
        assert await store.claim_due(now=T0, limit=10, worker_id="w", lease_duration=LEASE) == []
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            stored = client.hgetall(f"{redis_prefix}:e:corrupt")
        assert stored["status"] == "FAILED"
        assert "UnreadableEntryError" in stored["error_message"], stored["error_message"]
