"""What the contract suite's tests share: a fixed base time, entries and attempts made from it, and the steps that
bring an entry into a status. Times come from ``BASE``, never from the wall clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from stores.base import ScheduledCommandStore
from stores.entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from stores.schedules import StoredSchedule

#: Builds an unopened, empty store that may keep its files in the given (fresh, empty) directory; stores built for
#: one directory share their data when the store is durable (an SQLite file, a database).
StoreFactory = Callable[[Path], ScheduledCommandStore]

PENDING = ScheduledCommandStatus.PENDING
PROCESSING = ScheduledCommandStatus.PROCESSING
COMPLETED = ScheduledCommandStatus.COMPLETED
FAILED = ScheduledCommandStatus.FAILED
CANCELLED = ScheduledCommandStatus.CANCELLED
EXPIRED = ScheduledCommandStatus.EXPIRED

#: Every time in this suite is an offset from here (whole seconds, so any backend round-trips them exactly).
BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
WORKER = "worker-1"


def at(seconds: float) -> datetime:
    """``BASE`` plus ``seconds``."""
    return BASE + timedelta(seconds=seconds)


def make_entry(**overrides: Any) -> ScheduledCommandEntry:
    """A valid PENDING entry due at ``BASE``; ``overrides`` replace any field."""
    fields: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "command_type": "tests.stores.SendEmail",
        "payload": '{"to": "someone@example.com"}',
        "status": PENDING,
        "scheduled_for": BASE,
        "created_at": BASE,
    }
    fields.update(overrides)
    return ScheduledCommandEntry.model_validate(fields)


def make_attempt(
    number: int = 1, *, outcome: str = "completed", finished: float = 1, **overrides: Any
) -> AttemptRecord:
    """An attempt by ``WORKER`` that started at ``BASE`` and finished ``finished`` seconds later."""
    fields: dict[str, Any] = {
        "attempt": number,
        "worker_id": WORKER,
        "started_at": BASE,
        "finished_at": at(finished),
        "outcome": outcome,
        "error": None if outcome == "completed" else "RuntimeError: boom\nTraceback ...",
    }
    fields.update(overrides)
    return AttemptRecord.model_validate(fields)


async def claim(
    store: ScheduledCommandStore, *, now: datetime = BASE, limit: int = 100, worker_id: str = WORKER
) -> list[ScheduledCommandEntry]:
    return await store.claim_due(now=now, limit=limit, worker_id=worker_id, lease_duration=LEASE)


async def add_and_claim(store: ScheduledCommandStore, **overrides: Any) -> ScheduledCommandEntry:
    """Add one entry and claim it at its due time; the claimed (PROCESSING) entry.

    Its priority is high unless overridden, so that it, not another PENDING entry of the test, is the one claimed.
    """
    entry = make_entry(**{"priority": 1000, **overrides})
    await store.add([entry])
    claimed = await claim(store, now=entry.scheduled_for, limit=1)
    assert [c.id for c in claimed] == [entry.id]
    return claimed[0]


async def claimed_ids(store: ScheduledCommandStore, *, now: datetime = BASE, limit: int = 100) -> list[str]:
    return [entry.id for entry in await claim(store, now=now, limit=limit)]


async def eventually(condition: Callable[[], bool], *, within: float = 2.0) -> None:
    """Wait until ``condition()`` holds (stores that notify through their backend may call listeners later)."""
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


#: Every lease-fenced method that ends a claim, called with an entry id and a token.
FencedCall = Callable[[ScheduledCommandStore, str, str], Awaitable[bool]]
FENCED_OUTCOMES: dict[str, FencedCall] = {
    "complete": lambda s, i, t: s.complete(i, t, result_payload='{"ok": true}', attempt=make_attempt()),
    "retry_later": lambda s, i, t: s.retry_later(
        i, t, due=at(100), error_message="RuntimeError: boom", attempt=make_attempt(outcome="failed")
    ),
    "dead_letter": lambda s, i, t: s.dead_letter(
        i, t, error_message="RuntimeError: boom", attempt=make_attempt(outcome="failed")
    ),
    "expire": lambda s, i, t: s.expire(i, t, now=at(1)),
    "release": lambda s, i, t: s.release(i, t),
}
fenced_outcome = pytest.mark.parametrize("outcome", list(FENCED_OUTCOMES.values()), ids=list(FENCED_OUTCOMES))

#: Transitions that put a PROCESSING entry into each terminal status.
TO_TERMINAL: dict[ScheduledCommandStatus, str] = {
    COMPLETED: "complete",
    FAILED: "dead_letter",
    EXPIRED: "expire",
}


async def entry_in_status(store: ScheduledCommandStore, status: ScheduledCommandStatus, **overrides: Any) -> str:
    """Add an entry due at ``BASE`` and bring it into ``status`` (terminal ones finish at ``BASE + 1s``)."""
    if status is PENDING:
        entry = make_entry(**overrides)
        await store.add([entry])
        return entry.id
    if status is CANCELLED:
        entry = make_entry(**overrides)
        await store.add([entry])
        assert await store.cancel(entry.id, now=at(1)) is not None
        return entry.id
    claimed = await add_and_claim(store, **overrides)
    if status is not PROCESSING:
        assert claimed.lease_token is not None
        assert await FENCED_OUTCOMES[TO_TERMINAL[status]](store, claimed.id, claimed.lease_token)
    return claimed.id


async def finish_at(store: ScheduledCommandStore, status: ScheduledCommandStatus, seconds: float) -> str:
    """An entry that reached terminal ``status`` with ``completed_at = at(seconds)``."""
    if status is CANCELLED:
        entry = make_entry(scheduled_for=at(seconds + 1))
        await store.add([entry])
        assert await store.cancel(entry.id, now=at(seconds)) is not None
        return entry.id
    claimed = await add_and_claim(store, scheduled_for=at(min(seconds, 0)))
    assert claimed.lease_token is not None
    token = claimed.lease_token
    if status is COMPLETED:
        assert await store.complete(claimed.id, token, result_payload=None, attempt=make_attempt(finished=seconds))
    elif status is FAILED:
        attempt = make_attempt(outcome="failed", finished=seconds)
        assert await store.dead_letter(claimed.id, token, error_message="RuntimeError: boom", attempt=attempt)
    else:
        assert await store.expire(claimed.id, token, now=at(seconds))
    return claimed.id


def make_schedule(**overrides: Any) -> StoredSchedule:
    fields: dict[str, Any] = {
        "name": "nightly",
        "command_type": "tests.stores.Report",
        "payload": "{}",
        "cron": "0 2 * * *",
        "timezone": "Europe/Paris",
        "options_json": '{"priority":1}',
        "created_at": BASE,
        "updated_at": BASE,
    }
    fields.update(overrides)
    return StoredSchedule.model_validate(fields)


def make_occurrence(name: str, generation: int, seconds: float, **overrides: Any) -> ScheduledCommandEntry:
    return make_entry(
        recurring_name=name,
        occurrence_at=at(seconds),
        scheduled_for=at(seconds),
        idempotency_key=f"recurring:{name}:{generation}:{at(seconds).isoformat()}",
        occurrence_generation=generation,
        **overrides,
    )
