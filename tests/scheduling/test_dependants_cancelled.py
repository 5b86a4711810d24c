"""A dependant cancelled because its parent failed, expired or was cancelled (and the cascade below it) is announced
exactly like an operator's cancel: a ``ScheduledCommandCancelled`` whose ``reason`` names the parent, and the
observers' ``on_cancelled`` (metrics), once each, from every path that ends a parent: a worker's outcome (batched
with others or not), lease recovery's lost attempt, ``cancel()`` and ``cancel_by_correlation_id()``. On MemoryStore,
SQLite and PostgreSQL (ManualClock, no sleeping through delays)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from injector import inject
from prometheus_client import CollectorRegistry
from scheduling_app import HANDLERS, START, App, Fail, Record, make_app
from sqlalchemy import text

from mediator import NotificationHandler
from scheduling import CommandScheduler, ScheduledCommandCancelled, ScheduleOptions
from scheduling.entries import ScheduledCommandEntry
from scheduling.metrics import PrometheusObserver
from scheduling.observer import SchedulingObserver
from stores import MemoryStore, ScheduledCommandStore, SqlStore


class Cancellations(SchedulingObserver):
    def __init__(self) -> None:
        self.ids: list[str] = []

    def on_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        self.ids += [entry.id for entry in entries]


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, new_postgres_database: Callable[[str, str], str]
) -> AsyncIterator[ScheduledCommandStore]:
    if request.param == "memory":
        opened: ScheduledCommandStore = MemoryStore()
    elif request.param == "sqlite":
        opened = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        opened = SqlStore(new_postgres_database(request.getfixturevalue("postgres_url"), "dependants_cancelled"))
    async with opened:
        yield opened


def cancelled_app(store: ScheduledCommandStore, **settings: object) -> tuple[App, Cancellations]:
    observer = Cancellations()
    return make_app(store=store, observers=[observer], **settings), observer


def announced(app: App) -> dict[str, str | None]:
    """command id -> reason, of every ScheduledCommandCancelled published; each id at most once."""
    notifications = app.notifications(ScheduledCommandCancelled)
    ids = [n.command_id for n in notifications]
    assert len(ids) == len(set(ids)), f"announced twice: {ids}"
    return {n.command_id: n.reason for n in notifications}


async def test_a_worker_that_dead_letters_a_parent_announces_the_cascade(store: ScheduledCommandStore) -> None:
    app, observer = cancelled_app(store, max_retries=0)
    parent = await app.scheduler.schedule(Fail(key="parent"))
    child = await app.scheduler.schedule(Record(value="child"), ScheduleOptions(after=parent))
    grandchild = await app.scheduler.schedule(Record(value="grandchild"), ScheduleOptions(after=child))
    cleanup = await app.scheduler.schedule(Record(value="cleanup"), ScheduleOptions(after=child, after_condition="any"))
    await app.service.run_until_idle()
    assert announced(app) == {
        child: f"ParentNotCompleted: parent {parent} ended FAILED",
        grandchild: f"ParentNotCompleted: parent {child} ended CANCELLED",
    }
    assert sorted(observer.ids) == sorted([child, grandchild])
    assert app.log.records == ["cleanup"]  # released by the cancellation ("any"), and run
    [note] = [n for n in app.notifications(ScheduledCommandCancelled) if n.command_id == child]
    assert note.occurred_at == START and note.command_type.endswith("Record")
    assert cleanup not in announced(app)


async def test_outcomes_written_in_one_batch_announce_each_dependant_once(store: ScheduledCommandStore) -> None:
    app, observer = cancelled_app(store, max_retries=0, max_concurrency=8)
    parents = [await app.scheduler.schedule(Fail(key=f"p{i}")) for i in range(6)]
    children = [await app.scheduler.schedule(Record(value=p), ScheduleOptions(after=p)) for p in parents]
    both = await app.scheduler.schedule(Record(value="both"), ScheduleOptions(after=parents[:2]))
    await app.service.run_until_idle()
    reasons = announced(app)
    assert sorted(reasons) == sorted([*children, both])
    for parent, child in zip(parents, children, strict=True):
        assert reasons[child] == f"ParentNotCompleted: parent {parent} ended FAILED"
    assert sorted(observer.ids) == sorted([*children, both])


async def test_lease_recovery_that_dead_letters_a_parent_announces_its_dependant(store: ScheduledCommandStore) -> None:
    app, observer = cancelled_app(store)
    parent = await app.scheduler.schedule(Record(value="orphan"), ScheduleOptions(max_retries=0))
    child = await app.scheduler.schedule(Record(value="child"), ScheduleOptions(after=parent))
    [claimed] = await store.claim_due(now=START, limit=1, worker_id="dead", lease_duration=timedelta(seconds=60))
    assert claimed.id == parent
    app.clock.advance(timedelta(minutes=2))
    await app.service.run_until_idle()
    assert announced(app) == {child: f"ParentNotCompleted: parent {parent} ended FAILED"}
    assert observer.ids == [child]


async def test_an_operator_cancel_announces_the_parent_and_its_dependants(store: ScheduledCommandStore) -> None:
    app, observer = cancelled_app(store)
    parent = await app.scheduler.schedule(Record(value="parent"), ScheduleOptions(delay=60))
    child = await app.scheduler.schedule(Record(value="child"), ScheduleOptions(after=parent))
    assert await app.scheduler.cancel(parent)
    assert announced(app) == {parent: None, child: f"ParentNotCompleted: parent {parent} ended CANCELLED"}
    assert sorted(observer.ids) == sorted([parent, child])


async def test_a_correlation_cancel_announces_the_dependants_too(store: ScheduledCommandStore) -> None:
    registry = CollectorRegistry()
    metrics = PrometheusObserver(registry)
    app = make_app(store=store, observers=[metrics])
    options = ScheduleOptions(delay=60, correlation_id="order-9")
    parents = [await app.scheduler.schedule(Record(value=str(i)), options) for i in range(2)]
    child = await app.scheduler.schedule(Record(value="child"), ScheduleOptions(after=parents))
    assert await app.scheduler.cancel_by_correlation_id("order-9") == 2
    assert announced(app)[child] in {f"ParentNotCompleted: parent {p} ended CANCELLED" for p in parents}
    assert len(announced(app)) == 3
    record_type = (await app.scheduler.get_status(child) or pytest.fail("gone")).command_type
    labels = {"command_type": record_type}
    cancelled_total = f"{metrics.namespace}_commands_cancelled_total"
    assert registry.get_sample_value(cancelled_total, labels) == 3  # the dependant counts with its parents


@pytest.mark.parametrize("where", ["claim", "recovery"])
async def test_an_unreadable_parent_dead_lettered_by_the_store_announces_its_dependant(
    store: ScheduledCommandStore, where: str
) -> None:
    """A parent row written unreadable behind the library's back (a creation time no datetime holds) is
    dead-lettered by the claim that meets it, or by recovery taking over its lease: its dependant is cancelled and
    the cancellation announced, as for any dead letter."""
    if not isinstance(store, SqlStore):
        pytest.skip("only raw SQL can write a row the store cannot read")
    app, observer = cancelled_app(store)
    parent = await app.scheduler.schedule(Record(value="parent"))
    child = await app.scheduler.schedule(Record(value="child"), ScheduleOptions(after=parent))
    if where == "recovery":
        [claimed] = await store.claim_due(now=START, limit=1, worker_id="dead", lease_duration=timedelta(seconds=60))
        assert claimed.id == parent
        app.clock.advance(timedelta(minutes=2))
    unreadable = "'infinity'::timestamptz" if store.is_postgresql else "'x'"  # no datetime reads back from it
    async with store.engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE scheduled_commands SET created_at = {unreadable} WHERE id = :id"), {"id": parent}
        )
    await app.service.run_until_idle()
    assert announced(app) == {child: f"ParentNotCompleted: parent {parent} ended FAILED"}
    assert observer.ids == [child]


#: announced entry id -> the entry its subscriber cancels in turn (set by the test below).
CANCEL_NEXT: dict[str, str] = {}


class CancelNext(NotificationHandler[ScheduledCommandCancelled]):
    @inject
    def __init__(self, scheduler: CommandScheduler) -> None:
        self.scheduler = scheduler

    async def handle(self, notification: ScheduledCommandCancelled) -> None:
        following = CANCEL_NEXT.pop(notification.command_id, None)
        if following is not None:
            assert await self.scheduler.cancel(following)


async def test_a_subscriber_that_cancels_in_turn_is_announced_too_and_nothing_waits_forever(
    store: ScheduledCommandStore,
) -> None:
    """Announcements published side by side (MemoryStore reports each dependant apart) whose subscribers each cancel
    another parent: each ``cancel()`` waits only for the announcements it started, so the subscribers do not wait
    for each other."""
    app = make_app(store=store, handlers=[*HANDLERS, CancelNext])
    pair = ScheduleOptions(delay=60, correlation_id="pair")
    parents = [await app.scheduler.schedule(Record(value=str(i)), pair) for i in range(2)]
    parents += [await app.scheduler.schedule(Record(value=str(i)), ScheduleOptions(delay=60)) for i in range(2, 4)]
    children = [await app.scheduler.schedule(Record(value=p), ScheduleOptions(after=p)) for p in parents]
    CANCEL_NEXT.update({children[0]: parents[2], children[1]: parents[3]})
    await app.scheduler.schedule(Record(value="both"), ScheduleOptions(after=parents[:2], after_condition="any"))
    async with asyncio.timeout(10):
        assert await app.scheduler.cancel_by_correlation_id("pair") == 2
        await app.service.run_until_idle()  # "both" runs; the announcements started meanwhile are published
    assert set(announced(app)) == {*parents, *children}
    assert app.log.records == ["both"]
    assert not CANCEL_NEXT
