"""The contract: the fenced outcomes of a claim, cancelling, requeueing and dismissing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

import pytest

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandEntry, ScheduledCommandStatus

from ._helpers import (
    BASE,
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    PENDING,
    PROCESSING,
    add_and_claim,
    at,
    claim,
    claimed_ids,
    entry_in_status,
    make_attempt,
    make_entry,
)

# -- outcomes --------------------------------------------------------------------------------------------------


async def test_complete(store: ScheduledCommandStore) -> None:
    """complete: COMPLETED, ``completed_at = attempt.finished_at``, result stored, lease cleared, attempt recorded."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    attempt = make_attempt(finished=4)
    assert await store.complete(claimed.id, claimed.lease_token, result_payload='{"n": 1}', attempt=attempt)
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is COMPLETED
    assert entry.completed_at == at(4)
    assert entry.result_payload == '{"n": 1}'
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert entry.started_at == claimed.started_at
    assert entry.retry_count == 0
    assert await store.get_attempts(claimed.id) == [attempt]
    assert await claim(store, now=at(1000)) == []


async def test_complete_without_result(store: ScheduledCommandStore) -> None:
    """complete with ``result_payload=None`` leaves no result."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    assert await store.complete(claimed.id, claimed.lease_token, result_payload=None, attempt=make_attempt())
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is COMPLETED
    assert entry.result_payload is None


async def test_retry_later(store: ScheduledCommandStore) -> None:
    """retry_later: PENDING due at ``due``, ``retry_count + 1``, error stored, attempt recorded, lease cleared."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    attempt = make_attempt(outcome="failed", finished=2)
    assert await store.retry_later(
        claimed.id, claimed.lease_token, due=at(30), error_message="ValueError: bad", attempt=attempt
    )
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is PENDING
    assert entry.scheduled_for == at(30)
    assert entry.retry_count == 1
    assert entry.error_message == "ValueError: bad"
    assert entry.completed_at is None
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert await store.get_attempts(claimed.id) == [attempt]


async def test_retried_entry_is_claimable_again_only_once_due(store: ScheduledCommandStore) -> None:
    """After retry_later the entry is not claimed before ``due`` and is claimed from then on."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    await store.retry_later(
        claimed.id, claimed.lease_token, due=at(30), error_message="E: x", attempt=make_attempt(outcome="failed")
    )
    assert await claim(store, now=at(29)) == []
    (again,) = await claim(store, now=at(30))
    assert again.id == claimed.id
    assert again.retry_count == 1
    assert again.started_at == at(30)


async def test_dead_letter(store: ScheduledCommandStore) -> None:
    """dead_letter: FAILED, ``retry_count + 1``, ``completed_at = attempt.finished_at``, error and attempt kept."""
    claimed = await add_and_claim(store)
    assert claimed.lease_token is not None
    attempt = make_attempt(outcome="timed_out", finished=9)
    assert await store.dead_letter(claimed.id, claimed.lease_token, error_message="TimeoutError: ", attempt=attempt)
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is FAILED
    assert entry.retry_count == 1
    assert entry.completed_at == at(9)
    assert entry.error_message == "TimeoutError: "
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert await store.get_attempts(claimed.id) == [attempt]
    assert await claim(store, now=at(1000)) == []


async def test_expire(store: ScheduledCommandStore) -> None:
    """expire: EXPIRED with ``completed_at = now`` and no attempt recorded."""
    claimed = await add_and_claim(store, expires_at=at(1))
    assert claimed.lease_token is not None
    assert await store.expire(claimed.id, claimed.lease_token, now=at(5))
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is EXPIRED
    assert entry.completed_at == at(5)
    assert entry.retry_count == 0
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert await store.get_attempts(claimed.id) == []
    assert await claim(store, now=at(1000)) == []


async def test_release(store: ScheduledCommandStore) -> None:
    """release: PENDING, due time and ``retry_count`` unchanged, no attempt, claimable again."""
    claimed = await add_and_claim(store, scheduled_for=at(3), retry_count=2)
    assert claimed.lease_token is not None
    assert await store.release(claimed.id, claimed.lease_token)
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is PENDING
    assert entry.scheduled_for == at(3)
    assert entry.retry_count == 2
    assert (entry.lease_owner, entry.lease_token, entry.lease_expires_at) == (None, None, None)
    assert await store.get_attempts(claimed.id) == []
    assert await claimed_ids(store, now=at(3)) == [claimed.id]


async def test_released_entry_keeps_its_place_in_line(store: ScheduledCommandStore) -> None:
    """A released entry is claimed again in its original order among equals."""
    entries = [make_entry() for _ in range(3)]
    await store.add(entries)
    (first,) = await claim(store, limit=1)
    assert first.lease_token is not None
    assert await store.release(first.id, first.lease_token)
    assert await claimed_ids(store) == [e.id for e in entries]


# -- cancel and requeue ----------------------------------------------------------------------------------------


async def test_cancel_pending(store: ScheduledCommandStore) -> None:
    """cancel: PENDING -> CANCELLED with ``completed_at = now``; returns the cancelled entry; no longer claimable."""
    entry = make_entry(scheduled_for=at(5))
    await store.add([entry])
    cancelled = await store.cancel(entry.id, now=at(2))
    assert cancelled is not None
    assert cancelled.id == entry.id
    assert cancelled.status is CANCELLED
    assert cancelled.completed_at == at(2)
    assert await store.get(entry.id) == cancelled
    assert await claim(store, now=at(100)) == []


@pytest.mark.parametrize("status", [PROCESSING, COMPLETED, FAILED, CANCELLED, EXPIRED])
async def test_cancel_not_pending_returns_none(store: ScheduledCommandStore, status: ScheduledCommandStatus) -> None:
    """cancel of an entry that is not PENDING returns None and changes nothing."""
    entry_id = await entry_in_status(store, status)
    before = await store.get(entry_id)
    assert await store.cancel(entry_id, now=at(50)) is None
    assert await store.get(entry_id) == before


async def test_cancel_unknown_returns_none(store: ScheduledCommandStore) -> None:
    """cancel of an unknown id returns None."""
    assert await store.cancel(str(uuid.uuid4()), now=BASE) is None


async def test_cancelled_entry_waiting_in_line_is_not_claimed(store: ScheduledCommandStore) -> None:
    """An entry cancelled after a claim saw it due (but took another) is never claimed."""
    first, second = make_entry(priority=1), make_entry()
    await store.add([first, second])
    assert await claimed_ids(store, limit=1) == [first.id]
    assert await store.cancel(second.id, now=BASE) is not None
    assert await claim(store) == []


async def test_cancel_by_correlation_id(store: ScheduledCommandStore) -> None:
    """cancel_by_correlation_id cancels only the PENDING entries of that correlation id and returns them."""
    pending = [make_entry(correlation_id="c-1"), make_entry(correlation_id="c-1", scheduled_for=at(60))]
    await store.add(pending)
    processing_id = await entry_in_status(store, PROCESSING, correlation_id="c-1", scheduled_for=at(-10))
    completed_id = await entry_in_status(store, COMPLETED, correlation_id="c-1", scheduled_for=at(-10))
    other = make_entry(correlation_id="c-2")
    uncorrelated = make_entry()
    await store.add([other, uncorrelated])
    processing_before = await store.get(processing_id)
    completed_before = await store.get(completed_id)

    cancelled = await store.cancel_by_correlation_id("c-1", now=at(3))

    assert sorted(e.id for e in cancelled) == sorted(e.id for e in pending)
    for entry in cancelled:
        assert entry.status is CANCELLED
        assert entry.completed_at == at(3)
        assert await store.get(entry.id) == entry
    assert await store.get(processing_id) == processing_before
    assert await store.get(completed_id) == completed_before
    assert await store.get(other.id) == other
    assert await store.get(uncorrelated.id) == uncorrelated
    assert await store.cancel_by_correlation_id("c-1", now=at(4)) == []
    assert await store.cancel_by_correlation_id("unknown", now=at(4)) == []


async def test_requeue_failed(store: ScheduledCommandStore) -> None:
    """requeue: FAILED -> PENDING due ``now`` with ``retry_count`` 0, error kept; claimable at ``now``."""
    claimed = await add_and_claim(store, retry_count=3)
    assert claimed.lease_token is not None
    await store.dead_letter(
        claimed.id, claimed.lease_token, error_message="E: x", attempt=make_attempt(outcome="failed")
    )
    assert await store.requeue(claimed.id, now=at(500))
    entry = await store.get(claimed.id)
    assert entry is not None
    assert entry.status is PENDING
    assert entry.scheduled_for == at(500)
    assert entry.retry_count == 0
    assert entry.error_message == "E: x"
    assert len(await store.get_attempts(claimed.id)) == 1
    assert await claim(store, now=at(499)) == []
    assert await claimed_ids(store, now=at(500)) == [claimed.id]


@pytest.mark.parametrize("status", [PENDING, PROCESSING, COMPLETED, CANCELLED, EXPIRED])
async def test_requeue_not_failed_returns_false(store: ScheduledCommandStore, status: ScheduledCommandStatus) -> None:
    """requeue of an entry that is not FAILED returns False and changes nothing."""
    entry_id = await entry_in_status(store, status)
    before = await store.get(entry_id)
    assert not await store.requeue(entry_id, now=at(50))
    assert await store.get(entry_id) == before


async def test_requeue_unknown_returns_false(store: ScheduledCommandStore) -> None:
    """requeue of an unknown id returns False."""
    assert not await store.requeue(str(uuid.uuid4()), now=BASE)


# -- dismiss (a dead letter) -----------------------------------------------------------------------------------


async def dead_lettered(store: ScheduledCommandStore, **overrides: Any) -> ScheduledCommandEntry:
    """An entry dead-lettered after two failed attempts (the second at ``BASE + 20s``); the FAILED entry."""
    entry = make_entry(max_retries=1, **overrides)
    await store.add([entry])
    for number in (1, 2):
        (claimed,) = await claim(store, now=at(10 * (number - 1)))
        assert claimed.lease_token is not None
        attempt = make_attempt(number, outcome="failed", finished=10 * number)
        if number == 1:
            assert await store.retry_later(
                entry.id, claimed.lease_token, due=at(10), error_message="E: first", attempt=attempt
            )
        else:
            assert await store.dead_letter(entry.id, claimed.lease_token, error_message="E: second", attempt=attempt)
    failed = await store.get(entry.id)
    assert failed is not None and failed.status is FAILED
    return failed


async def test_dismiss_failed_keeps_its_error_and_attempts(store: ScheduledCommandStore) -> None:
    """dismiss: FAILED -> CANCELLED with ``completed_at = now``; the error, counts and attempts are kept; it leaves
    the FAILED entries and is never claimed."""
    failed = await dead_lettered(store)
    attempts = await store.get_attempts(failed.id)
    assert [a.attempt for a in attempts] == [1, 2]

    dismissed = await store.dismiss(failed.id, now=at(500))

    assert dismissed is not None
    assert dismissed == failed.model_copy(update={"status": CANCELLED, "completed_at": at(500)})
    assert (dismissed.error_message, dismissed.retry_count, dismissed.attempt_count) == ("E: second", 2, 2)
    assert await store.get(failed.id) == dismissed
    assert await store.get_attempts(failed.id) == attempts
    assert await store.list_entries(status=FAILED) == []
    assert await store.list_entries(status=CANCELLED) == [dismissed]
    counts = await store.count_by_status()
    assert (counts[FAILED], counts[CANCELLED]) == (0, 1)
    assert await store.count_by_command_type(FAILED) == {}
    assert await store.next_due_at() is None
    assert await claim(store, now=at(10_000)) == []


@pytest.mark.parametrize("status", [PENDING, PROCESSING, COMPLETED, CANCELLED, EXPIRED])
async def test_dismiss_not_failed_returns_none(store: ScheduledCommandStore, status: ScheduledCommandStatus) -> None:
    """dismiss of an entry that is not FAILED returns None and changes nothing (a PENDING one stays claimable)."""
    entry_id = await entry_in_status(store, status)
    before = await store.get(entry_id)
    assert await store.dismiss(entry_id, now=at(50)) is None
    assert await store.get(entry_id) == before
    if status is PENDING:
        assert await claimed_ids(store) == [entry_id]


async def test_dismiss_unknown_returns_none(store: ScheduledCommandStore) -> None:
    """dismiss of an unknown id returns None and adds nothing."""
    assert await store.dismiss(str(uuid.uuid4()), now=BASE) is None
    assert sum((await store.count_by_status()).values()) == 0


async def test_dismissed_entry_cannot_be_requeued_or_dismissed_again(store: ScheduledCommandStore) -> None:
    """A dismissed entry is CANCELLED for good: requeue and a second dismiss refuse it; a requeued one cannot be
    dismissed until it fails again."""
    failed = await dead_lettered(store)
    dismissed = await store.dismiss(failed.id, now=at(100))
    assert dismissed is not None
    assert not await store.requeue(failed.id, now=at(200))
    assert await store.dismiss(failed.id, now=at(200)) is None
    assert await store.get(failed.id) == dismissed

    other = await dead_lettered(store)
    assert await store.requeue(other.id, now=at(300))
    assert await store.dismiss(other.id, now=at(300)) is None
    requeued = await store.get(other.id)
    assert requeued is not None and requeued.status is PENDING
    assert await claimed_ids(store, now=at(300)) == [other.id]


async def test_dismissed_entry_is_purged_like_any_cancelled_one(store: ScheduledCommandStore) -> None:
    """A dismissed entry is purgeable by its dismissal time (``completed_at``), not by when it failed."""
    failed = await dead_lettered(store)
    assert await store.dismiss(failed.id, now=at(1000)) is not None
    assert await store.count_purgeable(older_than=at(999)) == 0
    assert await store.purge(older_than=at(999), statuses=[FAILED, CANCELLED]) == 0
    assert await store.count_purgeable(older_than=at(1001), statuses=[CANCELLED]) == 1
    assert await store.purge(older_than=at(1001), statuses=[FAILED]) == 0
    assert await store.purge(older_than=at(1001), statuses=[CANCELLED]) == 1
    assert await store.get(failed.id) is None
    assert await store.get_attempts(failed.id) == []


async def test_concurrent_requeue_and_dismiss_have_exactly_one_winner(store: ScheduledCommandStore) -> None:
    """Requeue and dismiss racing on one dead letter (several of each, at once): exactly one changes it, and the
    entry ends in the winner's status."""
    for round_ in range(3):
        failed = await dead_lettered(store)
        calls: list[Awaitable[bool | ScheduledCommandEntry | None]] = [
            store.requeue(failed.id, now=at(100)) for _ in range(3)
        ]
        calls += [store.dismiss(failed.id, now=at(100)) for _ in range(3)]
        if round_ % 2:
            calls.reverse()
        results = await asyncio.gather(*calls)
        requeued = [r for r in results if r is True]
        dismissed: list[ScheduledCommandEntry] = [r for r in results if isinstance(r, ScheduledCommandEntry)]
        assert len(requeued) + len(dismissed) == 1, results
        entry = await store.get(failed.id)
        assert entry is not None
        assert entry.status is (PENDING if requeued else CANCELLED)
        if dismissed:
            assert dismissed[0] == entry
        if entry.status is PENDING:  # out of the way of the next round's claims
            assert await store.cancel(entry.id, now=at(100)) is not None
