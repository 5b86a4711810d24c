"""The store contract of the routed claim's order with many queue, type and priority groups: each claim takes the
best ``limit`` due entries of the route (priority first, then due time, then scheduling order) however the entries
are spread over the groups, including when one group holds all the best ones and when most groups have nothing
due. PostgreSQL reads each group's share of the candidate window and then only what can beat the window's bound
(``stores/sql/_pg_claim.py``): these layouts are the ones where a share alone would miss entries. Part of
``QueueContract``.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable

import pytest

from stores.base import ScheduledCommandStore
from stores.entries import ScheduledCommandEntry
from stores.queues import Route

from ._helpers import BASE, make_entry
from ._queues import claim_ids

QUEUES = ("a", "b", "c", "d")
TYPES = tuple(f"tests.stores.Job{i}" for i in range(4))
ROUTE = Route.of(QUEUES[:3], TYPES[:3])  # queue "d" and the fourth type are someone else's
# The same entries routed, through more named (queue, type) pairs than PostgreSQL probes one by one
# (``DIRECT_PAIRS_MAX``): it finds the pending queues and types instead. The extra names have no entries.
WIDE_ROUTE = Route.of((*QUEUES[:3], "x", "y", "z"), (*TYPES[:3], *(f"tests.stores.Other{i}" for i in range(3))))
ENTRIES = 300
LIMIT = 7  # a window of 28 candidates over 9 to 27 routed groups: a share of 4 or 2 each


def uniform(rng: random.Random, i: int) -> tuple[str, str, int, float]:
    return rng.choice(QUEUES), rng.choice(TYPES), rng.choice((0, 1, 5)), rng.uniform(-100, 100)


def one_group_holds_the_best(rng: random.Random, i: int) -> tuple[str, str, int, float]:
    if i % 2:
        return "a", TYPES[0], 0, -200 + i / 10  # due before every other entry
    return rng.choice(QUEUES), rng.choice(TYPES), 0, rng.uniform(0, 100)


def most_groups_not_due(rng: random.Random, i: int) -> tuple[str, str, int, float]:
    queue, command_type, priority = rng.choice(QUEUES), rng.choice(TYPES), rng.choice((0, 1))
    due = (queue, command_type) in {("a", TYPES[1]), ("b", TYPES[0])}
    return queue, command_type, priority, rng.uniform(-100, 0) if due else rng.uniform(1, 100)


def lower_priorities_matter(rng: random.Random, i: int) -> tuple[str, str, int, float]:
    """Two groups' highest priority holds a few entries; their lower priority holds entries due before everyone
    else's, so the best entries of a claim include lower-priority entries of groups whose highest priority ranks
    above the candidate window's last."""
    queue, command_type = rng.choice(QUEUES), rng.choice(TYPES)
    if (queue, command_type) in {("a", TYPES[0]), ("b", TYPES[1])}:
        return (queue, command_type, 1, rng.uniform(0, 100)) if i % 10 == 0 else (queue, command_type, 0, -150 - i / 10)
    return queue, command_type, 0, rng.uniform(-100, 0)


Layout = Callable[[random.Random, int], tuple[str, str, int, float]]


@pytest.mark.parametrize("route", [ROUTE, WIDE_ROUTE], ids=["pairs", "wide"])
@pytest.mark.parametrize(
    "layout",
    [uniform, one_group_holds_the_best, most_groups_not_due, lower_priorities_matter],
    ids=lambda f: f.__name__,
)
async def test_every_routed_claim_takes_the_best_due_entries(
    fleet_store: ScheduledCommandStore, layout: Layout, route: Route
) -> None:
    rng = random.Random(f"claim-order-{layout.__name__}")
    entries: list[ScheduledCommandEntry] = []
    for i in range(ENTRIES):
        queue, command_type, priority, seconds = layout(rng, i)
        # Whole milliseconds, some shared: ties fall to scheduling order.
        at = BASE + dt.timedelta(milliseconds=round(seconds * 20))
        entries.append(make_entry(queue=queue, command_type=command_type, priority=priority, scheduled_for=at))
    await fleet_store.add(entries)

    order = {entry.id: n for n, entry in enumerate(entries)}  # added in one call, in this order
    routed = [e for e in entries if e.queue in QUEUES[:3] and e.command_type in TYPES[:3] and e.scheduled_for <= BASE]
    expected = [e.id for e in sorted(routed, key=lambda e: (-e.priority, e.scheduled_for, order[e.id]))]
    assert len(expected) > 4 * LIMIT

    claimed: list[list[str]] = []
    while batch := await claim_ids(fleet_store, route, now=BASE, limit=LIMIT):
        claimed.append(sorted(batch, key=order.__getitem__))
    assert claimed == [sorted(expected[n : n + LIMIT], key=order.__getitem__) for n in range(0, len(expected), LIMIT)]


@pytest.mark.parametrize("route", [ROUTE, WIDE_ROUTE], ids=["pairs", "wide"])
async def test_a_routed_claim_leaves_a_paused_queue_alone(fleet_store: ScheduledCommandStore, route: Route) -> None:
    entries = [make_entry(queue=queue, command_type=TYPES[0], scheduled_for=BASE) for queue in QUEUES[:3]]
    await fleet_store.add(entries)
    await fleet_store.set_queue_paused("a", True)
    assert sorted(await claim_ids(fleet_store, route, now=BASE)) == sorted(e.id for e in entries[1:])
    await fleet_store.set_queue_paused("a", False)
    assert await claim_ids(fleet_store, route, now=BASE) == [entries[0].id]
