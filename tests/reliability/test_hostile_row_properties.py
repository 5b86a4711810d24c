"""Property: whatever value is written into whatever column of one stored row, behind the library's back, the worker
keeps draining the other rows.

Hypothesis picks a column of ``scheduled_commands`` and a value (any SQLite value: integers up to 64 bits, floats
with NaN and infinities, text, blobs, NULL; on PostgreSQL any text the column's type accepts as input: infinities,
years past 9999, NaN, extreme integers, statuses, ...), writes it through raw SQL into one of four rows due now, and
runs the worker (twice, a lease duration apart, so recovery runs too). A write the database refuses is not a
counterexample. The three other commands must complete, whatever became of the fourth, and nothing may escape the
worker. Bounded in the normal run; the soak variant runs many more examples.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given
from hypothesis import strategies as st
from reliability_support import postgresql_store, property_settings, sqlite_store, store_for_examples
from scheduling_app import Record, RecordHandler, make_app
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, StatementError

from scheduling import ScheduledCommandStatus
from stores import SqlStore
from stores.sql import ENTRIES

S = ScheduledCommandStatus
COLUMNS = [column.name for column in ENTRIES.columns if column.name != "seq"]

TIMESTAMP_TEXTS = [
    "-infinity",
    "infinity",
    "20000-01-01 00:00:00+00",
    "0001-01-01 00:00:00+00",
    "4713-01-01 00:00:00+00 BC",
    "294276-12-31 23:59:59+00",
    "2026-03-01 12:00:00",
    "2026-03-01",
    "9999-12-31 23:59:59.999999",
]
WORDS = ["PENDING", "PROCESSING", "FAILED", "COMPLETED", "WEIRD", "", "NaN", "Infinity", "-1", "{", "null", "[]"]
NUMBERS = ["2147483647", "-2147483648", "0", "1e308", "-0.5", "1e-320"]

SQLITE_VALUES = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=12),
    st.sampled_from(TIMESTAMP_TEXTS + WORDS + NUMBERS),
)
POSTGRESQL_VALUES = st.one_of(st.none(), st.sampled_from(TIMESTAMP_TEXTS + WORDS + NUMBERS), st.text(max_size=40))


async def _write_and_drain(store: SqlStore, column: str, value: Any) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM scheduled_command_attempts"))
        await conn.execute(text("DELETE FROM scheduled_commands"))
    app = make_app(store=store, handlers=[RecordHandler], retry_delay_base=timedelta(seconds=1))
    ids = [await app.scheduler.schedule(Record(value=f"v{i}")) for i in range(4)]
    victim = ids[1]
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                text(f"UPDATE scheduled_commands SET {column} = :value WHERE id = :id"),
                {
                    "value": value,
                    "id": victim,
                },
            )
    except (DBAPIError, StatementError, ValueError, OverflowError):
        assume(False)  # the database refuses the value: such a row cannot exist
    async with asyncio.timeout(30):
        await app.service.run_until_idle()
        app.clock.advance(timedelta(minutes=2))  # past every lease: recovery runs
        await app.service.run_until_idle()
    for entry_id in (ids[0], ids[2], ids[3]):
        entry = await app.scheduler.get_status(entry_id)
        assert entry is not None and entry.status is S.COMPLETED, (column, value, entry)


def _check(
    make_store: Callable[[Path], Awaitable[SqlStore]], values: st.SearchStrategy[Any], max_examples: int
) -> None:
    with store_for_examples(make_store) as (runner, store):

        @property_settings(max_examples, HealthCheck.filter_too_much)
        @given(column=st.sampled_from(COLUMNS), value=values)
        @example(column="scheduled_for", value="-infinity")  # the cases first found by hand, always tried
        @example(column="created_at", value="infinity")
        @example(column="expires_at", value="20000-01-01 00:00:00+00")
        @example(column="priority", value="WEIRD")
        @example(column="scheduled_for", value="NaN")
        @example(column="queue", value=b"")  # a bytes queue among the claim's routes (found by this test)
        def check(column: str, value: Any) -> None:
            runner.run(_write_and_drain(store, column, value))

        check()


def test_any_value_in_any_column_of_one_row_never_blocks_the_others_sqlite() -> None:
    _check(sqlite_store, SQLITE_VALUES, max_examples=60)


def test_any_value_in_any_column_of_one_row_never_blocks_the_others_postgresql(module_postgres_url: str) -> None:
    _check(postgresql_store(module_postgres_url), POSTGRESQL_VALUES, max_examples=60)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_any_value_in_any_column_never_blocks_the_others(module_postgres_url: str) -> None:
    _check(sqlite_store, SQLITE_VALUES, max_examples=2_000)
    _check(postgresql_store(module_postgres_url), POSTGRESQL_VALUES, max_examples=2_000)
