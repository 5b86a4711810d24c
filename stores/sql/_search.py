"""The SQL of the entries search (``EntryFilter``): its WHERE conditions, the bounded count, and how to list a
search (``SearchPlans``); its indexes are in ``_search_indexes.py``.

Error text is a substring match ignoring case (``ILIKE`` on PostgreSQL; ``lower(...) LIKE lower(...)`` on SQLite,
whose ``lower`` folds ASCII letters only). No B-tree index helps a substring match, so on PostgreSQL with the
``pg_trgm`` extension installed (``CREATE EXTENSION pg_trgm``, by someone allowed to) the schema has a GIN trigram
index on ``error_message``: ``ILIKE '%text%'`` then reads the index instead of every row. Without the extension the
match is a scan, bounded by the page (newest first, it stops at the page's last match) and by the count's limit;
the store never creates the extension itself, since that needs rights an application role should not have.

Counting: ``count_bounded`` counts at most ``at_most + 1`` matching rows (a LIMIT inside a subquery), so a filter
matching a million rows costs as much as one matching ``at_most`` and the caller says "more than ``at_most``".
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, String, and_, func, literal, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.entries import TERMINAL_STATUSES
from stores.filters import EntryFilter

from ._tables import ENTRIES, any_due_time

__all__ = [
    "SPARSE_LIMIT",
    "count_bounded",
    "filter_condition",
    "SearchPlans",
]


def filter_condition(where: EntryFilter, dialect: str) -> ColumnElement[bool]:
    """The WHERE condition of ``where`` on the ``dialect`` backend (``TRUE`` for an empty filter)."""
    columns = ENTRIES.c
    conditions: list[ColumnElement[bool]] = []
    if where.status is not None:
        conditions.append(columns.status == where.status.value)
    if where.command_type is not None:
        conditions.append(columns.command_type == where.command_type)
    if where.correlation_id is not None:
        conditions.append(columns.correlation_id == where.correlation_id)
    if where.id_prefix is not None:
        prefix = where.id_prefix
        # LIKE may ignore case (SQLite): the substr comparison keeps the prefix match exact.
        conditions.append(columns.id.startswith(prefix, autoescape=True))
        conditions.append(func.substr(columns.id, 1, len(prefix)) == prefix)
    if where.error_contains is not None:
        conditions.append(columns.error_message.ilike(f"%{_escape_like(where.error_contains)}%", escape="\\"))
    for field, after, before in where.ranges():
        column = columns[field]
        if after is not None:
            conditions.append(_time(column, dialect) >= _time_value(after, dialect))
        if before is not None:
            conditions.append(_time(column, dialect) < _time_value(before, dialect))
        if field == "scheduled_for" and dialect == "postgresql":
            # True of every due time: what the index of PENDING entries by due time is declared with, so that it
            # serves a range of due times of PENDING entries whatever the plan.
            conditions.append(any_due_time(column))
        elif after is None:  # "finished before" never matches an unfinished entry (NULL compares as unknown anyway)
            conditions.append(column.is_not(None))
        if field == "completed_at":
            # Only finished entries have a finish time (a requeue clears it): said, so that the (status,
            # completed_at) index answers the range, one index range per terminal status.
            conditions.append(columns.status.in_(sorted(s.value for s in TERMINAL_STATUSES)))
    return and_(True, *conditions)


def _time(column: Any, dialect: str) -> Any:
    return type_coerce(column, String) if dialect == "sqlite" else column


def _time_value(moment: datetime, dialect: str) -> Any:
    """On SQLite, the text form rows are written in: naive UTC, microseconds only when not zero. (A bound DateTime
    always has them: ``12:01:00.000000`` sorts after the stored ``12:01:00`` of the same instant.) Either text form
    compares right against the other, so rows written with and without microseconds are both found."""
    if dialect != "sqlite":
        return moment
    return str(moment.astimezone(UTC).replace(tzinfo=None))


def _escape_like(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


#: A search matching at most this many rows is listed by sorting its matches (see ``sorts_matches``).
SPARSE_LIMIT = 10_000


class SearchPlans:
    """How to list each search newest first: walk ``seq`` backwards, or fetch its few matches and sort them.

    The planner walks ``seq`` backwards (the primary key) for a newest-first page, expecting matches spread evenly;
    a search matching only old rows (error text, an id, a correlation id, a past time range) then reads the whole
    table: 0.6 s at a million rows. A bounded count (an index answers it when one applies) tells the two apart: at
    most ``SPARSE_LIMIT`` matches are fetched and sorted (``ORDER BY seq + 0`` keeps the planner off the key); more
    are dense enough for the walk to find a page at once. Status and command type have indexes in ``seq`` order, so
    the walk is right for them alone. What a count said is kept for ``MEMORY_SECONDS``: the list page counts, then
    lists, and the listing need not count again. (A stale answer costs time, never a wrong row.)
    """

    MEMORY_SECONDS = 5.0
    _SIZE = 64

    def __init__(self) -> None:
        self._known: dict[EntryFilter, tuple[float, bool]] = {}

    def note(self, where: EntryFilter, counted: int, at_most: int | None) -> None:
        """Remember what ``count_bounded(where, at_most)`` answered, when it tells sparse from dense."""
        if at_most is None or at_most >= SPARSE_LIMIT:
            dense = counted > SPARSE_LIMIT
        elif counted <= at_most:
            dense = False
        else:
            return
        if len(self._known) >= self._SIZE:
            self._known.clear()
        self._known[where] = (time.monotonic(), dense)

    async def sorts_matches(self, conn: AsyncConnection, where: EntryFilter) -> bool:
        """Whether to list ``where`` by sorting its matches (counting them first unless a count just said)."""
        if not where.searches and where.correlation_id is None:
            return False
        known = self._known.get(where)
        if known is None or time.monotonic() - known[0] > self.MEMORY_SECONDS:
            self.note(where, await count_bounded(conn, where, SPARSE_LIMIT), SPARSE_LIMIT)
            known = self._known[where]
        return not known[1]


async def count_bounded(conn: AsyncConnection, where: EntryFilter, at_most: int | None) -> int:
    """Rows matching ``where``, counting at most ``at_most + 1`` of them when ``at_most`` is given."""
    condition = filter_condition(where, conn.dialect.name)
    matching: Any = select(literal(1)).select_from(ENTRIES).where(condition)
    if at_most is not None:
        matching = matching.limit(at_most + 1)
    count = (await conn.execute(select(func.count()).select_from(matching.subquery()))).scalar_one()
    return int(count)
