"""Outcomes on SqlStore written in batches (on PostgreSQL one statement per batch): fenced, audited, waking others."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from scheduling_app import Record, make_app

from scheduling import AttemptRecord, ScheduledCommandStatus
from stores import SqlStore

S = ScheduledCommandStatus


def attempt(number: int, worker: str, at: datetime, outcome: str = "failed") -> AttemptRecord:
    return AttemptRecord(attempt=number, worker_id=worker, started_at=at, finished_at=at, outcome=outcome, error="boom")


async def test_batched_outcomes_are_fenced_and_record_attempts_only_when_held(sql_url: str) -> None:
    """Outcomes written together: each held one changes its entry and records its attempt; a stale token changes
    nothing and records nothing."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        ids = await app.scheduler.schedule_many([Record(value=str(i)) for i in range(4)])
        now = app.clock.now()
        claimed = await store.claim_due(now=now, limit=4, worker_id="w", lease_duration=timedelta(minutes=1))
        assert sorted(e.id for e in claimed) == sorted(ids)
        a, b, c, d = claimed
        completed = attempt(1, "w", now, "completed")
        later = now + timedelta(seconds=10)
        results = await asyncio.gather(
            store.complete(a.id, a.lease_token or "", result_payload='{"ok":1}', attempt=completed),
            store.retry_later(b.id, b.lease_token or "", due=later, error_message="E: x", attempt=attempt(1, "w", now)),
            store.dead_letter(c.id, "stale-token", error_message="E: y", attempt=attempt(1, "w", now)),
            store.release(d.id, d.lease_token or ""),
        )
        assert results == [True, True, False, True]
        done, retried, held, released = [await store.get(e.id) for e in (a, b, c, d)]
        assert done is not None and (done.status, done.result_payload, done.attempt_count) == (
            S.COMPLETED,
            '{"ok":1}',
            1,
        )
        assert retried is not None and (retried.status, retried.retry_count) == (S.PENDING, 1)
        assert retried.scheduled_for == now + timedelta(seconds=10) and retried.error_message == "E: x"
        assert held is not None and (held.status, held.lease_token) == (S.PROCESSING, c.lease_token)
        assert released is not None and (released.status, released.attempt_count) == (S.PENDING, 0)
        assert [r.outcome for r in await store.get_attempts(a.id)] == ["completed"]
        assert [r.outcome for r in await store.get_attempts(b.id)] == ["failed"]
        assert await store.get_attempts(c.id) == []
        assert await store.get_attempts(d.id) == []


@pytest.mark.parametrize("sql_url", ["postgresql"], indirect=True)
async def test_a_retry_wakes_listeners_of_other_stores(sql_url: str) -> None:
    """PostgreSQL: an entry put back to PENDING by a retry wakes the workers of other processes (NOTIFY)."""
    async with SqlStore(sql_url) as writer, SqlStore(sql_url) as other:
        app = make_app(store=writer)
        heard: list[datetime] = []
        other.add_wakeup_listener(heard.append)
        await asyncio.sleep(0.2)  # the other store's LISTEN connection is up
        [entry_id] = await app.scheduler.schedule_many([Record(value="x")])
        now = datetime.now(UTC)
        [claimed] = await writer.claim_due(now=now, limit=1, worker_id="w", lease_duration=timedelta(minutes=1))
        assert claimed.id == entry_id
        due = now + timedelta(seconds=30)
        assert await writer.retry_later(
            claimed.id, claimed.lease_token or "", due=due, error_message="E", attempt=attempt(1, "w", now)
        )
        async with asyncio.timeout(5):
            while not any(abs(h - due) < timedelta(milliseconds=1) for h in heard):
                await asyncio.sleep(0.01)


async def test_a_stale_and_the_current_holder_finishing_together_leave_one_winner(sql_url: str) -> None:
    """A lease taken over (the old holder stalled past it) and both holders finishing at the same moment, so their
    outcomes meet in one group commit: only the current holder's counts, and only its attempt is recorded."""
    async with SqlStore(sql_url) as store:
        app = make_app(store=store)
        entry_id = await app.scheduler.schedule(Record(value="contested"))
        now = app.clock.now()
        [old] = await store.claim_due(now=now, limit=1, worker_id="stalled", lease_duration=timedelta(seconds=1))
        later = now + timedelta(seconds=5)
        [(new, _, _)] = await store.reclaim_expired_leases(
            now=later, limit=10, worker_id="current", lease_duration=timedelta(minutes=1)
        )
        assert new.lease_token != old.lease_token
        results = await asyncio.gather(
            store.complete(
                entry_id, old.lease_token or "", result_payload=None, attempt=attempt(1, "stalled", later, "completed")
            ),
            store.dead_letter(
                entry_id, new.lease_token or "", error_message="E: lost", attempt=attempt(1, "current", later)
            ),
        )
        assert results == [False, True]
        stored = await store.get(entry_id)
        assert stored is not None and stored.status is S.FAILED
        assert [a.worker_id for a in await store.get_attempts(entry_id)] == ["current"]
