"""``count_by_status_estimated`` on every store: exact within the bound asked; above it, an estimate (flagged) that
is never below the bound, or the exact count. (PostgreSQL's estimates: ``tests/integration/test_sql_status_counts``.)"""

from __future__ import annotations

import pytest

from stores.base import ScheduledCommandStore, StatusCount
from stores.entries import ScheduledCommandStatus

from ._helpers import entry_in_status, make_entry

PENDING, FAILED = ScheduledCommandStatus.PENDING, ScheduledCommandStatus.FAILED


async def test_every_status_is_exact_within_the_bound(store: ScheduledCommandStore) -> None:
    """Up to the bound each count is exact, and every status is present (zero included)."""
    await store.add([make_entry() for _ in range(3)])
    await entry_in_status(store, FAILED)
    counts = await store.count_by_status_estimated(exact_up_to=3)
    expected = dict.fromkeys(ScheduledCommandStatus, StatusCount(0)) | {PENDING: StatusCount(3), FAILED: StatusCount(1)}
    assert counts == expected


async def test_a_status_above_the_bound_is_exact_or_an_estimate_above_it(store: ScheduledCommandStore) -> None:
    """Above the bound a store may estimate: flagged as such, and never below the bound plus one."""
    await store.add([make_entry() for _ in range(7)])
    await entry_in_status(store, FAILED)
    counts = await store.count_by_status_estimated(exact_up_to=2)
    assert counts[FAILED] == StatusCount(1)
    pending = counts[PENDING]
    assert pending == StatusCount(7) or (not pending.exact and pending.count >= 3), pending


async def test_a_negative_bound_is_refused(store: ScheduledCommandStore) -> None:
    with pytest.raises(ValueError, match="-1"):
        await store.count_by_status_estimated(exact_up_to=-1)
