"""The SQL of operator actions on finished entries, one named function per action; ``SqlStore`` calls them in its
write transactions.

Dismissing a dead letter is one conditional ``UPDATE ... WHERE id = :id AND status = 'FAILED' RETURNING``: a FAILED
row holds no lease to fence with, so the status condition is the fence. On PostgreSQL a concurrent ``requeue`` or
``dismiss`` of the same row waits for the row lock, then re-checks the condition on the committed row and updates
nothing; on SQLite the store's write path (``BEGIN IMMEDIATE``) runs one writer at a time. Either way exactly one of
them changes the entry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from ._tables import EntryRow
from .entries import ScheduledCommandStatus

__all__ = ["dismiss"]

ENTRIES: Table = EntryRow.__table__  # type: ignore[attr-defined]


async def dismiss(conn: AsyncConnection, entry_id: str, *, now: datetime) -> Row[Any] | None:
    """FAILED -> CANCELLED with ``completed_at = now``; the updated row, or None when it is unknown or not FAILED."""
    result = await conn.execute(
        update(ENTRIES)
        .where(ENTRIES.c.id == entry_id, ENTRIES.c.status == ScheduledCommandStatus.FAILED.value)
        .values(status=ScheduledCommandStatus.CANCELLED.value, completed_at=now)
        .returning(*ENTRIES.c)
    )
    return result.first()
