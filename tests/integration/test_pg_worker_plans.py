"""PostgreSQL: the worker's prepared statements are planned once per connection, not at every execution.

The claim is one large statement whose planning cost more server CPU than running it (1.6 ms of planning per claim,
61 % of the server's work in a default drain) while PostgreSQL kept choosing a custom plan for it at every
execution. Its shape is fixed by its text (index probes and explicit limits), so the worker's connections use one
generic plan per statement: what this checks, from the server's own count of each session's plans.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scheduling import ScheduledCommandStatus
from stores.entries import AttemptRecord, ScheduledCommandEntry
from stores.sql import SqlStore

pytestmark = pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)

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
        worker = store._backend.worker  # type: ignore[attr-defined]
        assert worker is not None, "the PostgreSQL store claims through its worker's connections"
        connections: dict[int, Any] = {}
        worker.checkout_hooks.append(lambda conn: connections.setdefault(id(conn), conn))
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
