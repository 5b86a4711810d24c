"""The key layout of ``RedisStore``: a prefix written by layout 1 (before queues) or 2 (before dependencies) is
upgraded in place on opening, and its entries claim, route and count as if added now; a queue name the keys cannot
hold is refused (a newer layout: test_redis_store.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis

from stores import RedisStore
from stores._redis_codec import entry_fields, micros, pairs
from stores._redis_scripts import LAYOUT_VERSION
from stores.dependencies import Dependency
from stores.entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from stores.queues import QueueInfo, Route

T0 = datetime(2030, 1, 1, tzinfo=UTC)
JOB, OTHER = "tests.Job", "tests.Other"


def _entry(entry_id: str, command_type: str, priority: int, due: datetime) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=entry_id,
        command_type=command_type,
        payload="{}",
        status=ScheduledCommandStatus.PENDING,
        scheduled_for=due,
        created_at=T0,
        priority=priority,
    )


def _write_layout_1(client: redis.Redis, prefix: str) -> None:
    """Three PENDING entries and one PROCESSING, keyed as layout 1 kept them: PENDING entries in one sorted set per
    priority (``due:{priority}``), no queue counters."""
    p = f"{prefix}:"
    pending = [_entry("a", JOB, 0, T0), _entry("b", OTHER, 5, T0 + timedelta(seconds=1))]
    pending.append(_entry("c", JOB, 0, T0 + timedelta(seconds=2)))
    for seq, entry in enumerate(pending, start=1):
        member = f"{seq:016d}:{entry.id}"
        client.hset(f"{p}e:{entry.id}", mapping={"seq": str(seq), **pairs(entry_fields(entry))})
        client.zadd(f"{p}due:{entry.priority}", {member: int(micros(entry.scheduled_for))})
        client.zadd(f"{p}prio", {str(entry.priority): entry.priority})
        client.zadd(f"{p}s:PENDING", {entry.id: seq})
    running = _entry("d", JOB, 0, T0).model_copy(
        update={"status": ScheduledCommandStatus.PROCESSING, "lease_owner": "old", "lease_token": "t-1"}
    )
    lease = T0 + timedelta(hours=1)
    fields = pairs(entry_fields(running.model_copy(update={"lease_expires_at": lease})))
    client.hset(f"{p}e:d", mapping={"seq": "4", "started_at": micros(T0), **fields})
    client.zadd(f"{p}leases", {"0000000000000004:d": int(micros(lease))})
    client.zadd(f"{p}s:PROCESSING", {"d": 4})
    for seq, entry_id in enumerate("abcd", start=1):
        client.zadd(f"{p}all", {entry_id: seq})
    client.hset(f"{p}counts", mapping={"PENDING": 3, "PROCESSING": 1})
    client.hset(f"{p}meta", mapping={"layout": "1", "seq": "4"})


async def test_a_layout_1_prefix_is_upgraded_on_opening(redis_url: str, redis_prefix: str) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        _write_layout_1(client, redis_prefix)
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        assert await store.list_queues() == [QueueInfo(name="default", depth=3, running=1)]
        assert await store.next_due_at() == T0
        now = T0 + timedelta(seconds=5)
        routed = await store.claim_due(
            now=now, limit=10, worker_id="w", lease_duration=timedelta(minutes=1), route=Route.of(None, [JOB])
        )
        assert [entry.id for entry in routed] == ["a", "c"]
        rest = await store.claim_due(now=now, limit=10, worker_id="w", lease_duration=timedelta(minutes=1))
        assert [entry.id for entry in rest] == ["b"]
        assert await store.list_queues() == [QueueInfo(name="default", running=4)]
        assert await store.renew_leases([("d", "t-1")], until=now) == {"d"}
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert client.hget(f"{redis_prefix}:meta", "layout") == str(LAYOUT_VERSION)
        assert client.keys(f"{redis_prefix}:due:*") == []


async def test_opening_an_upgraded_prefix_again_changes_nothing(redis_url: str, redis_prefix: str) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        _write_layout_1(client, redis_prefix)
    async with RedisStore(redis_url, prefix=redis_prefix):
        pass
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        assert await store.list_queues() == [QueueInfo(name="default", depth=3, running=1)]


async def test_an_entry_with_a_queue_name_the_keys_cannot_hold_is_refused(redis_url: str, redis_prefix: str) -> None:
    """The ready sets are keyed by ``{priority}|{queue}|{type}``: a queue name with ``|`` (built by hand, past
    ``ScheduleOptions``) is refused naming it, and nothing of the batch is stored."""
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        good, bad = _entry("good", JOB, 0, T0), _entry("bad", JOB, 0, T0).model_copy(update={"queue": "a|b"})
        with pytest.raises(ValueError, match=r"'a\|b'"):
            await store.add([good, bad])
        assert await store.get("good") is None


async def test_a_layout_2_prefix_is_upgraded_and_its_entries_can_be_parents(redis_url: str, redis_prefix: str) -> None:
    """Layout 3 adds the keys of dependencies only: a layout-2 prefix keeps its entries, which new dependants may
    name as parents."""
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        await store.add([_entry("a", JOB, 0, T0)])
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        client.hset(f"{redis_prefix}:meta", "layout", "2")
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        child = _entry("b", JOB, 0, T0)
        await store.add_dependants([child], {"b": Dependency(("a",))})
        assert (await store.count_by_status())[ScheduledCommandStatus.WAITING] == 1
        lease = timedelta(minutes=1)
        [parent] = await store.claim_due(now=T0, limit=10, worker_id="w", lease_duration=lease)
        assert parent.lease_token is not None
        assert await store.complete("a", parent.lease_token, result_payload=None, attempt=_attempt())
        assert [e.id for e in await store.claim_due(now=T0, limit=10, worker_id="w", lease_duration=lease)] == ["b"]
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert client.hget(f"{redis_prefix}:meta", "layout") == str(LAYOUT_VERSION) == "3"


def _attempt() -> AttemptRecord:
    return AttemptRecord(attempt=1, started_at=T0, finished_at=T0, outcome="completed", worker_id="w")
