"""``schedule()`` outside a caller's session on SqlStore: the producers' fast path (one statement on PostgreSQL, one
hop to the database thread on SQLite) and its group commit, against real databases."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from scheduling_app import Record, make_app
from sqlalchemy import bindparam, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from scheduling import ScheduledCommandStatus, ScheduleOptions
from stores import SqlStore
from stores.errors import StoreUnavailableError
from stores.sql import to_async_url


def _conninfo(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def test_concurrent_schedules_each_return_once_their_entry_is_committed(sql_url: str) -> None:
    """Each of 100 coroutines scheduling at once finds its entry in another store (another connection) the moment
    its call returns."""
    async with SqlStore(sql_url) as store, SqlStore(sql_url) as other:
        app = make_app(store=store)

        async def one(i: int) -> str:
            entry_id = await app.scheduler.schedule(Record(value=str(i)))
            assert await other.get(entry_id) is not None, f"call {i} returned before its entry was committed"
            return entry_id

        ids = await asyncio.gather(*(one(i) for i in range(100)))
        assert len(set(ids)) == 100


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
async def test_concurrent_schedules_share_transactions(sql_url: str) -> None:
    """PostgreSQL: 100 calls arriving together are written in a few transactions, not 100 (rows written by one
    transaction share its ``xmin``)."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        await asyncio.gather(*(app.scheduler.schedule(Record(value=str(i))) for i in range(100)))
        async with store.engine.connect() as conn:
            transactions = (
                await conn.execute(text("SELECT count(DISTINCT xmin::text) FROM scheduled_commands"))
            ).scalar()
        assert transactions is not None and transactions <= 5, transactions


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
async def test_schedule_wakes_the_workers_of_other_processes(sql_url: str) -> None:
    """PostgreSQL: the NOTIFY sent with the insert reaches another store's listener, with the entry's due time."""
    async with SqlStore(sql_url) as store, SqlStore(sql_url) as other:
        heard: list[datetime] = []
        other.add_wakeup_listener(heard.append)
        await asyncio.sleep(0.2)  # the other store's LISTEN connection is up
        app = make_app(store=store)
        due = datetime.now(UTC) + timedelta(minutes=5)
        await app.scheduler.schedule(Record(value="x"), ScheduleOptions(scheduled_for=due))
        async with asyncio.timeout(5):
            while not any(abs(h - due) < timedelta(milliseconds=1) for h in heard):
                await asyncio.sleep(0.01)


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
async def test_a_lost_connection_is_store_unavailable_and_the_next_call_reconnects(sql_url: str) -> None:
    """PostgreSQL: the producers' connection killed by the server: the call raises StoreUnavailableError (the
    service's and the caller's retry signal), and the next call connects afresh."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        await app.scheduler.schedule(Record(value="before"))
        with psycopg.connect(_conninfo(sql_url), autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        failures = 0
        for _ in range(3):  # the pool's connections were killed too: a read may meet one first
            try:
                entry_id = await app.scheduler.schedule(Record(value="after"))
                break
            except StoreUnavailableError:
                failures += 1
        else:
            pytest.fail("scheduling never recovered")
        assert failures >= 1
        with psycopg.connect(_conninfo(sql_url)) as check:
            found = check.execute("SELECT count(*) FROM scheduled_commands WHERE id = %s", [entry_id]).fetchone()
        assert found == (1,)


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
async def test_text_the_database_cannot_hold_fails_only_its_own_call(sql_url: str) -> None:
    """PostgreSQL text cannot hold NUL (an entry built past validation): among calls written together, that one
    fails with the driver's error and the others are stored."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        template = await store.get(await app.scheduler.schedule(Record(value="template")))
        assert template is not None
        entries = [template.model_copy(update={"id": f"ok-{i}"}) for i in range(10)]
        entries.insert(5, template.model_copy(update={"id": "bad", "correlation_id": "nul\x00here"}))
        results = await asyncio.gather(*(store.add([e]) for e in entries), return_exceptions=True)
        assert isinstance(results[5], Exception), results[5]
        assert "0x00" in str(results[5]) or "NUL" in str(results[5])
        assert [r for i, r in enumerate(results) if i != 5] == [[f"ok-{i}"] for i in range(10)]
        assert sum((await store.count_by_status()).values()) == 11


async def test_sqlite_fast_path_writes_the_row_the_session_path_writes(tmp_path: Path) -> None:
    """SQLite: a command scheduled by ``schedule()`` and the same one through a caller's session are stored as the
    same values, timestamps to the character (their text order is their time order)."""
    url = f"sqlite:///{tmp_path / 'rows.db'}"
    async with SqlStore(url) as store:
        app = make_app(store=store)
        options = ScheduleOptions(
            scheduled_for=datetime(2031, 2, 3, 4, 5, 6, 7, tzinfo=UTC),
            correlation_id="c",
            metadata={"k": "v"},
            max_retries=1,
            priority=4,
        )
        fast = await app.scheduler.schedule(Record(value="same"), options)
        engine = create_async_engine(to_async_url(url))
        try:
            async with AsyncSession(engine) as session, session.begin():
                slow = await app.scheduler.schedule(Record(value="same"), options, session=session)
        finally:
            await engine.dispose()
        async with store.engine.connect() as conn:
            rows = {
                row.id: row._mapping
                for row in await conn.execute(
                    text("SELECT * FROM scheduled_commands WHERE id IN (:a, :b)"), {"a": fast, "b": slow}
                )
            }
        differing = {
            name: (rows[fast][name], rows[slow][name])
            for name in rows[fast]
            if name not in {"seq", "id", "created_at"} and rows[fast][name] != rows[slow][name]
        }
        assert differing == {}
        assert rows[fast]["scheduled_for"] == "2031-02-03 04:05:06.000007"


async def test_a_store_on_the_callers_engine_schedules_through_that_engine(sql_url: str) -> None:
    """On an engine the caller built (its connect_args or creator may hold what the URL does not), concurrent
    schedules go through the engine, share transactions, and wake another store's workers as well."""
    engine = create_async_engine(to_async_url(sql_url))
    try:
        async with SqlStore(engine) as store, SqlStore(sql_url) as other:
            heard: list[datetime] = []
            other.add_wakeup_listener(heard.append)
            await asyncio.sleep(0.2)  # the other store's LISTEN connection is up
            app = make_app(store=store)
            ids = await asyncio.gather(*(app.scheduler.schedule(Record(value=str(i))) for i in range(50)))
            for entry_id in ids:
                assert await other.get(entry_id) is not None
            async with asyncio.timeout(5):
                while not heard:
                    await asyncio.sleep(0.01)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
async def test_a_store_without_wakeup_listeners_does_not_listen_until_one_is_added(sql_url: str) -> None:
    """PostgreSQL: a process that only schedules opens no LISTEN connection (each NOTIFY would cost it and a server
    backend CPU for nothing); a listener added later hears what is scheduled from then on, and is woken once when
    listening starts, for what came before."""

    def listening_backends() -> int:
        """Backends whose last statement is the watcher's: its LISTEN, or the look at the earliest due time after."""
        with psycopg.connect(_conninfo(sql_url), autocommit=True) as admin:
            row = admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND (query LIKE 'LISTEN %%' OR query LIKE 'SELECT extract(epoch FROM min(scheduled_for))%%')"
            ).fetchone()
        return int(row[0]) if row else 0

    async with SqlStore(sql_url) as producer, SqlStore(sql_url) as worker:
        app = make_app(store=producer)
        await app.scheduler.schedule(Record(value="early"))
        await asyncio.sleep(0.2)  # time enough for a watcher that would listen to connect
        assert listening_backends() == 0
        heard: list[datetime] = []
        worker.add_wakeup_listener(heard.append)
        async with asyncio.timeout(5):
            while not heard:  # the wake-up of listening's start
                await asyncio.sleep(0.01)
        assert listening_backends() == 1
        due = datetime.now(UTC) + timedelta(minutes=3)
        await app.scheduler.schedule(Record(value="later"), ScheduleOptions(scheduled_for=due))
        async with asyncio.timeout(5):
            while not any(abs(h - due) < timedelta(milliseconds=1) for h in heard):
                await asyncio.sleep(0.01)


async def test_an_id_already_stored_is_a_value_error_naming_it(sql_url: str) -> None:
    """The fast path reports an id already stored as the batch path does: ValueError, "an id already exists"."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        held = await store.get(await app.scheduler.schedule(Record(value="held")))
        assert held is not None
        with pytest.raises(ValueError, match="an id already exists"):
            await store.add([held.model_copy(update={"command_type": "other"})])
        assert await store.get(held.id) == held


async def test_a_batch_of_producers_writes_the_rows_the_session_path_writes(sql_url: str) -> None:
    """A batch of concurrent calls (PostgreSQL: one JSON parameter, which leaves out NULL columns) stores each
    command as the same values as the caller's session path, with every option set and with none."""
    full = ScheduleOptions(
        delay=timedelta(minutes=5),
        expires_after=timedelta(hours=1),
        correlation_id="c",
        metadata={"k": "v", "é": "ü"},
        max_retries=1,
        priority=-4,
        timeout=timedelta(seconds=2.5),
        queue="mail",
        lock="account:7",
    )
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        for options in (full, ScheduleOptions()):
            fast = await asyncio.gather(*(app.scheduler.schedule(Record(value="same"), options) for _ in range(20)))
            async with AsyncSession(store.engine) as session, session.begin():
                slow = await app.scheduler.schedule(Record(value="same"), options, session=session)
            async with store.engine.connect() as conn:
                rows = {
                    row.id: row._mapping
                    for row in await conn.execute(
                        text("SELECT * FROM scheduled_commands WHERE id IN :ids").bindparams(
                            bindparam("ids", expanding=True)
                        ),
                        {"ids": [*fast, slow]},
                    )
                }
            for entry_id in fast:
                differing = {
                    name: (rows[entry_id][name], rows[slow][name])
                    for name in rows[slow]
                    if name not in {"seq", "id"} and rows[entry_id][name] != rows[slow][name]
                }
                assert differing == {}


async def test_sqlite_schedules_on_the_event_loop_while_the_write_lock_is_free_and_waits_on_a_thread_otherwise(
    tmp_path: Path,
) -> None:
    """SQLite: a batch is written on the event loop's thread when the write lock is free at once (no thread hop);
    while another process's connection holds the lock, the call waits for it on the producer thread, the event loop
    running meanwhile, and its entry is stored once the lock is released."""
    path = tmp_path / "store.db"
    before = _producer_threads()
    async with SqlStore(f"sqlite:///{path}") as store:
        app = make_app(store=store)
        first = await app.scheduler.schedule(Record(value="free"))
        assert await store.get(first) is not None
        assert not _producer_threads() - before  # written without a thread

        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
            waiting = asyncio.ensure_future(app.scheduler.schedule(Record(value="waits")))
            await asyncio.sleep(0.2)  # the loop runs on (this sleep ends) while the call waits for the lock
            assert not waiting.done()
            holder.execute("COMMIT")
        finally:
            holder.close()
        second = await asyncio.wait_for(waiting, timeout=30)
        stored = await store.get(second)
        assert stored is not None and stored.payload == '{"value":"waits"}'


async def test_sqlite_schedules_in_a_process_that_only_schedules_keep_the_wal_bounded(tmp_path: Path) -> None:
    """SQLite: the event loop's connection never checkpoints (a checkpoint fsyncs), so one batch in
    ``_THREAD_EVERY`` goes to the producer thread, whose commits checkpoint: 2,000 single schedules (about 75 MB of
    WAL frames unchecked) leave a WAL of a few megabytes."""
    path = tmp_path / "store.db"
    async with SqlStore(f"sqlite:///{path}") as store:
        app = make_app(store=store)
        for i in range(2000):
            await app.scheduler.schedule(Record(value=str(i)))
        wal = _size(Path(f"{path}-wal"))
        assert (await store.count_by_status())[ScheduledCommandStatus.PENDING] == 2000
    assert wal < 16 * 1024 * 1024, wal


def _size(path: Path) -> int:
    return path.stat().st_size


def _producer_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("sqlite-producer")}


async def test_sqlite_schedule_on_a_database_that_cannot_be_opened_is_store_unavailable(tmp_path: Path) -> None:
    """SQLite: the producer's connection failing to open (its directory removed under an open store) is the store
    being unavailable, as on every other path, not the driver's own error."""
    directory = tmp_path / "gone"
    directory.mkdir()
    async with SqlStore(f"sqlite:///{directory / 'store.db'}") as store:
        app = make_app(store=store)
        _remove(directory)
        with pytest.raises(StoreUnavailableError):
            await app.scheduler.schedule(Record(value="lost"))


def _remove(directory: Path) -> None:
    shutil.rmtree(directory)
