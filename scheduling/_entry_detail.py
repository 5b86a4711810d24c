"""``show``: one entry with its attempts, whether it is stuck, and its workflow (parents and dependants).

Part of the operators' read model (``scheduling.admin`` re-exports it).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from stores.base import ScheduledCommandStore
from stores.entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus

from .workers import is_stuck

__all__ = ["RELATIVES_SHOWN", "EntryDetail", "Relative", "entry_detail"]


class Relative(BaseModel):
    """A parent or dependant of an entry (``ScheduleOptions.after``, a group), as ``show`` lists it."""

    id: str
    #: None when the store no longer holds it (purged by retention).
    command_type: str | None = None
    status: ScheduledCommandStatus | None = None


#: Most parents and dependants ``show`` reads one by one (a group of 10,000 members shows its first ones and counts).
RELATIVES_SHOWN = 50


class EntryDetail(BaseModel):
    """``show``: an entry with its audit trail, and its workflow (parents, dependants)."""

    entry: ScheduledCommandEntry
    attempts: list[AttemptRecord]
    #: PROCESSING under a lease expired at the time asked about: its worker is gone, recovery has not run yet.
    stuck: bool = False
    #: The entries it runs after (its ``after=`` entries, or its group's members: it is then the group's callback),
    #: the first ``RELATIVES_SHOWN`` of them, and how many in all. While it is WAITING, ``entry.pending_parents`` of
    #: them have not met its condition yet: the group's progress is ``parent_count - pending_parents``.
    parents: list[Relative] = Field(default_factory=list)
    parent_count: int = 0
    #: The entries scheduled after it (a member's group callback among them), the first ones and how many.
    dependants: list[Relative] = Field(default_factory=list)
    dependant_count: int = 0


async def entry_detail(store: ScheduledCommandStore, entry_id: str, now: datetime | None = None) -> EntryDetail | None:
    """The entry and its attempts (and whether it is stuck at ``now``); None if unknown. Raises
    ``UnreadableEntryError`` (one line: which column, what value) for a row that cannot be read."""
    entry = await store.get(entry_id)
    if entry is None:
        return None
    stuck = now is not None and is_stuck(entry, now)
    parent_ids = await store.get_parents(entry_id)
    dependant_ids = await store.get_dependants(entry_id)
    return EntryDetail(
        entry=entry,
        attempts=await store.get_attempts(entry_id),
        stuck=stuck,
        parents=await _relatives(store, parent_ids[:RELATIVES_SHOWN]),
        parent_count=len(parent_ids),
        dependants=await _relatives(store, dependant_ids[:RELATIVES_SHOWN]),
        dependant_count=len(dependant_ids),
    )


async def _relatives(store: ScheduledCommandStore, entry_ids: Sequence[str]) -> list[Relative]:
    relatives = []
    for entry_id in entry_ids:
        entry = await store.get(entry_id)
        relatives.append(
            Relative(id=entry_id)
            if entry is None
            else Relative(id=entry_id, command_type=entry.command_type, status=entry.status)
        )
    return relatives
