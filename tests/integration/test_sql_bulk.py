"""Bulk scheduling on SqlStore: ``schedule_many`` (a COPY on PostgreSQL) keeps every field, all or nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

import pytest
from pydantic import field_serializer
from scheduling_app import HANDLERS, START, Record, make_app
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from mediator import Command, CommandHandler
from scheduling import ScheduledCommandEntry, ScheduledCommandStatus, ScheduleOptions
from scheduling._sibling_entries import STREAM_CHUNK, STREAM_FROM
from scheduling.errors import PayloadTooLargeError
from scheduling.observer import SchedulingObserver
from stores import SqlStore
from stores.sql import to_async_url

#: Characters the COPY text format escapes, and some it does not need to.
AWKWARD = 'tab\tnewline\nreturn\rbackslash\\ quote" \\N é 漢字 🙂 end'


async def test_schedule_many_keeps_every_field(sql_url: str) -> None:
    """Every entry of a large batch is stored with its own payload and the batch's options, text unchanged."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        options = ScheduleOptions(
            delay=timedelta(minutes=5),
            priority=7,
            max_retries=1,
            expires_after=timedelta(hours=1),
            correlation_id=AWKWARD,
            metadata={"k\t": AWKWARD},
            timeout=timedelta(seconds=1.25),
        )
        values = [f"{AWKWARD} {i}" for i in range(2_500)]
        ids = await app.scheduler.schedule_many([Record(value=v) for v in values], options)
        assert len(set(ids)) == 2_500
        assert (await store.count_by_status())[ScheduledCommandStatus.PENDING] == 2_500
        for i in (0, 1, 1_234, 2_499):
            entry = await store.get(ids[i])
            assert entry is not None
            assert Record.model_validate_json(entry.payload).value == values[i]
            assert entry.status is ScheduledCommandStatus.PENDING
            assert entry.priority == 7
            assert entry.max_retries == 1
            assert entry.scheduled_for == START + timedelta(minutes=5)
            assert entry.created_at == START
            assert entry.expires_at == START + timedelta(minutes=5, hours=1)
            assert entry.correlation_id == AWKWARD
            assert entry.metadata == {"k\t": AWKWARD}
            assert entry.timeout_seconds == 1.25
            assert (entry.retry_count, entry.attempt_count, entry.lease_token) == (0, 0, None)


async def test_batch_with_an_id_already_stored_stores_nothing(sql_url: str) -> None:
    """A batch holding an id the store holds raises ValueError naming it, and none of the batch is stored."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        [first] = await app.scheduler.schedule_many([Record(value="first")])
        held = await store.get(first)
        assert held is not None
        fresh = [held.model_copy(update={"id": f"new-{i}"}) for i in range(50)]
        with pytest.raises(ValueError, match="an id already exists"):
            await store.add([*fresh, held])
        assert (await store.count_by_status())[ScheduledCommandStatus.PENDING] == 1
        assert await store.get("new-0") is None


async def test_bad_command_in_a_batch_stores_nothing(sql_url: str) -> None:
    """One command too large in a batch names its type and size, and nothing of the batch is stored."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store, max_payload_bytes=100)
        commands = [Record(value="ok") for _ in range(10)] + [Record(value="é" * 60)]
        with pytest.raises(PayloadTooLargeError, match=r"Record.*13\d bytes"):
            await app.scheduler.schedule_many(commands)
        assert sum((await store.count_by_status()).values()) == 0


async def test_bad_command_late_in_a_streamed_batch_stores_nothing(sql_url: str) -> None:
    """A batch large enough to be written while it is built (PostgreSQL's COPY under way): a bad command past the
    first chunks still fails the whole batch with its own error, and the store keeps working."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store, max_payload_bytes=100)
        commands = [Record(value=f"ok {i}") for i in range(STREAM_FROM + STREAM_CHUNK)]
        commands[STREAM_CHUNK * 2 + 7] = Record(value="é" * 60)
        with pytest.raises(PayloadTooLargeError, match=r"Record.*13\d bytes"):
            await app.scheduler.schedule_many(commands)
        assert sum((await store.count_by_status()).values()) == 0
        assert len(await app.scheduler.schedule_many(commands[:STREAM_FROM])) == STREAM_FROM


@pytest.mark.parametrize("count", [STREAM_FROM - 1, STREAM_FROM, STREAM_FROM + 1, STREAM_FROM + STREAM_CHUNK // 2])
async def test_a_batch_around_the_streaming_sizes_stores_each_command_once_in_order(sql_url: str, count: int) -> None:
    """Just below, at, and past the size from which a batch is streamed, with a last chunk that is full, of one, or
    half full: each command is stored once, under the id returned at its place."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        ids = await app.scheduler.schedule_many([Record(value=str(i)) for i in range(count)])
        assert len(ids) == len(set(ids)) == count
        assert (await store.count_by_status())[ScheduledCommandStatus.PENDING] == count
        for i in (0, 1, STREAM_CHUNK - 1, STREAM_CHUNK, count - 2, count - 1):
            entry = await store.get(ids[i])
            assert entry is not None and Record.model_validate_json(entry.payload).value == str(i)


class CancelWhileBuilt(Command[None]):
    """Cancels the task scheduling it when its payload is built, if ``cancel``: the cancellation then reaches the
    task at its next await, inside the store's write of the batch."""

    cancel: bool = False

    @field_serializer("cancel")
    def _cancel_the_caller(self, cancel: bool) -> bool:
        if cancel:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return cancel


class CancelWhileBuiltHandler(CommandHandler[CancelWhileBuilt, None]):
    async def handle(self, command: CancelWhileBuilt) -> None:
        return None


async def test_a_batch_cancelled_while_it_is_written_stores_nothing(sql_url: str) -> None:
    """The caller cancelled while its batch is being written (a chunk past the first already sent): nothing of the
    batch is stored, the caller sees its cancellation, and the store keeps working."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store, handlers=[*HANDLERS, CancelWhileBuiltHandler])
        commands = [CancelWhileBuilt() for _ in range(STREAM_FROM + STREAM_CHUNK)]
        commands[STREAM_CHUNK + 3] = CancelWhileBuilt(cancel=True)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_task(app.scheduler.schedule_many(commands))
        assert sum((await store.count_by_status()).values()) == 0
        again = [CancelWhileBuilt() for _ in range(STREAM_FROM)]
        assert len(await app.scheduler.schedule_many(again)) == STREAM_FROM


class _Scheduled(SchedulingObserver):
    def __init__(self) -> None:
        self.ids: list[str] = []

    def on_scheduled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        self.ids.extend(entry.id for entry in entries)


async def test_a_streamed_batch_is_announced_whole_and_wakes_the_workers(sql_url: str) -> None:
    """The observers hear every entry of a streamed batch, in order, and the store's listeners are woken with its
    earliest due time."""
    async with SqlStore(sql_url) as store:
        observer = _Scheduled()
        app = make_app(store=store, observers=[observer])
        woken: list[datetime] = []
        store.add_wakeup_listener(woken.append)
        ids = await app.scheduler.schedule_many([Record(value=str(i)) for i in range(STREAM_FROM)])
        assert observer.ids == ids
        assert len(set(ids)) == STREAM_FROM
        assert woken and set(woken) == {START}  # PostgreSQL also hears its own NOTIFY


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
async def test_text_the_database_cannot_hold_is_an_error_and_stores_nothing(sql_url: str) -> None:
    """PostgreSQL text cannot hold NUL: scheduling it fails with the driver's error, and nothing is stored."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        with pytest.raises(Exception, match=r"0x00|NUL"):
            await app.scheduler.schedule_many(
                [Record(value="a"), Record(value="b")], ScheduleOptions(correlation_id="nul\x00here")
            )
        assert sum((await store.count_by_status()).values()) == 0
        assert await app.scheduler.schedule(Record(value="after")) is not None  # the store still works


async def test_schedule_many_joins_async_and_sync_sessions(sql_url: str) -> None:
    """A batch scheduled through the caller's session (20: a COPY on PostgreSQL) exists if and only if the caller
    commits."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        engine = create_async_engine(to_async_url(sql_url))
        try:
            async with AsyncSession(engine) as session, session.begin():
                kept = await app.scheduler.schedule_many([Record(value=str(i)) for i in range(20)], session=session)
            async with AsyncSession(engine) as session, session.begin():
                dropped = await app.scheduler.schedule_many([Record(value=f"x{i}") for i in range(20)], session=session)
                await session.rollback()
        finally:
            await engine.dispose()
        parsed = to_async_url(sql_url)
        sync_url = parsed.set(drivername="sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg")
        sync_engine = create_engine(sync_url)
        try:
            with Session(sync_engine) as sync_session:
                kept_sync = await app.scheduler.schedule_many(
                    [Record(value=f"s{i}") for i in range(20)], session=sync_session
                )
                await asyncio.to_thread(sync_session.commit)
            with Session(sync_engine) as sync_session:
                dropped_sync = await app.scheduler.schedule_many([Record(value="s3")], session=sync_session)
                await asyncio.to_thread(sync_session.rollback)
        finally:
            sync_engine.dispose()
        assert all([await store.get(i) is not None for i in kept + kept_sync])
        assert all([await store.get(i) is None for i in dropped + dropped_sync])
        assert await app.service.run_until_idle() == 40
