"""Hostile data on the RedisStore: entry hashes written behind the library's back (fields missing, times that are no
times, metadata that is no JSON, text where numbers belong, bytes that are no UTF-8) never stall the queue.

The SQL stores' counterparts (``test_hostile_store_rows.py``, ``test_hostile_row_properties.py``) write columns with
raw SQL; here the field of one entry's hash is set (``HSET``) or removed (``HDEL``) directly. A corrupt entry is
dead-lettered with an error naming the field and its value, and the entries beside it complete.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from reliability_support import property_settings, store_for_examples
from scheduling_app import START, Record, RecordHandler, make_app

from scheduling import ScheduledCommandStatus, ScheduleOptions
from stores import RedisStore
from stores.errors import UnreadableEntryError

S = ScheduledCommandStatus
ROOT = Path(__file__).resolve().parents[2]

#: Every field an entry hash can hold (``seq`` is the store's own scheduling order).
FIELDS = [
    "id",
    "seq",
    "command_type",
    "payload",
    "status",
    "priority",
    "scheduled_for",
    "created_at",
    "started_at",
    "completed_at",
    "expires_at",
    "retry_count",
    "attempt_count",
    "max_retries",
    "timeout_seconds",
    "metadata",
    "correlation_id",
    "idempotency_key",
    "error_message",
    "result_payload",
    "lease_owner",
    "lease_token",
    "lease_expires_at",
    "recurring_name",
    "occurrence_at",
    "occurrence_generation",
    "trace_context",
]
WORDS = ["PENDING", "PROCESSING", "FAILED", "WEIRD", "", "NaN", "inf", "-1", "{", "null", "[]", "{}", " 5", "5_0"]
NUMBERS = ["0", "-0", "1e308", "-0.5", "99999999999999999999999", "-99999999999999999999999", "9223372036854775807"]
#: None removes the field.
VALUES = st.one_of(
    st.none(),
    st.sampled_from(WORDS + NUMBERS),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(str),
    st.text(max_size=40),
    st.binary(max_size=12),
)


async def write_field(store: RedisStore, entry_id: str, field: str, value: str | bytes | None) -> None:
    """Set (or, for None, remove) one field of the entry's hash, behind the store's back."""
    from redis.asyncio import Redis

    async with Redis.from_url(store.url) as client:
        key = f"{store.prefix}:e:{entry_id}"
        if value is None:
            await client.hdel(key, field)  # type: ignore[misc]
        else:
            await client.hset(key, field, value)  # type: ignore[misc]


async def empty(store: RedisStore) -> None:
    """Delete every key of the store but its layout record."""
    from redis.asyncio import Redis

    async with Redis.from_url(store.url) as client:
        keys = [key async for key in client.scan_iter(match=f"{store.prefix}:*", count=1000)]
        keys = [key for key in keys if key != f"{store.prefix}:meta".encode()]
        if keys:
            await client.unlink(*keys)


async def write_and_drain(store: RedisStore, field: str, value: str | bytes | None) -> None:
    """Four commands due now, one field of the second written behind the store's back: the worker (run twice, past
    every lease, so recovery runs too) completes the three others, and raises nothing."""
    await empty(store)
    app = make_app(store=store, handlers=[RecordHandler], retry_delay_base=timedelta(seconds=1), batch_size=10)
    ids = [await app.scheduler.schedule(Record(value=f"v{i}")) for i in range(4)]
    await write_field(store, ids[1], field, value)
    async with asyncio.timeout(30):
        await app.service.run_until_idle()
        app.clock.advance(timedelta(minutes=2))
        await app.service.run_until_idle()
    for entry_id in (ids[0], ids[2], ids[3]):
        entry = await app.scheduler.get_status(entry_id)
        assert entry is not None and entry.status is S.COMPLETED, (field, value, entry)
    counts = await store.count_by_status()
    assert counts[S.PROCESSING] == 0, (field, value, counts)


@pytest.fixture
def redis_store_for_examples(redis_url: str, redis_prefix: str) -> Iterator[tuple[asyncio.Runner, RedisStore]]:
    async def make(_: Path) -> RedisStore:
        store = RedisStore(redis_url, prefix=redis_prefix)
        await store.open()
        return store

    with store_for_examples(make) as runner_and_store:
        yield runner_and_store


def _check(runner: asyncio.Runner, store: RedisStore, max_examples: int) -> None:
    @property_settings(max_examples)
    @given(field=st.sampled_from(FIELDS), value=VALUES)
    @example(field="scheduled_for", value=None)
    @example(field="scheduled_for", value="soon")
    @example(field="seq", value="x")
    @example(field="seq", value=None)
    @example(field="id", value="someone-else")
    @example(field="metadata", value="{not json")
    @example(field="priority", value="high")
    @example(field="created_at", value=b"\xff\xfe")
    @example(field="payload", value=b'{"value": "\xff"}')
    def check(field: str, value: str | bytes | None) -> None:
        runner.run(write_and_drain(store, field, value))

    check()


def test_any_value_in_any_field_of_one_hash_never_blocks_the_others(
    redis_store_for_examples: tuple[asyncio.Runner, RedisStore],
) -> None:
    _check(*redis_store_for_examples, max_examples=60)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_any_value_in_any_field_never_blocks_the_others(
    redis_store_for_examples: tuple[asyncio.Runner, RedisStore],
) -> None:
    _check(*redis_store_for_examples, max_examples=2_000)


# field, value written, what the error shows of it
UNREADABLE: list[tuple[str, str | None, str]] = [
    ("scheduled_for", "soon", "'soon'"),
    ("scheduled_for", None, "None"),
    ("created_at", "99999999999999999999999", "'99999999999999999999999'"),
    ("expires_at", "2026-03-01", "'2026-03-01'"),
    ("priority", "high", "'high'"),
    ("retry_count", "2.5", "'2.5'"),
    ("max_retries", "-1", "'-1'"),
    ("metadata", "{not json", "'{not json'"),
    ("metadata", "[]", "'[]'"),
    ("command_type", None, "None"),
    ("timeout_seconds", "fast", "'fast'"),
]


@pytest.mark.parametrize(("field", "value", "shown"), UNREADABLE)
async def test_an_unreadable_hash_is_dead_lettered_naming_the_field(
    field: str, value: str | None, shown: str, redis_url: str, redis_prefix: str
) -> None:
    """Four commands due together, one hash holding a value its field cannot give back: the other three complete in
    the same run, and the bad one is FAILED with an error naming the field and the value, shown as one line."""
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        app = make_app(store=store, handlers=[RecordHandler], batch_size=10)
        ids = [await app.scheduler.schedule(Record(value=f"v{i}")) for i in range(4)]
        await write_field(store, ids[1], field, value)
        async with asyncio.timeout(10):
            await app.service.run_until_idle()
        for entry_id in (ids[0], ids[2], ids[3]):
            assert (await app.scheduler.get_status(entry_id)).status is S.COMPLETED  # type: ignore[union-attr]
        counts = await store.count_by_status()
        assert (counts[S.COMPLETED], counts[S.FAILED], counts[S.PENDING], counts[S.PROCESSING]) == (3, 1, 0, 0)
        failed: list[str] = []
        listed = await store.list_entries(on_unreadable=lambda exc: failed.append(str(exc)))
        assert [entry.id for entry in listed] == [ids[0], ids[2], ids[3]]
        [line] = failed
        assert "\n" not in line and ids[1] in line, line
        error = line.split("cannot be read: ", 1)[1]
        assert error.startswith(f"column {field} holds {shown}"), error


async def test_a_hash_whose_id_field_was_rewritten_runs_under_its_key(redis_url: str, redis_prefix: str) -> None:
    """The id of the key wins over an ``id`` field rewritten behind the store's back: the entry runs and finishes
    under its own id instead of being leased forever under another."""
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        app = make_app(store=store, handlers=[RecordHandler])
        entry_id = await app.scheduler.schedule(Record(value="mine"))
        await write_field(store, entry_id, "id", "someone-else")
        assert await app.service.run_until_idle() == 1
        entry = await app.scheduler.get_status(entry_id)
        assert entry is not None and entry.id == entry_id and entry.status is S.COMPLETED


async def test_an_unreadable_due_time_is_claimed_at_its_score(redis_url: str, redis_prefix: str) -> None:
    """A PENDING hash whose due time is gone or no integer: the next due time is still read (from the index), and
    the claim dead-letters it rather than failing, so the entry due after it runs."""
    async with RedisStore(redis_url, prefix=redis_prefix) as store:
        app = make_app(store=store, handlers=[RecordHandler])
        bad = await app.scheduler.schedule(Record(value="bad"))
        good = await app.scheduler.schedule(Record(value="good"), ScheduleOptions(delay=timedelta(minutes=1)))
        await write_field(store, bad, "scheduled_for", "later")
        assert await store.next_due_at() == START  # the index's due time, the field being unreadable
        assert await app.service.run_until_idle() == 0  # dead-lettered at the claim: no attempt ran
        assert (await store.count_by_status())[S.FAILED] == 1
        [line] = [str(exc) for exc in await unreadable(store)]
        assert bad in line and "column scheduled_for holds 'later'" in line, line
        assert await store.next_due_at() == START + timedelta(minutes=1)
        app.clock.advance(timedelta(minutes=1))
        assert await app.service.run_until_idle() == 1
        assert (await app.scheduler.get_status(good)).status is S.COMPLETED  # type: ignore[union-attr]


async def unreadable(store: RedisStore) -> list[UnreadableEntryError]:
    """What a listing of every entry reports as unreadable, one error per entry."""
    errors: list[UnreadableEntryError] = []
    await store.list_entries(on_unreadable=errors.append)
    return errors


def cli(*args: str, store: str) -> subprocess.CompletedProcess[str]:
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "support"), str(ROOT)])}
    environment.pop("CQRS_SCHEDULING_STORE", None)
    return subprocess.run(
        [sys.executable, "-m", "scheduling", *args, "--store", store],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment,
        timeout=60,
    )


def test_cli_list_and_show_report_a_corrupt_hash_in_one_line(redis_url: str, redis_prefix: str) -> None:
    """The read model of a RedisStore holding corrupt hashes (the CLI, as real processes): ``list`` shows each as one
    line naming the field and value beside the readable entries, ``show`` says the same in one line, no traceback."""

    async def corrupt() -> dict[str, str]:
        async with RedisStore(redis_url, prefix=redis_prefix) as store:
            app = make_app(store=store, handlers=[RecordHandler])
            ids = {f"good{i}": await app.scheduler.schedule(Record(value=f"g{i}")) for i in range(2)}
            for name, field, value in (("bad_time", "scheduled_for", "not a time"), ("bad_meta", "metadata", "{")):
                ids[name] = await app.scheduler.schedule(Record(value=name))
                await write_field(store, ids[name], field, value)
            return ids

    ids = asyncio.run(corrupt())
    url = f"{redis_url}?prefix={redis_prefix}"
    listed = cli("list", "--json", store=url)
    assert listed.returncode == 0 and "Traceback" not in listed.stderr, listed.stderr
    page = json.loads(listed.stdout)
    assert sorted(entry["id"] for entry in page["entries"]) == sorted([ids["good0"], ids["good1"]])
    unreadable = {row["id"]: row for row in page["unreadable"]}
    assert set(unreadable) == {ids["bad_time"], ids["bad_meta"]}
    assert (
        unreadable[ids["bad_time"]]["column"] == "scheduled_for"
        and "not a time" in unreadable[ids["bad_time"]]["value"]
    )
    human = cli("list", store=url)
    assert human.returncode == 0 and "Traceback" not in human.stderr, human.stderr
    corrupt_lines = [line for line in human.stdout.splitlines() if line.startswith("corrupt row")]
    assert len(corrupt_lines) == 2, human.stdout
    assert any(ids["bad_meta"] in line and "column metadata holds '{'" in line for line in corrupt_lines), human.stdout
    shown = cli("show", ids["bad_time"], store=url)
    assert shown.returncode == 1, (shown.stdout, shown.stderr)
    assert "Traceback" not in shown.stderr, shown.stderr
    # (the server of the tests persists nothing: the start-up warning saying so is the other line)
    [line] = [line for line in shown.stderr.splitlines() if "persists nothing" not in line]
    assert ids["bad_time"] in line and "column scheduled_for holds 'not a time'" in line, line
