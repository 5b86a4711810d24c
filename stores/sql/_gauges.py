"""What the metrics gauges read (``read_gauges``): the counts per status, the next due time and the running count,
in one snapshot so that they agree with each other (a claim committed meanwhile is seen by none of them, or all).

Bounded (``exact_up_to``), the counts are those of the dashboard's overview (``_status_counts.py``): each status
counted through its index up to the bound, a larger one estimated from PostgreSQL's statistics, so a scrape costs
the same at a million entries as at a thousand, where an exact ``GROUP BY`` reads every row (about 0.1 to 0.2 s
there). PROCESSING stays exact at any size: the stuck gauge is its count minus the running entries, and an estimate
of the one minus an exact count of the other would be noise. ``count_running`` reads those same rows anyway.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from stores.base import StoreReading
from stores.entries import ScheduledCommandStatus

from . import _queries as queries
from ._backend import Backend
from ._status_counts import count_by_status_estimated

__all__ = ["read_gauges"]

#: Never estimated by the gauges' reading (see the module docstring).
_ALWAYS_EXACT = frozenset({ScheduledCommandStatus.PROCESSING})


async def read_gauges(conn: AsyncConnection, backend: Backend, now: datetime, exact_up_to: int | None) -> StoreReading:
    """The gauges' reading on ``conn``, which must hold one snapshot (the store's ``_snapshot()``)."""
    if exact_up_to is None:
        counts = await queries.count_by_status(conn)
        estimated: frozenset[ScheduledCommandStatus] = frozenset()
    else:
        bounded = await count_by_status_estimated(conn, exact_up_to, always_exact=_ALWAYS_EXACT)
        counts = {status: counted.count for status, counted in bounded.items()}
        estimated = frozenset(status for status, counted in bounded.items() if not counted.exact)
    next_due = await backend.next_due_at(conn)
    running = await queries.count_running(conn, now)
    return StoreReading(counts, next_due, running, estimated)
