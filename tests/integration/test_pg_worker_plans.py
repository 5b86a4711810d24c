"""PostgreSQL: the worker's prepared statements are planned once per connection, not at every execution.

The claim is one large statement whose planning cost more server CPU than running it (1.6 ms of planning per claim,
61 % of the server's work in a default drain) while PostgreSQL kept choosing a custom plan for it at every
execution. Its shape is fixed by its text (index probes and explicit limits), so the worker's connections use one
generic plan per statement: what this checks, from the server's own count of each session's plans.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pg_plans import libpq

from scheduling import ScheduledCommandStatus
from stores.dependencies import Dependency
from stores.entries import AttemptRecord, ScheduledCommandEntry
from stores.sql import SqlStore


@pytest.fixture(name="sql_url")
def fresh_database(postgres_url: str, new_postgres_database: Callable[[str, str], str]) -> str:
    """A new database for each test: these tests depend on the table's statistics (a connection plans once only
    where they are safe) and change them and its storage settings, which a database shared with the next tests
    would keep."""
    return new_postgres_database(postgres_url, "plans")


_CLAIMS = 8


def _entry(now: datetime, priority: int) -> ScheduledCommandEntry:
    return ScheduledCommandEntry(
        id=str(uuid.uuid4()),
        command_type="tests.Job",
        payload="{}",
        status=ScheduledCommandStatus.PENDING,
        priority=priority,
        scheduled_for=now,
        created_at=now,
    )


async def test_claims_and_outcomes_run_one_generic_plan_each(sql_url: str) -> None:
    """Claims of different sizes and due times, and their outcomes: every execution of the worker's statements used
    its connection's cached generic plan, none a custom plan made for that execution."""
    now = datetime.now(UTC)
    async with SqlStore(sql_url) as store:
        connections = _traced_connections(store)
        await store.add([_entry(now - timedelta(seconds=i), priority=i % 3) for i in range(60)])
        for i in range(_CLAIMS):
            claimed = await store.claim_due(
                now=now + timedelta(milliseconds=i), limit=1 + i, worker_id="w", lease_duration=timedelta(minutes=1)
            )
            assert claimed, f"claim {i} found nothing"
            for entry in claimed:
                assert entry.lease_token is not None
                attempt = AttemptRecord(attempt=1, worker_id="w", started_at=now, finished_at=now, outcome="completed")
                assert await store.complete(entry.id, entry.lease_token, result_payload=None, attempt=attempt)
        plans: list[tuple[str, int, int]] = []
        for conn in connections.values():
            cursor = await conn.execute(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
                "WHERE statement LIKE '%scheduled_commands%'"
            )
            plans.extend(await cursor.fetchall())
        assert plans, "the worker prepared no statement"
        assert all(custom == 0 for _, _, custom in plans), [(s[:60], g, c) for s, g, c in plans]
        # generic_plans counts executions that used the cached generic plan: every claim did.
        claim_runs = sum(generic for statement, generic, _ in plans if "FOR UPDATE SKIP LOCKED" in statement)
        assert claim_runs == _CLAIMS


def _scan_rows(plan: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(node type, index or relation, rows it returned over all its loops) for every scan node of a JSON plan."""
    found = []
    if "Relation Name" in plan or "Index Name" in plan:
        where = f"{plan.get('Relation Name', '')} {plan.get('Index Name', '')}"
        found.append((plan["Node Type"], where, plan.get("Actual Rows", 0) * plan.get("Actual Loops", 1)))
    for child in plan.get("Plans", []):
        found.extend(_scan_rows(child))
    return found


async def test_an_outcome_batch_reads_its_own_rows_whatever_is_in_flight(sql_url: str) -> None:
    """With 2,000 entries PROCESSING, ending 10 of them reads about 10 rows of the entries' table: the outcome finds
    its rows by id, never by walking an index of every PROCESSING entry (its generic plan did, dead entries included,
    so the cost of an outcome grew with the entries in flight). The plan is the server's own, of the statement as
    the worker runs it (auto_explain on the worker's connections, its report sent back as a notice)."""
    now = datetime.now(UTC)
    async with SqlStore(sql_url) as store:
        connections = _traced_connections(store)
        claimed = await _all_claimed(store, now, 2_010)
        attempt = AttemptRecord(attempt=1, worker_id="w", started_at=now, finished_at=now, outcome="completed")
        for entry in claimed[:10]:  # the statement's plans are made (and cached) before the one measured
            assert entry.lease_token is not None
            assert await store.complete(entry.id, entry.lease_token, result_payload=None, attempt=attempt)
        scans = await _scans_while_ending(store, connections, claimed[10:20], attempt, "json_to_recordset")
        assert all(rows <= 50 for _, _, rows in scans), scans


def _plan_of(message: str) -> dict[str, Any]:
    """auto_explain's report: ``duration: ... ms  plan:`` then the JSON plan."""
    plan: dict[str, Any] = json.loads(message[message.index("{") :])
    return plan


async def test_a_claim_planned_on_a_small_table_still_reads_only_its_batch_once_the_table_has_grown(
    sql_url: str,
) -> None:
    """Statistics that say the table is empty (analyzed before anything was scheduled) must not shape the claim
    once 50,000 entries have arrived: a generic plan made from them walked whole indexes (620 ms per claim at
    200,000), and PostgreSQL's own choice switches to that plan after five custom ones. Below
    ``GENERIC_PLANS_FROM`` rows the worker's connections plan each claim for the table as it is."""
    now = datetime.now(UTC)
    async with SqlStore(sql_url) as store:
        connections = _traced_connections(store)
        with psycopg.connect(libpq(sql_url), autocommit=True) as admin:
            admin.execute("ALTER TABLE scheduled_commands SET (autovacuum_enabled = false)")
            # VACUUM first: the shared test database is emptied by DELETE, and statistics of dead pages with no
            # live row would make even a custom plan take the table for empty (an older hazard, not this one's).
            admin.execute("VACUUM ANALYZE scheduled_commands")
        for _ in range(6):  # more than the five custom plans after which PostgreSQL may switch to a generic one
            assert not await store.claim_due(now=now, limit=10, worker_id="w", lease_duration=timedelta(minutes=1))
        _insert_due(sql_url, "grown", 50_000, now)
        reports = await _explained(connections)
        claimed = await store.claim_due(now=now, limit=10, worker_id="w", lease_duration=timedelta(minutes=1))
        assert len(claimed) == 10
        claims = [report for report in reports if "FOR UPDATE SKIP LOCKED" in report["Query Text"]]
        assert claims, "no claim was reported"
        for report in claims:
            scans = [scan for scan in _scan_rows(report["Plan"]) if "scheduled_commands" in scan[1]]
            assert all(rows <= 500 for _, _, rows in scans), [scan for scan in scans if scan[2] > 500]
        plans = []
        for conn in connections.values():
            cursor = await conn.execute(
                "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement LIKE '%FOR UPDATE SKIP LOCKED%'"
            )
            plans.extend(await cursor.fetchall())
        assert plans and all(generic == 0 for generic, _ in plans), plans


async def test_a_burst_into_a_table_analyzed_with_only_finished_entries_is_claimed_through_the_routed_index(
    sql_url: str,
) -> None:
    """Statistics that say nothing is PENDING (analyzed while only finished entries were stored) must not shape the
    claim once 50,000 entries arrive: every scan of the claim states ``status = 'PENDING'``, and the planner, taking
    PENDING rows for none, read them through the smallest index of PENDING entries, the one of due times, reading
    and sorting every due entry in each of its probes (162 ms per claim at 100,000, until the next ANALYZE). That
    index's predicate is one no claim implies (schema version 13): the claim reads its batch through the routed
    index."""
    now = datetime.now(UTC)
    async with SqlStore(sql_url) as store:
        connections = _traced_connections(store)
        with psycopg.connect(libpq(sql_url), autocommit=True) as admin:
            admin.execute("ALTER TABLE scheduled_commands SET (autovacuum_enabled = false)")
            admin.execute(
                "INSERT INTO scheduled_commands (id, command_type, payload, status, priority, scheduled_for,"
                " created_at, completed_at, retry_count, attempt_count, max_retries, queue, has_dependants,"
                " pending_parents) SELECT 'done-' || g, 'tests.Job', '{}', 'COMPLETED', 0, %s, %s, %s, 0, 1, 3,"
                " 'default', false, 0 FROM generate_series(1, 20000) AS g",
                (now, now, now),
            )
            admin.execute("VACUUM ANALYZE scheduled_commands")
        assert not await store.claim_due(now=now, limit=10, worker_id="w", lease_duration=timedelta(minutes=1))
        _insert_due(sql_url, "burst", 50_000, now)
        reports = await _explained(connections)
        claimed = await store.claim_due(now=now, limit=10, worker_id="w", lease_duration=timedelta(minutes=1))
        assert [entry.id for entry in claimed] == [f"burst-{g}" for g in range(50000, 49990, -1)]  # the earliest due
        claims = [report for report in reports if "FOR UPDATE SKIP LOCKED" in report["Query Text"]]
        assert claims, "no claim was reported"
        scans = [scan for report in claims for scan in _scan_rows(report["Plan"]) if "scheduled_commands" in scan[1]]
        assert all(rows <= 500 for _, _, rows in scans), [scan for scan in scans if scan[2] > 500]
        assert not [scan for scan in scans if "pending_due" in scan[1]], scans
        assert await store.next_due_at() == now - timedelta(milliseconds=49990)  # the eleventh earliest


def _insert_due(url: str, prefix: str, count: int, now: datetime) -> None:
    """``count`` PENDING entries, ids ``{prefix}-1`` up, the n-th due n ms before ``now``, in one statement beside
    the store (whose statistics are left as the test made them)."""
    with psycopg.connect(libpq(url), autocommit=True) as admin:
        admin.execute(
            "INSERT INTO scheduled_commands (id, command_type, payload, status, priority, scheduled_for,"
            " created_at, retry_count, attempt_count, max_retries, queue, has_dependants, pending_parents)"
            " SELECT %s || '-' || g, 'tests.Job', '{}', 'PENDING', 0, %s - g * interval '1 ms', %s, 0, 0, 3,"
            " 'default', false, 0 FROM generate_series(1, %s) AS g",
            (prefix, now, now, count),
        )


async def _explained(connections: dict[int, Any]) -> list[dict[str, Any]]:
    """From now on, the plan of every statement on these connections, as auto_explain reports it (a notice)."""
    reports: list[dict[str, Any]] = []
    for conn in connections.values():
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_format = json",
            "SET auto_explain.log_level = notice",
        ):
            await conn.execute(setting)
        conn.add_notice_handler(lambda notice: reports.append(_plan_of(notice.message_primary)))
    return reports


async def test_parents_ending_read_their_own_rows_whatever_is_in_flight_or_waiting(sql_url: str) -> None:
    """The statement that ends parents and releases their dependants reads its rows by id too: with 2,000 entries
    PROCESSING and 2,000 WAITING, ending 10 parents (one dependant each) reads about that many rows (its generic
    plan walked every PROCESSING entry, and every WAITING one)."""
    now = datetime.now(UTC)
    async with SqlStore(sql_url) as store:
        connections = _traced_connections(store)
        claimed = await _all_claimed(store, now, 2_030)
        waiting = [_entry(now, priority=0) for _ in range(2_000)]
        await store.add_dependants(waiting, {child.id: Dependency((claimed[0].id,)) for child in waiting})
        children = {parent.id: _entry(now, priority=0) for parent in claimed[10:30]}
        await store.add_dependants(
            list(children.values()), {child.id: Dependency((parent,)) for parent, child in children.items()}
        )
        attempt = AttemptRecord(attempt=1, worker_id="w", started_at=now, finished_at=now, outcome="completed")
        for entry in claimed[20:30]:  # the statement's plans are made (and cached) before the one measured
            assert await store.complete(entry.id, entry.lease_token or "", result_payload=None, attempt=attempt)
        scans = await _scans_while_ending(store, connections, claimed[10:20], attempt, "scheduled_command_dependencies")
        assert all(rows <= 50 for _, _, rows in scans), [scan for scan in scans if scan[2] > 50]
        for parent in claimed[10:20]:
            child = await store.get(children[parent.id].id)
            assert child is not None and child.status is ScheduledCommandStatus.PENDING


async def _scans_while_ending(
    store: SqlStore,
    connections: dict[int, Any],
    entries: list[ScheduledCommandEntry],
    attempt: AttemptRecord,
    statement_marker: str,
) -> list[tuple[str, str, float]]:
    """Complete ``entries`` at once and return the scans of the entries' table by the statements whose text holds
    ``statement_marker``, as the server planned and ran them."""
    reports = await _explained(connections)
    ended = await asyncio.gather(
        *(store.complete(entry.id, entry.lease_token or "", result_payload=None, attempt=attempt) for entry in entries)
    )
    assert all(ended)
    matching = [report for report in reports if statement_marker in report["Query Text"]]
    assert matching, f"no statement holding {statement_marker!r} was reported"
    scans = [scan for report in matching for scan in _scan_rows(report["Plan"]) if "scheduled_commands" in scan[1]]
    assert scans
    return scans


def _traced_connections(store: SqlStore) -> dict[int, Any]:
    """The worker's connections (by ``id``), each added as a statement first takes it."""
    worker = store._backend.worker  # type: ignore[attr-defined]
    assert worker is not None, "the PostgreSQL store claims through its worker's connections"
    connections: dict[int, Any] = {}
    worker.checkout_hooks.append(lambda conn: connections.setdefault(id(conn), conn))
    return connections


async def _all_claimed(store: SqlStore, now: datetime, count: int) -> list[ScheduledCommandEntry]:
    """``count`` new entries, all claimed (PROCESSING)."""
    await store.add([_entry(now, priority=0) for _ in range(count)])
    claimed = await store.claim_due(now=now, limit=count, worker_id="w", lease_duration=timedelta(minutes=5))
    assert len(claimed) == count
    return claimed
