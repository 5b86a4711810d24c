"""The worker registry seen from the application: a service registers itself, heartbeats with its lease
renewals, says when it stops, and is shown gone once it misses its renewals; entries of a gone worker are stuck."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import timedelta

import pytest
from scheduling_app import START, App, Block, Record, eventually, make_app

from scheduling import ScheduleOptions, WaitingForWorker, WorkerInfo
from scheduling.codec import command_type_name
from scheduling.workers import count_stuck, worker_state
from stores import MemoryStore
from stores.errors import StoreUnavailableError
from stores.workers import StoredWorker

LEASE = timedelta(seconds=60)


def stored(worker_id: str = "other", **overrides: object) -> StoredWorker:
    fields: dict[str, object] = {
        "worker_id": worker_id,
        "host": "elsewhere",
        "pid": 4242,
        "started_at": START,
        "last_seen_at": START,
        "lease_duration": LEASE,
    }
    return StoredWorker.model_validate(fields | overrides)


async def only_worker(app: App) -> WorkerInfo:
    workers: list[WorkerInfo] = await app.scheduler.list_workers()
    assert len(workers) == 1, workers
    return workers[0]


async def registered(app: App) -> bool:
    return len(await app.scheduler.list_workers()) == 1


async def test_a_running_service_registers_itself() -> None:
    app = make_app()
    async with app.service:
        await eventually(lambda: registered(app))
        worker = await only_worker(app)

    assert worker.worker_id == "worker-1"
    assert (worker.host, worker.pid) == (socket.gethostname(), os.getpid())
    assert command_type_name(Record) in worker.command_types
    assert list(worker.command_types) == sorted(worker.command_types)
    assert (worker.queues, worker.started_at, worker.last_seen_at) == ((), START, START)
    assert (worker.state, worker.running) == ("running", 0)


async def test_the_heartbeat_keeps_a_worker_running_past_many_lease_durations() -> None:
    app = make_app()
    async with app.service:
        await eventually(lambda: registered(app))
        for _ in range(10):  # ten minutes: ten lease durations
            app.clock.advance(app.settings.heartbeat_interval)
            now = app.clock.now()
            await eventually(lambda now=now: _last_seen_is(app, now))
        assert (await only_worker(app)).state == "running"


async def _last_seen_is(app: App, now: object) -> bool:
    return (await only_worker(app)).last_seen_at == now


async def test_a_graceful_stop_shows_stopping_while_draining_then_gone() -> None:
    app = make_app(shutdown_grace=timedelta(seconds=30))
    async with app.service:
        await app.scheduler.schedule(Block(key="long"))
        await eventually(lambda: _true(app.log.started == ["long"]))
        assert (await only_worker(app)).running == 1
        stopping = asyncio.create_task(app.service.stop())
        await eventually(lambda: _state_is(app, "stopping"))
        app.log.gate.set()
        await stopping
    worker = await only_worker(app)
    assert (worker.state, worker.running) == ("gone", 0)


async def _state_is(app: App, state: str) -> bool:
    return (await only_worker(app)).state == state


async def _true(value: bool) -> bool:
    return value


@pytest.mark.parametrize(
    ("state", "seen_ago", "expected"),
    [
        ("running", timedelta(0), "running"),
        ("running", LEASE, "running"),  # missed renewals, but not yet every one of a lease
        ("running", LEASE + timedelta(microseconds=1), "gone"),
        ("stopping", timedelta(seconds=5), "stopping"),
        ("stopping", LEASE * 2, "gone"),
        ("stopped", timedelta(0), "gone"),
    ],
)
def test_a_worker_is_gone_once_stopped_or_unseen_for_its_lease(state: str, seen_ago: timedelta, expected: str) -> None:
    worker = stored(state=state, last_seen_at=START)
    assert worker_state(worker, START + seen_ago) == expected


async def test_a_worker_that_died_holding_an_entry_is_gone_and_its_entry_stuck_until_recovered() -> None:
    app = make_app()
    await app.store.register_worker(stored("dead-worker"))
    command_id = await app.scheduler.schedule(Record(value="orphan"))
    await app.store.claim_due(now=START, limit=1, worker_id="dead-worker", lease_duration=LEASE)

    [alive] = await app.scheduler.list_workers()
    assert (alive.state, alive.running) == ("running", 1)
    assert await count_stuck(app.store, app.clock.now()) == 0

    app.clock.advance(LEASE + timedelta(seconds=1))
    [dead] = await app.scheduler.list_workers()
    assert (dead.state, dead.running) == ("gone", 1)
    assert await count_stuck(app.store, app.clock.now()) == 1

    await app.service.run_until_idle()  # recovery takes it over
    assert await count_stuck(app.store, app.clock.now()) == 0
    assert (await app.scheduler.list_workers())[0].running == 0
    assert command_id


async def test_entries_no_live_worker_would_claim_are_reported_by_queue_and_type() -> None:
    """What ``status`` says is waiting for a worker, typed: a type no live worker handles, or a queue none claims."""
    app = make_app()
    record, block = command_type_name(Record), command_type_name(Block)
    await app.store.register_worker(stored("old", queues=("default",), command_types=(record,)))
    await app.scheduler.schedule(Record(value="handled"))
    await app.scheduler.schedule(Record(value="elsewhere"), ScheduleOptions(queue="reports"))
    await app.scheduler.schedule(Block(key="new"))
    await app.scheduler.schedule(Block(key="later"), ScheduleOptions(delay=timedelta(minutes=5)))  # not yet due
    app.clock.advance(timedelta(seconds=1))

    waiting: list[WaitingForWorker] = await app.scheduler.waiting_for_workers()
    assert waiting == [
        WaitingForWorker(queue="default", command_type=block, count=1),
        WaitingForWorker(queue="reports", command_type=record, count=1),
    ]

    await app.store.register_worker(stored("new", last_seen_at=app.clock.now(), command_types=(block, record)))
    assert await app.scheduler.waiting_for_workers() == []

    app.clock.advance(timedelta(minutes=6))  # both gone: every due entry waits, the one due meanwhile too
    assert [(w.queue, w.command_type, w.count) for w in await app.scheduler.waiting_for_workers()] == [
        ("default", block, 2),
        ("default", record, 1),
        ("reports", record, 1),
    ]


async def test_workers_gone_for_longer_than_the_retention_are_forgotten_at_start() -> None:
    store = MemoryStore()
    app = make_app(store=store, worker_retention=timedelta(hours=2))
    await store.register_worker(stored("long-gone", last_seen_at=START - timedelta(hours=3)))
    await store.register_worker(stored("recently-gone", last_seen_at=START - timedelta(hours=1), state="stopped"))
    async with app.service:
        await eventually(lambda: _ids_are(app, ["recently-gone", "worker-1"]))
        ids = [worker.worker_id for worker in await app.scheduler.list_workers()]
    assert sorted(ids) == ["recently-gone", "worker-1"]


async def _ids_are(app: App, ids: list[str]) -> bool:
    return sorted(worker.worker_id for worker in await app.scheduler.list_workers()) == ids


async def test_a_worker_forgotten_while_alive_registers_again_on_its_next_heartbeat() -> None:
    app = make_app()
    async with app.service:
        await eventually(lambda: registered(app))
        assert await app.store.forget_workers(seen_before=START + timedelta(days=1)) == 1
        app.clock.advance(app.settings.heartbeat_interval)
        await eventually(lambda: registered(app))
        assert (await only_worker(app)).last_seen_at == app.clock.now()


class _RegistryAwayOnce(MemoryStore):
    """A memory store whose first registration fails as a store that is away for a moment does."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def register_worker(self, worker: StoredWorker) -> None:
        if not self.failed:
            self.failed = True
            raise StoreUnavailableError("memory://", "connection refused")
        await super().register_worker(worker)


async def test_a_registration_that_fails_is_made_on_the_next_heartbeat_and_the_worker_runs_meanwhile() -> None:
    store = _RegistryAwayOnce()
    app = make_app(store=store)
    async with app.service:
        command_id = await app.scheduler.schedule(Record(value="runs anyway"))
        await eventually(lambda: _true(app.log.records == ["runs anyway"]))
        assert store.failed and await app.scheduler.list_workers() == []
        app.clock.advance(app.settings.heartbeat_interval)
        await eventually(lambda: registered(app))
    assert command_id


async def test_run_until_idle_registers_no_worker(app: App) -> None:
    await app.scheduler.schedule(Record(value="once"))
    assert await app.service.run_until_idle() == 1
    assert await app.scheduler.list_workers() == []
