"""The worker-registry part of the store contract (``register_worker``, ``touch_worker``, ``list_workers``,
``forget_workers``), asserted identically for the store under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stores.base import ScheduledCommandStore
from stores.workers import StoredWorker

from ._helpers import StoreFactory

BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def make_worker(worker_id: str = "host-a:101:abc", **overrides: Any) -> StoredWorker:
    fields: dict[str, Any] = {
        "worker_id": worker_id,
        "host": "host-a",
        "pid": 101,
        "queues": ("emails", "default"),
        "command_types": ("app.SendEmail", "app.Bill"),
        "started_at": BASE,
        "last_seen_at": BASE,
        "lease_duration": timedelta(seconds=30),
    }
    return StoredWorker(**(fields | overrides))


async def test_a_registered_worker_is_listed_as_given(store: ScheduledCommandStore) -> None:
    worker = make_worker(queues=(), command_types=("app.Ünïcode", "app.SendEmail"))

    await store.register_worker(worker)

    assert await store.list_workers() == [worker]


async def test_workers_are_listed_by_start_time_then_id(store: ScheduledCommandStore) -> None:
    late = make_worker("a-late", started_at=at(5), last_seen_at=at(5))
    early_b = make_worker("b-early")
    early_a = make_worker("a-early", pid=7)
    for worker in (late, early_b, early_a):
        await store.register_worker(worker)

    assert [w.worker_id for w in await store.list_workers()] == ["a-early", "b-early", "a-late"]


async def test_registering_an_id_again_replaces_its_record(store: ScheduledCommandStore) -> None:
    await store.register_worker(make_worker())
    await store.touch_worker("host-a:101:abc", now=at(10), state="stopped")
    again = make_worker(pid=202, started_at=at(20), last_seen_at=at(20), command_types=("app.New",))

    await store.register_worker(again)

    assert await store.list_workers() == [again]


async def test_a_heartbeat_moves_last_seen_and_keeps_the_rest(store: ScheduledCommandStore) -> None:
    worker = make_worker()
    await store.register_worker(worker)

    assert await store.touch_worker(worker.worker_id, now=at(7)) is True

    assert await store.list_workers() == [worker.model_copy(update={"last_seen_at": at(7)})]


async def test_a_heartbeat_can_change_the_state_and_stopping_stamps_the_stop(store: ScheduledCommandStore) -> None:
    worker = make_worker()
    await store.register_worker(worker)

    await store.touch_worker(worker.worker_id, now=at(3), state="stopping")
    (stopping,) = await store.list_workers()
    await store.touch_worker(worker.worker_id, now=at(4), state="stopped")
    (stopped,) = await store.list_workers()

    assert (stopping.state, stopping.last_seen_at, stopping.stopped_at) == ("stopping", at(3), None)
    assert (stopped.state, stopped.last_seen_at, stopped.stopped_at) == ("stopped", at(4), at(4))


async def test_a_heartbeat_of_an_unknown_worker_stores_nothing(store: ScheduledCommandStore) -> None:
    assert await store.touch_worker("nobody", now=at(1), state="running") is False
    assert await store.list_workers() == []


async def test_forgetting_deletes_only_workers_not_seen_since(store: ScheduledCommandStore) -> None:
    for worker_id, seen in (("old", -10), ("edge", 0), ("fresh", 10)):
        await store.register_worker(make_worker(worker_id, started_at=at(-20), last_seen_at=at(seen)))

    assert await store.forget_workers(seen_before=at(0)) == 1
    assert sorted(w.worker_id for w in await store.list_workers()) == ["edge", "fresh"]
    assert await store.touch_worker("old", now=at(11)) is False
    assert await store.forget_workers(seen_before=at(0)) == 0


async def test_a_heartbeat_keeps_a_worker_from_being_forgotten(store: ScheduledCommandStore) -> None:
    await store.register_worker(make_worker())
    await store.touch_worker("host-a:101:abc", now=at(100))

    assert await store.forget_workers(seen_before=at(50)) == 0
    assert len(await store.list_workers()) == 1


async def test_the_registry_is_shared_by_stores_on_one_database(store_factory: StoreFactory, tmp_path: Path) -> None:
    async with store_factory(tmp_path) as first, store_factory(tmp_path) as second:
        if not first.durable:
            return  # one process, one store: nothing to share
        await first.register_worker(make_worker())
        await second.touch_worker("host-a:101:abc", now=at(5))

        assert [w.last_seen_at for w in await first.list_workers()] == [at(5)]
