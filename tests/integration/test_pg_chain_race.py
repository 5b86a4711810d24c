"""PostgreSQL: a parent's outcome releases its dependants in one statement, and a dependant added while that statement
runs is never lost.

The interleaving that loses it in a naive single statement is forced here, not hoped for: the dependant's transaction
locks the parent's row and inserts the dependant, then waits (a trigger on the pairs' table waits for an advisory
lock the test holds); the parent's outcome starts meanwhile, takes its snapshot and waits for the row lock; the test
lets the dependant's transaction commit. The outcome's statement then holds a snapshot without the new pair.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from empty_postgres import empty_postgres
from pg_round_trips import RoundTrips
from sqlalchemy.engine import make_url

from scheduling import ScheduledCommandStatus
from stores.dependencies import Dependency
from stores.entries import AttemptRecord, ScheduledCommandEntry
from stores.sql import SqlStore

LEASE = timedelta(minutes=1)
#: The advisory lock the trigger waits for.
HOLD = 0x6368_6169

_HOLD_PAIRS = f"""
CREATE FUNCTION test_hold_pairs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared({HOLD});
    RETURN NULL;
END $$;
CREATE TRIGGER test_hold_pairs BEFORE INSERT ON scheduled_command_dependencies
    FOR EACH STATEMENT EXECUTE FUNCTION test_hold_pairs();
"""


def entry(now: datetime) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=str(uuid.uuid4()),
        command_type="tests.Job",
        payload="{}",
        status=ScheduledCommandStatus.PENDING,
        scheduled_for=now,
        created_at=now,
    )


def done(now: datetime) -> AttemptRecord:
    return AttemptRecord(attempt=1, worker_id="w", started_at=now, finished_at=now, outcome="completed")


async def wait_for_backend(conn: psycopg.AsyncConnection[object], condition: str) -> None:
    """Until a backend of this database (not ``conn``'s) waits as ``condition`` (SQL on pg_stat_activity) says."""
    async with asyncio.timeout(20):
        while True:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                f" AND pid <> pg_backend_pid() AND {condition}"
            )
            row = await cursor.fetchone()
            if row is not None and row[0]:
                return
            await asyncio.sleep(0.01)


@pytest.fixture
def race_url(postgres_url: str, new_postgres_database: Callable[[str, str], str]) -> str:
    return new_postgres_database(postgres_url, "chain_race")


@pytest.mark.parametrize("earlier", [0, 1], ids=["first_dependant", "second_dependant"])
async def test_a_dependant_committed_after_the_outcome_statement_began_is_released(race_url: str, earlier: int) -> None:
    """The parent had ``earlier`` dependants when it was claimed (with one, its outcome is the one statement that
    also releases them; without, the batch statement that leaves parents out). Both dependants end PENDING."""
    conninfo = make_url(race_url).set(drivername="postgresql").render_as_string(hide_password=False)
    async with SqlStore(race_url) as worker, SqlStore(race_url) as producer:
        now = datetime.now(UTC)
        parent = entry(now)
        await worker.add([parent])
        first = [entry(now) for _ in range(earlier)]
        if first:
            await producer.add_dependants(first, {child.id: Dependency((parent.id,)) for child in first})
        (claimed,) = await worker.claim_due(now=now, limit=1, worker_id="w", lease_duration=LEASE)
        assert claimed.id == parent.id and claimed.lease_token is not None
        late = entry(now)
        async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as blocker:
            await blocker.execute(_HOLD_PAIRS)
            await blocker.execute(f"SELECT pg_advisory_lock({HOLD})")
            adding = asyncio.create_task(producer.add_dependants([late], {late.id: Dependency((parent.id,))}))
            await wait_for_backend(blocker, "wait_event = 'advisory'")  # the parent's row is locked by now
            completing = asyncio.create_task(
                worker.complete(parent.id, claimed.lease_token, result_payload=None, attempt=done(now))
            )
            await wait_for_backend(blocker, "wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')")
            await blocker.execute(f"SELECT pg_advisory_unlock({HOLD})")
            async with asyncio.timeout(20):
                assert await completing
                await adding
            await blocker.execute("DROP TRIGGER test_hold_pairs ON scheduled_command_dependencies")
        for child in [*first, late]:
            released = await worker.get(child.id)
            assert released is not None, child.id
            assert released.status is ScheduledCommandStatus.PENDING, released
            assert released.pending_parents == 0
        parent_row = await worker.get(parent.id)
        assert parent_row is not None and parent_row.status is ScheduledCommandStatus.COMPLETED
        async with worker.engine.connect() as conn:
            unresolved = await conn.exec_driver_sql(
                "SELECT count(*) FROM scheduled_command_dependencies WHERE NOT resolved"
            )
            assert unresolved.scalar_one() == 0
        taken = await worker.claim_due(now=now, limit=10, worker_id="w", lease_duration=LEASE)
        assert sorted(e.id for e in taken) == sorted(child.id for child in [*first, late])


async def test_a_completed_parent_releases_its_dependants_without_a_round_trip_more(postgres_url: str) -> None:
    """Completing a parent claimed with a dependant costs the round trips of completing an entry without one (one
    statement, no BEGIN or COMMIT): its dependant is released by that statement. Counted on the wire, once both
    statements are prepared on the connection (the first execution of each on a connection prepares it: one round
    trip more, once)."""
    empty_postgres(postgres_url)
    async with SqlStore(postgres_url) as store:
        now = datetime.now(UTC)
        for _warm_up in range(2):  # the second round is counted
            parent, child, plain = entry(now), entry(now), entry(now)
            await store.add([parent, plain])
            await store.add_dependants([child], {child.id: Dependency((parent.id,))})
            claimed = {e.id: e for e in await store.claim_due(now=now, limit=9, worker_id="w", lease_duration=LEASE)}
            if _warm_up == 0:
                for entry_id in (plain.id, parent.id):
                    token = claimed[entry_id].lease_token
                    assert token is not None
                    assert await store.complete(entry_id, token, result_payload=None, attempt=done(now))
        trips: dict[str, int] = {}
        with RoundTrips(store) as counter:
            for entry_id in (plain.id, parent.id):
                token = claimed[entry_id].lease_token
                assert token is not None
                counter.reset()
                assert await store.complete(entry_id, token, result_payload=None, attempt=done(now))
                trips[entry_id] = counter.count()
        assert trips == {plain.id: 1, parent.id: 1}
        released = await store.get(child.id)
        assert released is not None and released.status is ScheduledCommandStatus.PENDING
        assert released.pending_parents == 0
