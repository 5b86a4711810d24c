"""Hostile input: rows put into the store behind the scheduler's back, and commands the scheduler must refuse.

Rows are inserted directly (SQL ``INSERT`` on SQLite and PostgreSQL, ``store.add`` of a raw entry on the
MemoryStore): unknown types, payloads that are truncated, not JSON, of the wrong shape, with extra or missing
fields, very large or deeply nested, with NUL characters or invalid Unicode. The service dead-letters each bad row
with a clear error and goes on: the good commands scheduled beside them complete, and nothing crashes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Any

import pytest
from scheduling_app import START, Log, Record, RecordHandler, make_app
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError, StatementError

from scheduling import ScheduledCommandEntry, ScheduledCommandStatus, ScheduleOptions
from scheduling.codec import command_type_name
from scheduling.errors import PayloadTooLargeError
from stores import ScheduledCommandStore, SqlStore
from stores.sql import ENTRIES

S = ScheduledCommandStatus
RECORD = command_type_name(Record)
EARLIER = START - timedelta(minutes=1)  # the bad rows are due first, so they are claimed before the good ones


def raw_entry(command_type: str, payload: str, **changes: Any) -> ScheduledCommandEntry:
    values: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "command_type": command_type,
        "payload": payload,
        "status": S.PENDING,
        "scheduled_for": EARLIER,
        "created_at": EARLIER,
        "max_retries": 3,
    }
    return ScheduledCommandEntry(**(values | changes))


async def insert_raw(store: ScheduledCommandStore, entry: ScheduledCommandEntry, **columns: Any) -> str:
    """Put the entry into the store without the scheduler: an SQL INSERT for SQL stores (``columns`` overrides raw
    column values), ``store.add`` for the others."""
    if not isinstance(store, SqlStore):
        assert not columns, "raw column values need an SQL store"
        [entry_id] = await store.add([entry])
        return entry_id
    row = {
        "id": entry.id,
        "command_type": entry.command_type,
        "payload": entry.payload,
        "status": "PENDING",
        "priority": 0,
        "scheduled_for": entry.scheduled_for,
        "created_at": entry.created_at,
        "retry_count": 0,
        "attempt_count": 0,
        "max_retries": entry.max_retries,
    } | columns
    async with store.engine.begin() as conn:
        await conn.execute(insert(ENTRIES).values(**row))
    return entry.id


def nested(depth: int) -> str:
    return '{"value": "deep", "extra": ' + "[" * depth + "]" * depth + "}"


UNREGISTERED = "UnknownCommandTypeError: command type 'myapp.commands.Removed' is not registered"
INVALID = f"InvalidPayloadError: payload of {RECORD} no longer validates"

# name, command type, payload, expected status, expected start of error_message (None: completed), value recorded
ROWS: list[tuple[str, str, str, S, str | None, str | None]] = [
    ("unknown type", "myapp.commands.Removed", '{"value": "x"}', S.FAILED, UNREGISTERED, None),
    ("empty type", "", '{"value": "x"}', S.FAILED, "UnknownCommandTypeError: command type ''", None),
    ("truncated JSON", RECORD, '{"value": "ab', S.FAILED, INVALID + ": <root>: Invalid JSON", None),
    ("not JSON", RECORD, "value=ab", S.FAILED, INVALID + ": <root>: Invalid JSON", None),
    ("empty payload", RECORD, "", S.FAILED, INVALID + ": <root>: Invalid JSON", None),
    ("JSON array", RECORD, "[1, 2]", S.FAILED, INVALID + ": <root>: Input should be an object", None),
    ("JSON null", RECORD, "null", S.FAILED, INVALID + ": <root>: Input should be an object", None),
    ("missing field", RECORD, "{}", S.FAILED, INVALID + ": value: Field required", None),
    ("wrong field type", RECORD, '{"value": 5}', S.FAILED, INVALID + ": value: Input should be a valid string", None),
    ("extra field", RECORD, '{"value": "extra", "unknown": [1, 2]}', S.COMPLETED, None, "extra"),
    ("deeply nested", RECORD, nested(100_000), S.FAILED, INVALID + ": <root>: Invalid JSON", None),
    ("escaped NUL", RECORD, '{"value": "a\\u0000b"}', S.COMPLETED, None, "a\x00b"),
    ("escaped lone surrogate", RECORD, '{"value": "\\udcff"}', S.FAILED, INVALID + ": <root>: Invalid JSON", None),
    ("5 MB payload", RECORD, json.dumps({"value": "L" * 5_000_000}), S.COMPLETED, None, "L" * 5_000_000),
]


async def test_bad_rows_are_dead_lettered_and_good_commands_complete(any_store: ScheduledCommandStore) -> None:
    """Every bad row is FAILED at its first attempt with a clear error (no retry can fix it); rows that validate
    (extra fields are ignored, escapes decoded, size is checked only at schedule()) run; the good commands run."""
    app = make_app(store=any_store, handlers=[RecordHandler])
    bad_ids = [await insert_raw(any_store, raw_entry(kind, payload)) for _, kind, payload, *_ in ROWS]
    good_ids = [await app.scheduler.schedule(Record(value=f"good-{i}")) for i in range(3)]
    async with asyncio.timeout(30):
        handled = await app.service.run_until_idle()
    # Routing by handler: a type the worker has no handler for is never claimed, it waits PENDING for a worker that
    # has one.
    unhandled = sum(1 for row in ROWS if row[1] != RECORD)
    assert handled == len(ROWS) + 3 - unhandled
    for entry_id, (name, kind, _, status, message, _) in zip(bad_ids, ROWS, strict=True):
        entry = await app.scheduler.get_status(entry_id)
        assert entry is not None
        if kind != RECORD:
            assert (entry.status, entry.attempt_count) == (S.PENDING, 0), name
            continue
        assert entry.status is status, (name, entry.error_message)
        attempts = await app.scheduler.get_attempts(entry_id)
        assert len(attempts) == 1, name
        if message is None:
            assert attempts[0].outcome == "completed"
            continue
        assert entry.error_message is not None and entry.error_message.startswith(message), (name, entry.error_message)
        assert entry.retry_count == 1, "dead-lettered at once, although 3 retries were allowed"
        assert attempts[0].outcome == "failed"
        assert attempts[0].error is not None and attempts[0].error.startswith(message)
    for entry_id in good_ids:
        entry = await app.scheduler.get_status(entry_id)
        assert entry is not None and entry.status is S.COMPLETED
    expected_values = [value for *_, value in ROWS if value is not None] + ["good-0", "good-1", "good-2"]
    assert sorted(app.injector.get(Log).records) == sorted(expected_values)
    completed = sum(1 for row in ROWS if row[3] is S.COMPLETED) + 3
    counts = await any_store.count_by_status()
    assert (counts[S.COMPLETED], counts[S.FAILED], counts[S.PENDING], counts[S.PROCESSING]) == (
        completed,
        len(ROWS) + 3 - completed - unhandled,
        unhandled,
        0,
    )


async def test_raw_nul_in_a_payload(any_store: ScheduledCommandStore) -> None:
    """A raw NUL character (not the JSON escape) in a payload: PostgreSQL's text type refuses the row itself;
    SQLite and memory keep it, and the worker dead-letters it as invalid JSON (control character in a string)."""
    entry = raw_entry(RECORD, '{"value": "a\x00b"}')
    if isinstance(any_store, SqlStore) and any_store.is_postgresql:
        with pytest.raises((DBAPIError, StatementError), match="NUL"):
            await insert_raw(any_store, entry)
        return
    app = make_app(store=any_store, handlers=[RecordHandler])
    await insert_raw(any_store, entry)
    good = await app.scheduler.schedule(Record(value="good"))
    assert await app.service.run_until_idle() == 2
    bad = await app.scheduler.get_status(entry.id)
    assert bad is not None and bad.status is S.FAILED
    assert bad.error_message is not None and bad.error_message.startswith(INVALID + ": <root>: Invalid JSON")
    assert (await app.scheduler.get_status(good)).status is S.COMPLETED  # type: ignore[union-attr]


async def test_sqlite_row_with_invalid_utf8_does_not_block_the_queue(tmp_path: Any) -> None:
    """A row whose payload bytes are not UTF-8 is dead-lettered; the good command due after it completes."""
    store = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    try:
        app = make_app(store=store, handlers=[RecordHandler])
        entry = raw_entry(RECORD, "placeholder")
        await insert_raw(store, entry)
        async with store.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE scheduled_commands SET payload = CAST(X'7B2276616C7565223A2022FF227D' AS TEXT)"
                    " WHERE id = :id"
                ),
                {"id": entry.id},
            )
        good = await app.scheduler.schedule(Record(value="good"))
        async with asyncio.timeout(5):
            await app.service.run_until_idle()
        assert (await app.scheduler.get_status(good)).status is S.COMPLETED  # type: ignore[union-attr]
        bad = await app.scheduler.get_status(entry.id)
        assert bad is not None and bad.status is S.FAILED
    finally:
        await store.close()


async def test_postgresql_refuses_invalid_utf8_rows(module_postgres_url: str) -> None:
    """PostgreSQL (a UTF-8 database) refuses a payload that is not UTF-8 at INSERT, so such a row cannot exist."""
    store = SqlStore(module_postgres_url)
    await store.open()
    try:
        entry = raw_entry(RECORD, "placeholder")
        await insert_raw(store, entry)
        with pytest.raises(DBAPIError, match="invalid byte sequence"):
            async with store.engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE scheduled_commands SET payload = convert_from('\\x7bff7d'::bytea, 'UTF8')"
                        " WHERE id = :id"
                    ),
                    {"id": entry.id},
                )
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_row_with_corrupt_metadata_does_not_block_the_queue(
    kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """A row whose metadata column is not JSON is dead-lettered (or at least skipped); the good command runs."""
    store = (
        SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
        if kind == "sqlite"
        else SqlStore(request.getfixturevalue("module_postgres_url"))
    )
    await store.open()
    try:
        async with store.engine.begin() as conn:
            await conn.execute(text("DELETE FROM scheduled_commands"))
        app = make_app(store=store, handlers=[RecordHandler])
        entry = raw_entry(RECORD, '{"value": "corrupt"}')
        await insert_raw(store, entry, metadata_json="{not json")
        good = await app.scheduler.schedule(Record(value="good"))
        async with asyncio.timeout(5):
            await app.service.run_until_idle()
        assert (await app.scheduler.get_status(good)).status is S.COMPLETED  # type: ignore[union-attr]
    finally:
        await store.close()


# -- what schedule() refuses -----------------------------------------------------------------------------------------


async def test_payload_over_max_payload_bytes_is_refused_at_schedule(any_store: ScheduledCommandStore) -> None:
    """A command exactly at ``max_payload_bytes`` is stored and runs; one byte more raises PayloadTooLargeError
    naming the type and both sizes, and stores nothing."""
    app = make_app(store=any_store, handlers=[RecordHandler], max_payload_bytes=1_000)
    overhead = len(Record(value="").model_dump_json())
    at_limit = await app.scheduler.schedule(Record(value="a" * (1_000 - overhead)))
    with pytest.raises(PayloadTooLargeError) as refused:
        await app.scheduler.schedule(Record(value="é" * ((1_001 - overhead) // 2 + 1)))
    assert isinstance(refused.value, ValueError)
    assert RECORD in str(refused.value) and "1000" in str(refused.value).replace(",", "").replace("_", "")
    counts = await any_store.count_by_status()
    assert sum(counts.values()) == 1
    assert await app.service.run_until_idle() == 1
    assert (await app.scheduler.get_status(at_limit)).status is S.COMPLETED  # type: ignore[union-attr]


async def test_payload_near_the_default_limit_is_stored_and_runs(any_store: ScheduledCommandStore) -> None:
    """A command of almost 1 MiB (the default max_payload_bytes) round-trips through every store."""
    app = make_app(store=any_store, handlers=[RecordHandler])
    value = "0123456789" * 104_000
    command_id = await app.scheduler.schedule(Record(value=value))
    assert await app.service.run_until_idle() == 1
    assert (await app.scheduler.get_status(command_id)).status is S.COMPLETED  # type: ignore[union-attr]
    assert app.injector.get(Log).records == [value]


async def test_nul_in_a_command_field_is_stored_escaped_and_delivered(any_store: ScheduledCommandStore) -> None:
    """A NUL character in a command's string field is stored as the JSON escape \\u0000 (which even PostgreSQL's
    text accepts) and reaches the handler unchanged."""
    app = make_app(store=any_store, handlers=[RecordHandler])
    command_id = await app.scheduler.schedule(Record(value="a\x00b"))
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None and entry.payload == '{"value":"a\\u0000b"}'
    assert await app.service.run_until_idle() == 1
    assert app.injector.get(Log).records == ["a\x00b"]


async def test_invalid_unicode_in_a_command_field_is_refused_at_schedule(any_store: ScheduledCommandStore) -> None:
    """A lone surrogate cannot be serialized to JSON: schedule() raises a ValueError that says so; nothing stored."""
    app = make_app(store=any_store, handlers=[RecordHandler])
    with pytest.raises(ValueError, match="surrogates not allowed"):
        await app.scheduler.schedule(Record(value="bad \udcff"))
    assert sum((await any_store.count_by_status()).values()) == 0


# -- values the database holds but an entry cannot: each row is read on its own --------------------------------------

# kind, column, the SQL expression written into it, what the error names. Every one of these failed the whole claim
# (or every claim) before rows were converted one by one.
UNREADABLE: list[tuple[str, str, str, str]] = [
    ("postgresql", "scheduled_for", "'-infinity'::timestamptz", "'-infinity'"),
    ("postgresql", "created_at", "'infinity'::timestamptz", "'infinity'"),
    ("postgresql", "expires_at", "'20000-01-01+00'::timestamptz", "'20000-01-01"),
    ("postgresql", "timeout_seconds", "'NaN'::double precision", "nan"),
    ("postgresql", "max_retries", "-1", "-1"),
    ("postgresql", "status", "'PENDING'", "PENDING"),  # control: a readable row runs (checked below)
    ("sqlite", "priority", "'high'", "'high'"),
    ("sqlite", "scheduled_for", "12345", "12345"),
    ("sqlite", "scheduled_for", "'0 not a time'", "'0 not a time'"),
    ("sqlite", "created_at", "X'00FF'", "b'\\x00\\xff'"),
    ("sqlite", "retry_count", "2.5", "2.5"),
    ("sqlite", "id", "X'FF'", "b'\\xff'"),
    ("sqlite", "id", "CAST(X'FF41' AS TEXT)", "'\\udcffA'"),  # read as surrogate escapes: no write could name it
]


async def sql_store(kind: str, tmp_path: Any, request: pytest.FixtureRequest) -> SqlStore:
    if kind == "sqlite":
        store = SqlStore(f"sqlite:///{tmp_path / 'store.db'}")
        await store.open()
        return store
    store = SqlStore(request.getfixturevalue("module_postgres_url"))
    await store.open()
    async with store.engine.begin() as conn:
        await conn.execute(text("TRUNCATE scheduled_commands, scheduled_command_attempts RESTART IDENTITY"))
    return store


async def write_raw(store: SqlStore, entry_id: str, column: str, expression: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            text(f"UPDATE scheduled_commands SET {column} = {expression} WHERE id = :id"), {"id": entry_id}
        )


@pytest.mark.parametrize(("kind", "column", "expression", "shown"), UNREADABLE)
async def test_an_unreadable_row_is_dead_lettered_and_its_claim_batch_runs(
    kind: str, column: str, expression: str, shown: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """Four commands due together, one written with a value its column's type cannot give back: the other three
    complete in the same run, and the bad one is FAILED with an error naming the column and the value."""
    store = await sql_store(kind, tmp_path, request)
    try:
        app = make_app(store=store, handlers=[RecordHandler], batch_size=10)
        ids = [await app.scheduler.schedule(Record(value=f"v{i}")) for i in range(4)]
        await write_raw(store, ids[1], column, expression)
        async with asyncio.timeout(10):
            await app.service.run_until_idle()
        readable = column == "status"
        good_ids = ids if readable else [ids[0], ids[2], ids[3]]
        for entry_id in good_ids:
            assert (await app.scheduler.get_status(entry_id)).status is S.COMPLETED  # type: ignore[union-attr]
        counts = await store.count_by_status()
        assert counts[S.PROCESSING] == 0 and counts[S.PENDING] == 0
        if readable:
            return
        assert counts[S.FAILED] == 1
        async with store.engine.connect() as conn:
            status, error = (
                await conn.execute(text("SELECT status, error_message FROM scheduled_commands WHERE seq = 2"))
            ).one()
        assert status == "FAILED"
        assert error.startswith(f"UnreadableEntryError: column {column} holds ") and shown in error, error
    finally:
        await store.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_recovery_takes_over_leases_that_are_missing_or_unreadable(
    kind: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """PROCESSING rows whose worker died: one with an ordinary expired lease, one with no lease expiry at all, one
    whose lease expiry cannot be read, and one whose lease is readable but whose row is not. Recovery takes the
    first three over (a lost attempt each, then they run), dead-letters the fourth, and leaves nothing stranded."""
    store = await sql_store(kind, tmp_path, request)
    try:
        app = make_app(store=store, handlers=[RecordHandler])
        ids = [await app.scheduler.schedule(Record(value=f"v{i}")) for i in range(4)]
        claimed = await store.claim_due(
            now=START, limit=10, worker_id="dead-worker", lease_duration=timedelta(seconds=1)
        )
        assert len(claimed) == 4
        unreadable = "'-infinity'::timestamptz" if kind == "postgresql" else "'soon'"
        await write_raw(store, ids[1], "lease_expires_at", "NULL")
        await write_raw(store, ids[2], "lease_expires_at", unreadable)
        await write_raw(store, ids[3], "created_at", "'infinity'::timestamptz" if kind == "postgresql" else "'x'")
        app.clock.advance(timedelta(seconds=5))
        async with asyncio.timeout(10):
            assert await app.service.run_until_idle() == 3  # recovered: a lost attempt each, retried later
        app.clock.advance(timedelta(minutes=1))
        async with asyncio.timeout(10):
            assert await app.service.run_until_idle() == 3
        for entry_id in ids[:3]:
            entry = await app.scheduler.get_status(entry_id)
            assert entry is not None and entry.status is S.COMPLETED, entry
            assert [a.outcome for a in await app.scheduler.get_attempts(entry_id)] == ["lost", "completed"]
        counts = await store.count_by_status()
        assert (counts[S.COMPLETED], counts[S.FAILED], counts[S.PROCESSING]) == (3, 1, 0)
    finally:
        await store.close()


@pytest.mark.parametrize(("kind", "due"), [("postgresql", "'infinity'::timestamptz"), ("sqlite", "'zzz'")])
async def test_a_due_time_no_claim_can_reach_is_dead_lettered(
    kind: str, due: str, tmp_path: Any, request: pytest.FixtureRequest
) -> None:
    """A PENDING row due at a time that never comes (an infinity; on SQLite a text sorting after every timestamp)
    would wait unseen forever: recovery dead-letters it, and the next due time is still read for the others."""
    store = await sql_store(kind, tmp_path, request)
    try:
        app = make_app(store=store, handlers=[RecordHandler])
        bad = await app.scheduler.schedule(Record(value="bad"))
        await write_raw(store, bad, "scheduled_for", due)
        assert await store.next_due_at() is None  # unreadable: not an error, the worker polls
        good = await app.scheduler.schedule(Record(value="good"), ScheduleOptions(delay=timedelta(minutes=1)))
        assert await store.next_due_at() == START + timedelta(minutes=1)
        assert await app.service.run_until_idle() == 0
        async with store.engine.connect() as conn:
            status, error = (
                await conn.execute(
                    text("SELECT status, error_message FROM scheduled_commands WHERE id = :id"), {"id": bad}
                )
            ).one()
        assert status == "FAILED" and error.startswith("UnreadableEntryError: column scheduled_for holds "), error
        app.clock.advance(timedelta(minutes=1))
        assert await app.service.run_until_idle() == 1
        assert (await app.scheduler.get_status(good)).status is S.COMPLETED  # type: ignore[union-attr]
    finally:
        await store.close()
