"""``SyncScheduler`` on SQLite and PostgreSQL: the scheduler's operations from synchronous code, the caller's
transaction joined, the same validation as ``await scheduler.schedule()``, the schema checked."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from scheduling_app import START, Add, Fail, Record, Unhandled, make_app
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from sync_support import blocking_url

from mediator import HandlerNotFoundError
from scheduling import ScheduledCommandStatus, ScheduleOptions
from scheduling.errors import NotACommandError, PayloadTooLargeError
from scheduling.observer import SchedulingObserver
from scheduling.sync import SyncScheduler
from stores import MemoryStore, SqlStore
from stores.errors import SchemaVersionError, SessionNotSupportedError, StoreUnavailableError, UnsupportedFeatureError
from stores.sql._tables import SCHEMA_VERSION


class Seen(SchedulingObserver):
    def __init__(self) -> None:
        self.scheduled: list[str] = []
        self.cancelled: list[str] = []

    def on_scheduled(self, entries):  # type: ignore[no-untyped-def]
        self.scheduled += [e.id for e in entries]

    def on_cancelled(self, entries):  # type: ignore[no-untyped-def]
        self.cancelled += [e.id for e in entries]


@pytest.fixture
def sync(sql_url: str) -> Iterator[SyncScheduler]:
    app = make_app(store=SqlStore(sql_url))
    with app.injector.get(SyncScheduler) as scheduler:
        yield scheduler


def test_schedule_status_and_cancel(sql_url: str) -> None:
    seen = Seen()
    app = make_app(store=SqlStore(sql_url), observers=[seen])
    with app.injector.get(SyncScheduler) as scheduler:
        assert app.injector.get(SyncScheduler) is scheduler  # one per injector
        command_id = scheduler.schedule(
            Record(value="later"),
            ScheduleOptions(delay=timedelta(minutes=5), priority=3, correlation_id="order-7", metadata={"k": "v"}),
        )
        entry = scheduler.get_status(command_id)
        assert entry is not None
        assert entry.status is ScheduledCommandStatus.PENDING
        assert entry.command_type == "scheduling_app.Record"
        assert entry.scheduled_for == START + timedelta(minutes=5)
        assert (entry.priority, entry.correlation_id, entry.metadata) == (3, "order-7", {"k": "v"})
        assert entry.max_retries == app.settings.max_retries

        assert scheduler.cancel(command_id) is True
        assert scheduler.cancel(command_id) is False  # no longer PENDING
        cancelled = scheduler.get_status(command_id)
        assert cancelled is not None and cancelled.status is ScheduledCommandStatus.CANCELLED
        assert cancelled.completed_at == START
        assert scheduler.get_status("no-such-id") is None
        assert seen.scheduled == [command_id]
        assert seen.cancelled == [command_id]


def test_the_async_store_reads_what_the_sync_one_wrote(sync: SyncScheduler, sql_url: str) -> None:
    ids = sync.schedule_many([Record(value="a"), Add(a=1, b=2)])

    async def read() -> list[str]:
        async with SqlStore(sql_url) as store:
            entries = [await store.get(i) for i in ids]
        return [e.payload for e in entries if e is not None]

    assert asyncio.run(read()) == ['{"value":"a"}', '{"a":1,"b":2}']


def test_idempotency_key_returns_the_first_id(sync: SyncScheduler) -> None:
    options = ScheduleOptions(idempotency_key="welcome:ada")
    first = sync.schedule(Record(value="1"), options)
    assert sync.schedule(Record(value="2"), options) == first
    entry = sync.get_status(first)
    assert entry is not None and entry.payload == '{"value":"1"}'


def test_cancel_by_correlation_id(sync: SyncScheduler) -> None:
    options = ScheduleOptions(correlation_id="order-1", delay=timedelta(hours=1))
    sync.schedule_many([Record(value="a"), Record(value="b")], options)
    other = sync.schedule(Record(value="c"), ScheduleOptions(correlation_id="order-2"))
    assert sync.cancel_by_correlation_id("order-1") == 2
    assert sync.cancel_by_correlation_id("order-1") == 0
    entry = sync.get_status(other)
    assert entry is not None and entry.status is ScheduledCommandStatus.PENDING


@pytest.mark.parametrize(
    ("commands", "options"),
    [
        ([Unhandled()], None),
        (["not a command"], None),
        ([Record(value="x" * 2_000)], None),
        ([Record(value="a"), Record(value="b")], ScheduleOptions(idempotency_key="shared")),
        ([Add(a=1, b=2)], ScheduleOptions(delay=timedelta(days=365 * 8000))),
    ],
    ids=["no handler", "not a command", "too large", "shared key", "past 9999"],
)
def test_validation_is_the_async_schedulers(sql_url: str, commands: list[object], options: object) -> None:
    """The same error, with the same message, as ``await scheduler.schedule_many()``; nothing stored."""
    app = make_app(store=SqlStore(sql_url), max_payload_bytes=1_024)

    async def async_error() -> BaseException:
        try:
            await app.scheduler.schedule_many(commands, options)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - compared below
            return exc
        raise AssertionError("the async scheduler accepted it")

    expected = asyncio.run(async_error())
    assert isinstance(expected, HandlerNotFoundError | NotACommandError | PayloadTooLargeError | ValueError)
    with app.injector.get(SyncScheduler) as scheduler:
        with pytest.raises(type(expected)) as raised:
            scheduler.schedule_many(commands, options)  # type: ignore[arg-type]
        assert str(raised.value) == str(expected)
    engine = create_engine(blocking_url(sql_url))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM scheduled_commands")).scalar_one() == 0
    finally:
        engine.dispose()


def test_session_rolled_back_stores_nothing_and_committed_runs(sql_url: str) -> None:
    app = make_app(store=SqlStore(sql_url))
    scheduler = app.injector.get(SyncScheduler)
    engine = create_engine(blocking_url(sql_url))
    try:
        with Session(engine) as session:
            dropped = scheduler.schedule(Record(value="dropped"), session=session)
            assert scheduler.get_status(dropped) is None  # not visible before the caller commits
            session.rollback()
        with Session(engine) as session:
            kept = scheduler.schedule(Record(value="kept"), session=session)
            session.commit()
        with engine.begin() as connection:  # a Connection's transaction joins the same way
            also = scheduler.schedule(Record(value="connection"), session=connection)
    finally:
        engine.dispose()
        scheduler.close()
    assert scheduler.get_status(dropped) is None
    assert asyncio.run(app.service.run_until_idle()) == 2
    assert sorted(app.log.records) == ["connection", "kept"]
    for command_id in (kept, also):
        entry = scheduler.get_status(command_id)
        assert entry is not None and entry.status is ScheduledCommandStatus.COMPLETED
    scheduler.close()


def test_commit_wakes_a_sleeping_worker(sql_url: str) -> None:
    """The worker sleeps with the clock standing still: only the commit's wake-up (PostgreSQL: the NOTIFY sent in
    the transaction; SQLite: the watcher noticing the commit) makes it run the command."""
    app = make_app(store=SqlStore(sql_url))
    scheduler = app.injector.get(SyncScheduler)
    scheduler.open()

    async def main() -> None:
        async with app.service:
            await asyncio.sleep(0.2)  # the service is asleep; its next poll is far away
            engine = create_engine(blocking_url(sql_url))

            def schedule_in_a_transaction() -> str:
                with Session(engine) as session:
                    command_id = scheduler.schedule(Record(value="woken"), session=session)
                    session.commit()
                return command_id

            try:
                command_id = await asyncio.to_thread(schedule_in_a_transaction)
            finally:
                engine.dispose()
            async with asyncio.timeout(5):
                while (entry := await app.scheduler.get_status(command_id)) is None or entry.status != "COMPLETED":
                    await asyncio.sleep(0.01)

    try:
        asyncio.run(main())
    finally:
        scheduler.close()
    assert app.log.records == ["woken"]


def test_requeue_and_attempts(sql_url: str) -> None:
    app = make_app(store=SqlStore(sql_url))
    scheduler = app.injector.get(SyncScheduler)
    try:
        command_id = scheduler.schedule(Fail(key="k", times=1), ScheduleOptions(max_retries=0))
        assert scheduler.requeue(command_id) is False  # PENDING, not a dead letter
        asyncio.run(app.service.run_until_idle())
        failed = scheduler.get_status(command_id)
        assert failed is not None and failed.status is ScheduledCommandStatus.FAILED
        assert scheduler.requeue(command_id) is True
        again = scheduler.get_status(command_id)
        assert again is not None and again.status is ScheduledCommandStatus.PENDING and again.retry_count == 0
        asyncio.run(app.service.run_until_idle())
        attempts = scheduler.get_attempts(command_id)
        assert [a.outcome for a in attempts] == ["failed", "completed"]
        assert [a.attempt for a in attempts] == [1, 2]
    finally:
        scheduler.close()


def test_session_on_another_database_is_refused(tmp_path: Path) -> None:
    app = make_app(store=SqlStore(f"sqlite:///{tmp_path / 'store.db'}"))
    engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
    with app.injector.get(SyncScheduler) as scheduler:
        try:
            with Session(engine) as session, pytest.raises(SessionNotSupportedError, match=r"app\.db"):
                scheduler.schedule(Record(value="x"), session=session)
        finally:
            engine.dispose()
        with pytest.raises(SessionNotSupportedError, match="not a SQLAlchemy Session"):
            scheduler.schedule(Record(value="x"), session=object())


def test_memory_store_is_refused() -> None:
    app = make_app(store=MemoryStore())
    with pytest.raises(TypeError, match=r"needs a SqlStore \(SQLite or PostgreSQL\), not MemoryStore"):
        app.injector.get(SyncScheduler)


def test_schema_is_created_on_first_use_by_the_async_stores_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    app = make_app(store=SqlStore(url))
    with app.injector.get(SyncScheduler) as scheduler:
        command_id = scheduler.schedule(Record(value="x"))
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version FROM scheduled_commands_schema")).scalar_one() == SCHEMA_VERSION
            assert conn.execute(text("SELECT id FROM scheduled_commands")).scalar_one() == command_id
    finally:
        engine.dispose()


def test_schema_is_created_from_a_thread_running_an_event_loop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    scheduler = make_app(store=SqlStore(url)).injector.get(SyncScheduler)

    async def inside_a_loop() -> str:
        return scheduler.schedule(Record(value="x"))

    try:
        assert asyncio.run(inside_a_loop())
    finally:
        scheduler.close()


def test_newer_schema_is_refused(sql_url: str) -> None:
    asyncio.run(_migrate(sql_url))
    engine = create_engine(blocking_url(sql_url))
    set_version = text("UPDATE scheduled_commands_schema SET version = :v")
    try:
        with engine.begin() as conn:
            conn.execute(set_version, {"v": SCHEMA_VERSION + 1})
        scheduler = make_app(store=SqlStore(sql_url)).injector.get(SyncScheduler)

        async def async_error() -> str:
            with pytest.raises(SchemaVersionError) as raised:
                await SqlStore(sql_url).open()
            return str(raised.value)

        expected = asyncio.run(async_error())
        with pytest.raises(SchemaVersionError) as raised:
            scheduler.schedule(Record(value="x"))
        assert str(raised.value) == expected  # the async store's error, word for word
        assert f"schema version {SCHEMA_VERSION + 1}" in expected
        scheduler.close()
    finally:
        with engine.begin() as conn:  # the PostgreSQL database is shared by the run's tests
            conn.execute(set_version, {"v": SCHEMA_VERSION})
        engine.dispose()


async def _migrate(url: str) -> None:
    store = SqlStore(url)
    await store.migrate()
    await store.close()


def test_concurrent_threads_share_one_scheduler(sync: SyncScheduler) -> None:
    ids: list[str] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(10):
            command_id = sync.schedule(Record(value=f"{n}-{i}"))
            with lock:
                ids.append(command_id)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 40
    assert all(sync.get_status(i) is not None for i in ids)


def test_first_use_inside_a_transaction_holding_sqlites_lock_says_what_to_do(tmp_path: Path) -> None:
    """Creating the tables needs SQLite's write lock; a caller's transaction that holds it gets an error saying to
    open the scheduler at start-up (after SQLite's lock timeout, not a hang)."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    scheduler = make_app(store=SqlStore(url)).injector.get(SyncScheduler)
    engine = create_engine(url)
    try:
        with Session(engine) as session:
            session.execute(text("CREATE TABLE orders (id INTEGER PRIMARY KEY)"))
            session.execute(text("INSERT INTO orders VALUES (1)"))  # the caller's transaction holds the lock
            with pytest.raises(StoreUnavailableError, match=r"call SyncScheduler\.open\(\) at start-up"):
                scheduler.schedule(Record(value="x"), session=session)
    finally:
        engine.dispose()
        scheduler.close()


def test_workflows_are_left_to_the_async_scheduler(sql_url: str) -> None:
    """SyncScheduler refuses ``after=`` (it would store a plain entry) and leaves an entry of a workflow uncancelled,
    saying so: its dependants are resolved by the async store in the transaction of the cancel."""
    app = make_app(store=SqlStore(sql_url))
    with app.injector.get(SyncScheduler) as scheduler:
        parent = scheduler.schedule(Record(value="parent"), ScheduleOptions(delay=timedelta(hours=1)))
        with pytest.raises(UnsupportedFeatureError, match=r"ScheduleOptions\.after"):
            scheduler.schedule(Record(value="child"), ScheduleOptions(after=parent))

        async def add_child() -> str:
            return await app.scheduler.schedule(Record(value="child"), ScheduleOptions(after=parent))

        child = asyncio.run(add_child())
        for entry_id in (parent, child):
            with pytest.raises(UnsupportedFeatureError, match=r"CommandScheduler\.cancel"):
                scheduler.cancel(entry_id)
        entry = scheduler.get_status(child)
        assert entry is not None and entry.status is ScheduledCommandStatus.WAITING
