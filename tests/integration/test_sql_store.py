"""SqlStore beyond the contract: URLs, schema versioning, unreachable databases, transactional scheduling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from scheduling_app import START, Record, make_app
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from scheduling import ScheduledCommandStatus, ScheduleOptions
from stores import SqlStore
from stores.errors import SchemaVersionError, SessionNotSupportedError, StoreUnavailableError
from stores.sql import mask_url, to_async_url
from stores.sql._tables import SCHEMA_VERSION


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///scheduled.db", "sqlite+aiosqlite:///scheduled.db"),
        ("sqlite+aiosqlite:///a/b.db", "sqlite+aiosqlite:///a/b.db"),
        ("postgresql://u@h:5432/db", "postgresql+psycopg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
    ],
)
def test_urls_map_to_async_drivers(given: str, expected: str) -> None:
    """Users write plain URLs; the store picks the async driver."""
    assert to_async_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@localhost/db", "unsupported store URL scheme 'mysql'"),
        ("sqlite://", "in-memory SQLite database; use MemoryStore"),
        ("postgresql+asyncpg://u@h/db", "unsupported PostgreSQL driver 'asyncpg'"),
        ("not a url", "not a store URL"),
    ],
)
def test_unsupported_urls_are_refused_clearly(url: str, message: str) -> None:
    """A URL the store cannot use raises ValueError naming the problem."""
    with pytest.raises(ValueError, match=message):
        SqlStore(url)


def test_passwords_are_masked() -> None:
    """Descriptions and errors never show the password."""
    store = SqlStore("postgresql://app:s3cret@db.example:5432/jobs")
    assert "s3cret" not in store.description
    assert "***" in store.url
    assert "s3cret" not in mask_url("postgresql://app:s3cret@db.example/jobs")


async def test_unreachable_postgresql_is_one_clear_error() -> None:
    """open() against a closed port raises StoreUnavailableError naming the masked URL."""
    store = SqlStore("postgresql://app:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(StoreUnavailableError) as caught:
        await store.open()
    assert "postgresql+psycopg://app:***@127.0.0.1:1/nowhere" in str(caught.value)
    assert "s3cret" not in str(caught.value)


async def test_unwritable_sqlite_path_is_one_clear_error(tmp_path: Path) -> None:
    """A SQLite file in a directory that does not exist gives StoreUnavailableError."""
    store = SqlStore(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(StoreUnavailableError, match=r"missing does not exist"):
        await store.open()


async def test_schema_is_created_once_and_reopened(sql_url: str) -> None:
    """Opening twice, and by several stores at once, creates the schema once and keeps the data."""
    stores = [SqlStore(sql_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    app = make_app(store=stores[0])
    command_id = await app.scheduler.schedule(Record(value="kept"))
    await asyncio.gather(*(s.close() for s in stores))
    async with SqlStore(sql_url) as reopened:
        entry = await reopened.get(command_id)
    assert entry is not None
    assert entry.payload == '{"value":"kept"}'


async def test_stores_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL needs an exclusive lock that SQLite refuses at once (no busy wait) while another
    connection reads; four stores opening one new file together must still all open. Before the retry, about one
    file in ten failed here with "database is locked"."""
    for attempt in range(25):
        url = f"sqlite:///{tmp_path / f'new-{attempt}.db'}"
        stores = [SqlStore(url) for _ in range(4)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
        finally:
            await asyncio.gather(*(s.close() for s in stores))
        async with SqlStore(url) as reopened, reopened.engine.connect() as conn:
            assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"


async def test_newer_schema_is_refused(sql_url: str) -> None:
    """A database whose schema version is newer than the code raises SchemaVersionError with both versions."""
    async with SqlStore(sql_url) as store, store.engine.begin() as conn:
        await conn.execute(text("UPDATE scheduled_commands_schema SET version = :v"), {"v": SCHEMA_VERSION + 1})
    try:
        with pytest.raises(SchemaVersionError, match=rf"schema version {SCHEMA_VERSION + 1}, newer than"):
            await SqlStore(sql_url).open()
    finally:
        engine = create_engine(_sync_url(sql_url))
        with engine.begin() as conn:
            conn.execute(text("UPDATE scheduled_commands_schema SET version = :v"), {"v": SCHEMA_VERSION})
        engine.dispose()


async def test_datetimes_round_trip_as_utc(sql_url: str) -> None:
    """Every datetime comes back UTC-aware and equal to what was stored."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        command_id = await app.scheduler.schedule(
            Record(value="x"), ScheduleOptions(delay=timedelta(microseconds=123_456), expires_after=timedelta(days=1))
        )
        entry = await store.get(command_id)
    assert entry is not None
    assert entry.scheduled_for == START + timedelta(microseconds=123_456)
    assert entry.scheduled_for.tzinfo is UTC
    assert entry.expires_at == entry.scheduled_for + timedelta(days=1)


# -- transactional scheduling ----------------------------------------------------------------------------------


async def test_async_session_commit_schedules_and_rollback_does_not(sql_url: str) -> None:
    """With an AsyncSession, the entry exists if and only if the caller commits."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        engine = create_async_engine(to_async_url(sql_url))
        try:
            async with AsyncSession(engine) as session, session.begin():
                kept = await app.scheduler.schedule(Record(value="kept"), session=session)
            async with AsyncSession(engine) as session, session.begin():
                dropped = await app.scheduler.schedule(Record(value="dropped"), session=session)
                await session.rollback()
        finally:
            await engine.dispose()
        assert (await store.get(kept)) is not None
        assert (await store.get(dropped)) is None
        await app.service.run_until_idle()
        assert app.log.records == ["kept"]


def _sync_url(url: str) -> str:
    parsed = to_async_url(url)
    return parsed.set(
        drivername="sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    ).render_as_string(hide_password=False)


async def test_sync_session_commit_schedules_and_rollback_does_not(sql_url: str) -> None:
    """With a sync Session (run off the loop), the entry exists if and only if the caller commits."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        engine = create_engine(_sync_url(sql_url))
        try:
            with Session(engine) as session:
                kept = await app.scheduler.schedule(Record(value="kept"), session=session)
                await asyncio.to_thread(session.commit)
            with Session(engine) as session:
                dropped = await app.scheduler.schedule(Record(value="dropped"), session=session)
                await asyncio.to_thread(session.rollback)
        finally:
            engine.dispose()
        assert (await store.get(kept)) is not None
        assert (await store.get(dropped)) is None


async def test_commit_wakes_a_sleeping_worker(sql_url: str) -> None:
    """A command scheduled in the caller's transaction runs promptly once committed, with the clock standing still."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        engine = create_async_engine(to_async_url(sql_url))
        try:
            async with app.service:
                await asyncio.sleep(0.05)  # the service is asleep until its next poll
                async with AsyncSession(engine) as session, session.begin():
                    command_id = await app.scheduler.schedule(Record(value="woken"), session=session)
                async with asyncio.timeout(5):
                    while (entry := await store.get(command_id)) is None or entry.status != "COMPLETED":
                        await asyncio.sleep(0.01)
        finally:
            await engine.dispose()
    assert app.log.records == ["woken"]


async def test_session_on_another_database_kind_is_refused(tmp_path: Path, postgres_url: str) -> None:
    """A session bound to a different kind of database than the store is refused, naming the session's database."""
    async with SqlStore(f"sqlite:///{tmp_path / 'a.db'}") as store:
        app = make_app(store=store)
        engine = create_async_engine(to_async_url(postgres_url))
        try:
            async with AsyncSession(engine) as session:
                with pytest.raises(SessionNotSupportedError, match="another database than the store's"):
                    await app.scheduler.schedule(Record(value="x"), session=session)
        finally:
            await engine.dispose()


async def test_session_on_another_sqlite_file_is_refused(tmp_path: Path) -> None:
    """Same kind, other database: refused too, and nothing is written anywhere."""
    async with SqlStore(f"sqlite:///{tmp_path / 'store.db'}") as store:
        app = make_app(store=store)
        engine = create_engine(f"sqlite:///{tmp_path / 'app.db'}")
        try:
            with Session(engine) as session, pytest.raises(SessionNotSupportedError, match=r"app\.db"):
                await app.scheduler.schedule(Record(value="x"), session=session)
        finally:
            engine.dispose()
        assert sum((await store.count_by_status()).values()) == 0


async def test_sqlmodel_sessions_work_without_warnings(sql_url: str) -> None:
    """SQLModel's own Session and AsyncSession join the transaction too (no deprecation warning: warnings are
    errors in this test suite)."""
    from sqlmodel import Session as SQLModelSession
    from sqlmodel.ext.asyncio.session import AsyncSession as SQLModelAsyncSession

    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        async_engine = create_async_engine(to_async_url(sql_url))
        sync_engine = create_engine(_sync_url(sql_url))
        try:
            async with SQLModelAsyncSession(async_engine) as session:
                first = await app.scheduler.schedule(Record(value="async"), session=session)
                await session.commit()
            with SQLModelSession(sync_engine) as sync_session:
                second = await app.scheduler.schedule(Record(value="sync"), session=sync_session)
                await asyncio.to_thread(sync_session.commit)
        finally:
            await async_engine.dispose()
            sync_engine.dispose()
        assert await store.get(first) is not None
        assert await store.get(second) is not None


async def test_store_tables_stay_out_of_the_applications_metadata() -> None:
    """The store's tables have their own metadata: SQLModel.metadata.create_all()/drop_all() never touch them."""
    from sqlmodel import SQLModel

    from stores.sql._tables import metadata

    assert "scheduled_commands" not in SQLModel.metadata.tables
    assert {"scheduled_commands", "scheduled_command_attempts", "scheduled_commands_schema"} <= set(metadata.tables)


# -- the service on SQL ----------------------------------------------------------------------------------------


async def test_full_lifecycle_on_sql(sql_url: str) -> None:
    """Retry, dead letter, expiry, cancel and completion behave on SQL exactly as on the memory store."""
    from scheduling_app import Fail

    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        ok = await app.scheduler.schedule(Record(value="ok"))
        flaky = await app.scheduler.schedule(Fail(key="f", times=1))
        dead = await app.scheduler.schedule(Fail(key="d"), ScheduleOptions(max_retries=1))
        stale = await app.scheduler.schedule(
            Record(value="stale"), ScheduleOptions(delay=timedelta(seconds=1), expires_after=timedelta(seconds=1))
        )
        cancelled = await app.scheduler.schedule(Record(value="no"), ScheduleOptions(delay=timedelta(hours=1)))
        assert await app.scheduler.cancel(cancelled)
        for _ in range(4):
            await app.service.run_until_idle()
            app.clock.advance(timedelta(seconds=30))
        statuses = {i: (await store.get(i)).status for i in (ok, flaky, dead, stale, cancelled)}  # type: ignore[union-attr]
        assert statuses == {
            ok: ScheduledCommandStatus.COMPLETED,
            flaky: ScheduledCommandStatus.COMPLETED,
            dead: ScheduledCommandStatus.FAILED,
            stale: ScheduledCommandStatus.EXPIRED,
            cancelled: ScheduledCommandStatus.CANCELLED,
        }
        assert [a.outcome for a in await store.get_attempts(dead)] == ["failed", "failed"]
        assert datetime.now(UTC) > START  # the ManualClock, not the wall clock, drove all of the above


async def test_a_command_scheduled_by_another_process_wakes_the_worker(sql_url: str) -> None:
    """Two stores on one database (as two processes would be): scheduling through one wakes the other's sleeping
    worker, with the clock standing still (PostgreSQL: LISTEN/NOTIFY; SQLite: the data_version watcher)."""
    async with SqlStore(sql_url) as worker_store, SqlStore(sql_url) as other_store:
        worker = make_app(store=worker_store)
        scheduling_side = make_app(store=other_store, clock=worker.clock)
        async with worker.service:
            await asyncio.sleep(0.1)  # asleep until its next poll, which the ManualClock never reaches
            command_id = await scheduling_side.scheduler.schedule(Record(value="from elsewhere"))
            async with asyncio.timeout(5):
                while (entry := await worker_store.get(command_id)) is None or entry.status != "COMPLETED":
                    await asyncio.sleep(0.01)
    assert worker.log.records == ["from elsewhere"]


def test_one_application_runs_under_two_event_loops_in_turn(sql_url: str) -> None:
    """The same injector's store and service work under a second asyncio.run (scripts calling asyncio.run twice,
    a loop per test): locks, tasks and connections are made afresh for the new loop."""
    store = SqlStore(sql_url)
    app = make_app(store=store)

    async def schedule_and_run(value: str) -> str:
        async with store:  # opened and closed within each loop
            command_id = await app.scheduler.schedule(Record(value=value))
            async with app.service:
                async with asyncio.timeout(5):
                    while (entry := await store.get(command_id)) is None or entry.status != "COMPLETED":
                        await asyncio.sleep(0.01)
            return command_id

    ids = [asyncio.run(schedule_and_run("first")), asyncio.run(schedule_and_run("second"))]
    assert app.log.records == ["first", "second"]
    assert len(set(ids)) == 2


async def test_a_database_east_of_utc_reads_the_latest_due_time_exactly(
    postgres_url: str, new_postgres_database: Callable[[str, str], str]
) -> None:
    """A valid due time late on 9999-12-31 UTC is the year 10000 in Tokyo: our connections read in UTC whatever
    the database's time zone, so the entry reads back exactly and is not mistaken for a corrupt row."""
    url = new_postgres_database(postgres_url, "tz")
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET timezone = 'Asia/Tokyo'").format(sql.Identifier(make_url(url).database))
        )
    latest = datetime(9999, 12, 31, 23, 30, tzinfo=UTC)
    async with SqlStore(url) as store:
        app = make_app(store)
        command_id = await app.scheduler.schedule(Record(value="late"), ScheduleOptions(scheduled_for=latest))
        entry = await store.get(command_id)
        assert entry is not None
        assert entry.scheduled_for == latest
        assert entry.status is ScheduledCommandStatus.PENDING
        assert await store.next_due_at() == latest
