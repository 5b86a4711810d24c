"""Outcomes over time (``count_outcomes``): completed, retried, failed and expired per minute or hour and command
type (on a store that ``keeps_outcome_counts``, as SqlStore's rollup, settled hours survive a purge), and the latest
occurrences of a recurring schedule (``list_occurrences``). ``OutcomeCountContract``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stores.base import ScheduledCommandStore
from stores.outcomes import HOUR, MINUTE, OutcomeCount

from ._helpers import (
    BASE,
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    PENDING,
    add_and_claim,
    at,
    claim,
    finish_at,
    make_attempt,
    make_entry,
)

SEND, CHARGE = "tests.stores.SendEmail", "tests.stores.Charge"


async def retried_then(store: ScheduledCommandStore, end: str, *, command_type: str = SEND, seconds: float = 0) -> str:
    """An entry whose first attempt failed at ``seconds`` and was retried, then ``end``: completed or dead-lettered
    by its second attempt at ``seconds + 30``."""
    claimed = await add_and_claim(store, command_type=command_type, scheduled_for=at(seconds - 1))
    assert claimed.lease_token is not None
    failed = make_attempt(1, outcome="failed", finished=seconds)
    due = at(seconds + 10)
    assert await store.retry_later(claimed.id, claimed.lease_token, due=due, error_message="x", attempt=failed)
    [again] = await claim(store, now=at(seconds + 10), limit=1)
    assert again.id == claimed.id and again.lease_token is not None
    second = make_attempt(2, outcome="completed" if end == "completed" else "timed_out", finished=seconds + 30)
    if end == "completed":
        assert await store.complete(again.id, again.lease_token, result_payload=None, attempt=second)
    else:
        assert await store.dead_letter(again.id, again.lease_token, error_message="x", attempt=second)
    return again.id


async def test_each_outcome_is_counted_once_at_its_own_time(store: ScheduledCommandStore) -> None:
    """A retried attempt counts as retried when it failed; the attempt that dead-letters counts as failed, not
    retried; cancelled entries are no outcome; per minute and command type, only non-zero counts."""
    await retried_then(store, "completed")  # retried at 0 s, completed at 30 s
    await retried_then(store, "failed", command_type=CHARGE, seconds=60)  # retried at 60 s, failed at 90 s
    await finish_at(store, COMPLETED, 5)
    await finish_at(store, EXPIRED, 70)
    await finish_at(store, FAILED, 3600)  # outside [since, until)
    await finish_at(store, CANCELLED, 10)
    assert await store.count_outcomes(BASE, at(3600), unit=MINUTE) == [
        OutcomeCount(BASE, SEND, "completed", 2),
        OutcomeCount(BASE, SEND, "retried", 1),
        OutcomeCount(at(60), CHARGE, "retried", 1),
        OutcomeCount(at(60), CHARGE, "failed", 1),
        OutcomeCount(at(60), SEND, "expired", 1),
    ]
    assert await store.count_outcomes(BASE - HOUR, at(3601), unit=HOUR) == [
        OutcomeCount(BASE, CHARGE, "retried", 1),
        OutcomeCount(BASE, CHARGE, "failed", 1),
        OutcomeCount(BASE, SEND, "completed", 2),
        OutcomeCount(BASE, SEND, "retried", 1),
        OutcomeCount(BASE, SEND, "expired", 1),
        OutcomeCount(BASE + HOUR, SEND, "failed", 1),
    ]


async def test_settled_hours_keep_their_counts_after_the_entries_are_purged(store: ScheduledCommandStore) -> None:
    """Once an hour was asked for after it settled, its counts stay the same when its entries are purged on a store
    that ``keeps_outcome_counts`` (SQL keeps a rollup); a store without one counts what it still holds."""
    await finish_at(store, COMPLETED, 10)
    await finish_at(store, FAILED, 20)
    later = BASE + 3 * HOUR
    before = await store.count_outcomes(BASE, later, unit=HOUR)
    assert [(c.outcome, c.count) for c in before] == [("completed", 1), ("failed", 1)]
    assert await store.purge(older_than=later, limit=100) == 2
    after = await store.count_outcomes(BASE, later, unit=HOUR)
    assert after == (before if store.keeps_outcome_counts else [])


async def test_count_outcomes_refuses_other_units_and_reversed_ranges(store: ScheduledCommandStore) -> None:
    with pytest.raises(ValueError, match="per minute or per hour"):
        await store.count_outcomes(BASE, at(60), unit=timedelta(seconds=10))
    with pytest.raises(ValueError, match="is before since"):
        await store.count_outcomes(at(60), BASE, unit=MINUTE)


async def test_list_occurrences_gives_a_schedules_newest_entries_in_every_status(store: ScheduledCommandStore) -> None:
    """The entries of one recurring schedule, newest first, whatever their status; other schedules' and plain
    entries are left out."""
    nightly = [make_entry(recurring_name="nightly", scheduled_for=at(n)) for n in range(3)]
    await store.add([nightly[0], make_entry(recurring_name="hourly"), make_entry(), nightly[1], nightly[2]])
    assert await store.cancel(nightly[1].id, now=at(5)) is not None
    listed = await store.list_occurrences("nightly")
    assert [(e.id, e.status) for e in listed] == [
        (nightly[2].id, PENDING),
        (nightly[1].id, CANCELLED),
        (nightly[0].id, PENDING),
    ]
    assert [e.id for e in await store.list_occurrences("nightly", limit=1)] == [nightly[2].id]
    assert await store.list_occurrences("nobody") == []
