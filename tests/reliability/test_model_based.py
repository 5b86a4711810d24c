"""A model-based test: random sequences of operations against every store, compared with a reference model.

A hypothesis ``RuleBasedStateMachine`` schedules commands (random priority, delay, expiry, failures to come, retry
limit, queue and lock), schedules dependants after earlier entries (on success or on any outcome), cancels,
requeues, pauses and resumes a queue, sets and clears its ``max_running``, moves a
ManualClock, runs the worker until idle, and "crashes" workers (a ghost worker claims due entries and abandons them,
so their leases expire). The model is a plain dict of what each entry should be. After every step the store must
agree with it: status, retry and attempt counts, executions per entry (exactly once per attempt, never while
CANCELLED, never for an abandoned claim), counts by status; nothing is lost.

Hypothesis' stateful tests are synchronous: the machine keeps an event loop of its own and runs each step's
coroutine to completion on it.
"""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from reliability_support import empty
from scheduling_app import Fail, FailHandler, Log, Record, RecordHandler, make_app

from scheduling import ScheduledCommandStatus, ScheduleOptions
from stores import MemoryStore, RedisStore, ScheduledCommandStore, SqlStore

S = ScheduledCommandStatus
RETRY_DELAY = timedelta(seconds=10)
LEASE = timedelta(seconds=60)


@dataclass
class Expected:
    """What the model expects of one entry."""

    key: str
    order: int
    priority: int
    due: datetime
    max_retries: int
    failures_left: int  #: attempts that will still raise (the Fail command); 0 for Record
    fails: bool
    expires_at: datetime | None
    queue: str = "default"
    lock: str | None = None
    status: S = S.PENDING
    retry_count: int = 0
    attempt_count: int = 0
    executions: int = 0
    lease_expires_at: datetime | None = None
    #: A dependant's parents not yet counted (``ScheduleOptions.after``), and its condition.
    waiting_for: list[str] | None = None
    on_success_only: bool = True

    def fail_attempt(self, now: datetime) -> None:
        """Record a failed (or lost) attempt: retry after RETRY_DELAY, or dead-letter."""
        self.attempt_count += 1
        if self.retry_count < self.max_retries:
            self.status, self.due = S.PENDING, now + RETRY_DELAY
        else:
            self.status = S.FAILED
        self.retry_count += 1
        self.lease_expires_at = None


StoreMaker = Callable[[Path], Coroutine[Any, Any, ScheduledCommandStore]]


class SchedulerModel(RuleBasedStateMachine):
    make_store: StoreMaker

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = tempfile.TemporaryDirectory()
        self.store = self.run(self.make_store(Path(self.directory.name)))
        self.app = make_app(
            store=self.store,
            handlers=[RecordHandler, FailHandler],
            retry_delay_base=RETRY_DELAY,
            exponential_backoff=False,
            lease_duration=LEASE,
            batch_size=1_000,
        )
        self.log = self.app.injector.get(Log)
        self.model: dict[str, Expected] = {}
        self.paused: set[str] = set()
        self.max_running: dict[str, int] = {}

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        try:
            self.run(self.store.close())
        finally:
            self.loop.close()
            self.directory.cleanup()

    @property
    def now(self) -> datetime:
        return self.app.clock.now()

    def due_pending(self) -> list[tuple[str, Expected]]:
        """The PENDING entries one claim takes now, in claim order (priority descending, due time, scheduling
        order): none of a paused queue, none whose lock a PROCESSING entry holds, one per lock, none past its queue's
        ``max_running`` (PROCESSING entries of the queue, a crashed worker's included, count)."""
        held = {e.lock for e in self.model.values() if e.status is S.PROCESSING and e.lock is not None}
        running: dict[str, int] = {}
        for e in self.model.values():
            if e.status is S.PROCESSING:
                running[e.queue] = running.get(e.queue, 0) + 1
        due = [
            (i, e)
            for i, e in self.model.items()
            if e.status is S.PENDING and e.due <= self.now and e.queue not in self.paused and e.lock not in held
        ]
        claimed = []
        for item in sorted(due, key=lambda item: (-item[1].priority, item[1].due, item[1].order)):
            lock, queue = item[1].lock, item[1].queue
            if lock is not None and lock in held:
                continue
            if running.get(queue, 0) >= self.max_running.get(queue, len(self.model) + 1):
                continue
            if lock is not None:
                held.add(lock)
            running[queue] = running.get(queue, 0) + 1
            claimed.append(item)
        return claimed

    def pick(self, data: st.DataObject) -> tuple[str, Expected]:
        entry_id = data.draw(st.sampled_from(list(self.model)))  # scheduling order: ids are random, replays not
        return entry_id, self.model[entry_id]

    # -- rules -------------------------------------------------------------------------------------------------

    @rule(
        priority=st.integers(-2, 2),
        delay=st.sampled_from([0, 0, 5, 30, 120]),
        failures=st.sampled_from([0, 0, 1, 3]),
        max_retries=st.integers(0, 2),
        expires_after=st.sampled_from([None, None, 20, 300]),
        queue=st.sampled_from(["default", "default", "slow"]),
        lock=st.sampled_from([None, None, "customer:1", "customer:2"]),
    )
    def schedule(
        self,
        priority: int,
        delay: int,
        failures: int,
        max_retries: int,
        expires_after: int | None,
        queue: str,
        lock: str | None,
    ) -> None:
        key = f"k{len(self.model)}"
        command = Fail(key=key, times=failures) if failures else Record(value=key)
        options = ScheduleOptions(
            priority=priority,
            delay=timedelta(seconds=delay),
            max_retries=max_retries,
            expires_after=timedelta(seconds=expires_after) if expires_after else None,
            queue=queue,
            lock=lock,
        )
        entry_id = self.run(self.app.scheduler.schedule(command, options))
        due = self.now + timedelta(seconds=delay)
        self.model[entry_id] = Expected(
            key=key,
            order=len(self.model),
            priority=priority,
            due=due,
            max_retries=max_retries,
            failures_left=failures,
            fails=bool(failures),
            expires_at=due + timedelta(seconds=expires_after) if expires_after else None,
            queue=queue,
            lock=lock,
        )

    @precondition(lambda self: self.model and self.store.supports_dependencies)
    @rule(data=st.data(), any_outcome=st.booleans())
    def schedule_after(self, data: st.DataObject, any_outcome: bool) -> None:
        """A dependant of one or two earlier entries: WAITING until they meet its condition."""
        parents = data.draw(st.lists(st.sampled_from(list(self.model)), min_size=1, max_size=2, unique=True))
        key = f"k{len(self.model)}"
        options = ScheduleOptions(after=parents, after_condition="any" if any_outcome else "success")
        entry_id = self.run(self.app.scheduler.schedule(Record(value=key), options))
        self.model[entry_id] = Expected(
            key=key,
            order=len(self.model),
            priority=0,
            due=self.now,
            max_retries=3,
            failures_left=0,
            fails=False,
            expires_at=None,
            status=S.WAITING,
            waiting_for=list(parents),
            on_success_only=not any_outcome,
        )
        self.resolve()

    def resolve(self) -> None:
        """What the parents' outcomes do to their WAITING dependants, to a fixed point (cancellations cascade)."""
        changed = True
        while changed:
            changed = False
            for expected in self.model.values():
                if expected.status is not S.WAITING or expected.waiting_for is None:
                    continue
                for parent in list(expected.waiting_for):
                    outcome = self.model[parent].status
                    if outcome not in (S.COMPLETED, S.FAILED, S.EXPIRED, S.CANCELLED):
                        continue
                    expected.waiting_for.remove(parent)
                    changed = True
                    if outcome is not S.COMPLETED and expected.on_success_only:
                        expected.status = S.CANCELLED
                        break
                if expected.status is S.WAITING and not expected.waiting_for:
                    expected.status = S.PENDING

    @rule(queue=st.sampled_from(["default", "slow"]), paused=st.booleans())
    def pause_or_resume(self, queue: str, paused: bool) -> None:
        if paused:
            self.run(self.app.scheduler.pause_queue(queue))
            self.paused.add(queue)
        else:
            self.run(self.app.scheduler.resume_queue(queue))
            self.paused.discard(queue)

    @rule(queue=st.sampled_from(["default", "slow"]), max_running=st.sampled_from([None, 1, 2]))
    def limit_queue(self, queue: str, max_running: int | None) -> None:
        self.run(self.app.scheduler.set_queue_limits(queue, max_running=max_running))
        if max_running is None:
            self.max_running.pop(queue, None)
        else:
            self.max_running[queue] = max_running

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        entry_id, expected = self.pick(data)
        cancellable = expected.status in (S.PENDING, S.WAITING)
        assert self.run(self.app.scheduler.cancel(entry_id)) is cancellable
        if cancellable:
            expected.status = S.CANCELLED
            self.resolve()

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def requeue(self, data: st.DataObject) -> None:
        entry_id, expected = self.pick(data)
        assert self.run(self.app.scheduler.requeue(entry_id)) is (expected.status is S.FAILED)
        if expected.status is S.FAILED:
            expected.status, expected.due, expected.retry_count, expected.expires_at = S.PENDING, self.now, 0, None

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def dismiss(self, data: st.DataObject) -> None:
        entry_id, expected = self.pick(data)
        dismissed = self.run(self.store.dismiss(entry_id, now=self.now))
        assert (dismissed is not None) is (expected.status is S.FAILED)
        if expected.status is S.FAILED:
            expected.status = S.CANCELLED
            self.resolve()

    @rule(seconds=st.sampled_from([1, 10, 30, 61, 300]))
    def advance_clock(self, seconds: int) -> None:
        self.app.clock.advance(timedelta(seconds=seconds))

    @rule(limit=st.integers(1, 3))
    def crash_a_worker(self, limit: int) -> None:
        """A ghost worker claims the first due entries and dies: their leases expire after LEASE."""
        claimed = self.run(self.store.claim_due(now=self.now, limit=limit, worker_id="ghost", lease_duration=LEASE))
        expected_ids = [i for i, _ in self.due_pending()[:limit]]
        assert [e.id for e in claimed] == expected_ids, "claims follow priority, due time, scheduling order"
        for entry in claimed:
            expected = self.model[entry.id]
            expected.status, expected.lease_expires_at = S.PROCESSING, self.now + LEASE

    @rule()
    def run_worker(self) -> None:
        now = self.now
        handled = 0
        for expected in self.model.values():  # recovery of expired leases: a lost attempt each
            if expected.status is S.PROCESSING and expected.lease_expires_at and expected.lease_expires_at <= now:
                expected.fail_attempt(now)
                handled += 1
        self.resolve()
        while due := self.due_pending():
            for _, expected in due:
                handled += 1
                if expected.expires_at is not None and expected.attempt_count == 0 and now >= expected.expires_at:
                    expected.status = S.EXPIRED
                    continue
                expected.executions += 1
                if expected.failures_left:
                    expected.failures_left -= 1
                    expected.fail_attempt(now)
                else:
                    expected.attempt_count += 1
                    expected.status = S.COMPLETED
            self.resolve()  # the dependants released by this round's outcomes are claimed by the next round
        assert self.run(self.app.service.run_until_idle()) == handled

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def check_audit_trail(self, data: st.DataObject) -> None:
        entry_id, expected = self.pick(data)
        attempts = self.run(self.app.scheduler.get_attempts(entry_id))
        assert [a.attempt for a in attempts] == list(range(1, expected.attempt_count + 1))
        assert sum(a.outcome == "completed" for a in attempts) == (expected.status is S.COMPLETED)
        assert sum(a.outcome == "lost" for a in attempts) == sum(a.worker_id == "ghost" for a in attempts)

    # -- invariants --------------------------------------------------------------------------------------------

    @invariant()
    def store_agrees_with_the_model(self) -> None:
        entries = {e.id: e for e in self.run(self.store.list_entries(limit=10_000))}
        assert sorted(entries) == sorted(self.model), "no entry lost, none invented"
        for entry_id, expected in self.model.items():
            entry = entries[entry_id]
            assert (entry.status, entry.retry_count, entry.attempt_count) == (
                expected.status,
                expected.retry_count,
                expected.attempt_count,
            ), expected
            if expected.status is S.PENDING:
                assert entry.scheduled_for == expected.due
            if expected.status is S.PROCESSING:
                assert (entry.lease_owner, entry.lease_expires_at) == ("ghost", expected.lease_expires_at)
        counts = self.run(self.store.count_by_status())
        assert counts == {status: sum(e.status is status for e in self.model.values()) for status in S}

    @invariant()
    def executions_match(self) -> None:
        for expected in self.model.values():
            ran = self.log.failures.get(expected.key, 0) if expected.fails else self.log.records.count(expected.key)
            assert ran == expected.executions, expected
            if expected.status is S.COMPLETED:
                assert ran >= 1


async def _memory(_: Path) -> ScheduledCommandStore:
    return MemoryStore()


async def _sqlite(directory: Path) -> ScheduledCommandStore:
    store = SqlStore(f"sqlite:///{directory / 'model.db'}")
    await store.open()
    return store


def _run(make_store: StoreMaker, max_examples: int) -> None:
    machine = type("Machine", (SchedulerModel,), {"make_store": staticmethod(make_store)})
    run_state_machine_as_test(
        machine,  # type: ignore[arg-type]
        settings=settings(max_examples=max_examples, stateful_step_count=30, deadline=None, database=None),
    )


def test_memory_store_behaves_like_the_model() -> None:
    _run(_memory, max_examples=60)


def test_sqlite_store_behaves_like_the_model() -> None:
    _run(_sqlite, max_examples=15)


def test_postgresql_store_behaves_like_the_model(module_postgres_url: str) -> None:
    async def postgresql(_: Path) -> ScheduledCommandStore:
        store = SqlStore(module_postgres_url)
        await empty(store)
        return store

    _run(postgresql, max_examples=8)


def test_redis_store_behaves_like_the_model(redis_url: str, redis_prefix: str) -> None:
    _run(_redis_maker(redis_url, redis_prefix), max_examples=15)


def _redis_maker(redis_url: str, redis_prefix: str) -> StoreMaker:
    """Each example on a key prefix of its own (under the test's, whose keys are deleted after the test)."""

    async def redis_store(_: Path) -> ScheduledCommandStore:
        store = RedisStore(redis_url, prefix=f"{redis_prefix}:{uuid.uuid4().hex[:8]}")
        await store.open()
        return store

    return redis_store


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_every_store_behaves_like_the_model(module_postgres_url: str, redis_url: str, redis_prefix: str) -> None:
    async def postgresql(_: Path) -> ScheduledCommandStore:
        store = SqlStore(module_postgres_url)
        await empty(store)
        return store

    redis_store = _redis_maker(redis_url, redis_prefix)
    for maker, examples in ((_memory, 2_000), (_sqlite, 300), (postgresql, 200)):
        _run(maker, max_examples=examples)
    _run(redis_store, max_examples=300)
