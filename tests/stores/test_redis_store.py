"""What ``RedisStore`` adds to the contract: its key layout version, the persistence warning, wake-ups between
processes through pub/sub, URLs, and the optional client library."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import redis
import redis.asyncio

from stores import RedisStore, SqlStore
from stores._redis_scripts import LAYOUT_VERSION
from stores.entries import ScheduledCommandEntry, ScheduledCommandStatus
from stores.errors import SchemaVersionError
from stores.testing._helpers import at, make_schedule
from stores.urls import store_from_url

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def entry(entry_id: str, due: datetime = T0) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=entry_id,
        command_type="tests.Job",
        payload="{}",
        status=ScheduledCommandStatus.PENDING,
        scheduled_for=due,
        created_at=T0,
    )


async def test_a_newer_key_layout_is_refused(redis_url: str, redis_prefix: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.hset(f"{redis_prefix}:meta", "layout", "99")
    with pytest.raises(SchemaVersionError) as raised:
        await RedisStore(redis_url, prefix=redis_prefix).open()
    assert (raised.value.found, raised.value.supported) == (99, LAYOUT_VERSION)


async def test_opening_records_the_layout_version(redis_url: str, redis_prefix: str) -> None:
    async with RedisStore(redis_url, prefix=redis_prefix):
        pass
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        assert client.hget(f"{redis_prefix}:meta", "layout") == str(LAYOUT_VERSION)


async def test_a_server_without_persistence_is_warned_about(
    redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        persists = client.config_get("appendonly")["appendonly"] == "yes" or bool(client.config_get("save")["save"])
    with caplog.at_level(logging.WARNING, logger="stores.redis"):
        async with RedisStore(redis_url, prefix=redis_prefix):
            pass
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "persists nothing" in r.getMessage()]
    assert len(warned) == (0 if persists else 1)


async def test_another_store_on_the_prefix_is_woken_by_an_add(redis_url: str, redis_prefix: str) -> None:
    """Two stores (two worker processes, say) on one prefix: an add through one wakes the other's listeners."""
    woken: asyncio.Queue[datetime] = asyncio.Queue()
    async with RedisStore(redis_url, prefix=redis_prefix) as adder, RedisStore(redis_url, prefix=redis_prefix) as other:
        other.add_wakeup_listener(woken.put_nowait)
        await adder.add([entry("late", T0 + timedelta(seconds=5)), entry("early", T0)])
        assert await asyncio.wait_for(woken.get(), timeout=10) == T0


async def test_entries_finished_together_reach_another_store_in_one_message(redis_url: str, redis_prefix: str) -> None:
    """Ids that reach a terminal status in one script run are published as one JSON list, not a message each; the
    other store's finish listeners hear every one of them, and a bare id (an older publisher's) too."""
    heard: asyncio.Queue[str] = asyncio.Queue()
    async with RedisStore(redis_url, prefix=redis_prefix) as store, RedisStore(redis_url, prefix=redis_prefix) as other:
        ids = [f"together-{i}" for i in range(3)]
        for entry_id in [*ids, "bare"]:
            other.add_finish_listener(entry_id, heard.put_nowait)
        await store.add([entry(entry_id).model_copy(update={"correlation_id": "order-1"}) for entry_id in ids])
        with redis.Redis.from_url(redis_url, decode_responses=True) as client, client.pubsub() as watcher:
            watcher.subscribe(f"{redis_prefix}:finished")
            assert len(await store.cancel_by_correlation_id("order-1", now=T0)) == 3
            messages = [watcher.get_message(timeout=5) for _ in range(2)]  # the subscription, then the ids
            assert [m["data"] for m in messages if m and m["type"] == "message"] == [json.dumps(ids).replace(" ", "")]
            async with redis.asyncio.Redis.from_url(redis_url) as publisher:  # heard by both stores and the watcher
                assert await publisher.publish(f"{redis_prefix}:finished", "bare") == 3
        assert sorted([await asyncio.wait_for(heard.get(), timeout=10) for _ in range(4)]) == sorted([*ids, "bare"])


async def test_stores_on_other_prefixes_see_nothing_of_each_other(redis_url: str, redis_prefix: str) -> None:
    async with (
        RedisStore(redis_url, prefix=f"{redis_prefix}:a") as first,
        RedisStore(redis_url, prefix=f"{redis_prefix}:b") as second,
    ):
        await first.add([entry("only-in-a")])
        assert await second.get("only-in-a") is None
        assert (await second.count_by_status())[ScheduledCommandStatus.PENDING] == 0


async def test_the_url_may_carry_the_prefix(redis_url: str, redis_prefix: str) -> None:
    store = store_from_url(f"{redis_url}?prefix={redis_prefix}")
    assert isinstance(store, RedisStore) and store.prefix == redis_prefix
    async with store:
        await store.add([entry("a")])
    async with RedisStore(redis_url, prefix=redis_prefix) as same:
        assert await same.get("a") is not None


def test_urls_choose_the_store() -> None:
    assert isinstance(store_from_url("redis://127.0.0.1:6379/0"), RedisStore)
    assert isinstance(store_from_url("rediss://cache.example:6380/1"), RedisStore)
    assert isinstance(store_from_url("sqlite:///jobs.db"), SqlStore)
    with pytest.raises(ValueError, match="mysql"):
        store_from_url("mysql://db/jobs")


def test_the_password_is_masked_in_the_description() -> None:
    store = RedisStore("redis://worker:s3cret@cache.example:6379/2", prefix="jobs")
    assert "s3cret" not in store.description
    assert store.description == "RedisStore(redis://worker:***@cache.example:6379/2, prefix='jobs')"


@pytest.mark.parametrize("prefix", ["", "with space"])
def test_a_bad_prefix_is_refused_by_name(prefix: str) -> None:
    with pytest.raises(ValueError, match=repr(prefix)):
        RedisStore("redis://127.0.0.1:6379/0", prefix=prefix)


def test_without_the_redis_client_stores_import_and_only_opening_fails() -> None:
    """The ``redis`` extra is optional: ``import stores`` works without it; opening a RedisStore says what to
    install."""
    program = (
        "import sys, asyncio\n"
        "sys.modules['redis'] = None\n"
        "from stores import RedisStore, SqlStore\n"
        "store = RedisStore('redis://127.0.0.1:6379/0')\n"
        "try:\n"
        "    asyncio.run(store.open())\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60)
    assert "pip install 'cqrs-scheduling[redis]'" in result.stdout


def test_the_command_line_reads_a_redis_store(redis_url: str, redis_prefix: str) -> None:
    """``--store redis://...?prefix=...`` reaches the entries, and the environment variable does too."""

    async def add() -> None:
        async with RedisStore(redis_url, prefix=redis_prefix) as store:
            await store.add([entry("from-redis")])

    asyncio.run(add())
    url = f"{redis_url}?prefix={redis_prefix}"
    listed = subprocess.run(
        [sys.executable, "-m", "scheduling", "list", "--store", url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert "from-redis" in listed.stdout
    shown = subprocess.run(
        [sys.executable, "-m", "scheduling", "show", "from-redis", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"CQRS_SCHEDULING_STORE": url},
    )
    assert shown.returncode == 0, shown.stderr
    assert '"PENDING"' in shown.stdout


async def test_a_corrupt_hash_is_dead_lettered_and_never_strands_its_claim(redis_url: str, redis_prefix: str) -> None:
    """An entry hash written behind the store's back (a priority that is no number) is dead-lettered by the claim
    that meets it, naming the field and value, and the other entries of that claim run, as on the SQL stores."""
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        await store.add([entry("good-1"), entry("bad"), entry("good-2")])
        with redis.Redis.from_url(redis_url) as client:
            client.hset(f"{redis_prefix}:e:bad", "priority", "high")
        claimed = await store.claim_due(now=T0, limit=10, worker_id="w", lease_duration=timedelta(minutes=1))
        assert sorted(e.id for e in claimed) == ["good-1", "good-2"]
        assert await store.claim_due(now=T0, limit=10, worker_id="w", lease_duration=timedelta(minutes=1)) == []
        assert (await store.count_by_status())[ScheduledCommandStatus.FAILED] == 1
        with redis.Redis.from_url(redis_url, decode_responses=True) as client:
            stored = client.hgetall(f"{redis_prefix}:e:bad")
        assert stored["status"] == "FAILED"
        assert "column priority holds 'high'" in stored["error_message"], stored["error_message"]


async def test_a_schedule_changed_after_it_was_read_is_not_overwritten(redis_url: str, redis_prefix: str) -> None:
    # A redefinition or a pause is decided from the schedule as read and written only if it is still so: a run
    # recorded in between is kept, and every racing pause and redefinition counts once.
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        stored = await store.upsert_schedule(make_schedule())
        held = await store._read_schedule("nightly")
        assert await store.record_schedule_run("nightly", 1, last_run_at=at(1), next_run_at=at(2)) is True
        redefined = stored.model_copy(update={"payload": '{"a": 1}', "generation": 2})
        assert await store._replace_schedule(held, redefined) is None
        assert await store.get_schedule("nightly") == stored.model_copy(
            update={"last_run_at": at(1), "next_run_at": at(2)}
        )
        changes = [store.upsert_schedule(make_schedule(payload=f'{{"n": {n}}}')) for n in range(5)]
        pauses = [store.set_schedule_paused("nightly", n % 2 == 0, now=at(n)) for n in range(5)]
        await asyncio.gather(*changes, *pauses)
        final = await store.get_schedule("nightly")
        assert final is not None and final.generation == 1 + 5 + 5
        assert final.last_run_at == at(1)
