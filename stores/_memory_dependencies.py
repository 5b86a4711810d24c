"""The dependency methods of ``MemoryStore`` (a mixin): the (parent, dependant) pairs in dictionaries, and the
release or cancellation of dependants run from ``_put`` whenever a parent reaches a terminal status, so they happen
in the same step (no await in between) as the parent's outcome.

Every method runs without awaiting, so each is atomic among asyncio tasks on one loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from .dependencies import Dependency, UnknownParentError, cancel_reason, parent_meets
from .entries import ScheduledCommandEntry, ScheduledCommandStatus

__all__ = ["MemoryDependencies"]

WAITING = ScheduledCommandStatus.WAITING
PENDING = ScheduledCommandStatus.PENDING
CANCELLED = ScheduledCommandStatus.CANCELLED


class MemoryDependencies:
    if TYPE_CHECKING:  # what the mixin uses of MemoryStore
        _entries: dict[str, ScheduledCommandEntry]
        _order: dict[str, int]
        _sequence: Iterator[int]
        _by_correlation: dict[str, set[str]]

        @property
        def description(self) -> str: ...
        def _put(self, entry: ScheduledCommandEntry) -> None: ...
        def _notify_wakeup(self, due: datetime) -> None: ...
        def _notify_dependants_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None: ...
        async def add(self, entries: Sequence[ScheduledCommandEntry]) -> list[str]: ...

    def __init__(self) -> None:
        super().__init__()
        #: parent id -> its dependants' ids, in scheduling order.
        self._dependants: dict[str, list[str]] = {}
        #: dependant id -> its parents' ids, in the order given.
        self._parents: dict[str, tuple[str, ...]] = {}
        self._on_success_only: dict[str, bool] = {}
        #: (parent, dependant) pairs whose parent's outcome was counted.
        self._resolved: set[tuple[str, str]] = set()

    async def add_dependants(
        self, entries: Sequence[ScheduledCommandEntry], after: Mapping[str, Dependency]
    ) -> list[str]:
        batch = {entry.id for entry in entries}
        placed: set[str] = set()
        for entry in entries:  # every check first: all or none
            if entry.id in self._entries or entry.id in placed:
                raise ValueError(f"an entry with id {entry.id!r} already exists or appears twice in the batch")
            if entry.idempotency_key is not None:
                raise ValueError(f"entry {entry.id} has an idempotency key; a dependant cannot have one")
            dependency = after.get(entry.id)
            for parent in dependency.parents if dependency is not None else ():
                if parent not in self._entries and parent not in placed:
                    if parent in batch:
                        raise ValueError(f"entry {entry.id} names {parent} as a parent before it is placed")
                    raise UnknownParentError(parent, self.description)
            placed.add(entry.id)
        plain = [entry for entry in entries if entry.id not in after]
        ids = await self.add(plain) if plain else []  # checks the ids, stores and wakes: nothing is awaited inside
        for entry in entries:
            dependency = after.get(entry.id)
            if dependency is None:
                continue
            self._order[entry.id] = next(self._sequence)
            self._parents[entry.id] = dependency.parents
            self._on_success_only[entry.id] = dependency.on_success_only
            pending, reason = 0, None
            for parent in dependency.parents:
                self._dependants.setdefault(parent, []).append(entry.id)
                met = parent_meets(self._entries[parent].status, on_success_only=dependency.on_success_only)
                if met is None:
                    pending += 1
                else:
                    self._resolved.add((parent, entry.id))
                    if not met and reason is None:
                        reason = cancel_reason(parent, self._entries[parent].status)
            if entry.correlation_id is not None:
                self._by_correlation.setdefault(entry.correlation_id, set()).add(entry.id)
            if reason is not None:
                stored = entry.model_copy(
                    update={"status": CANCELLED, "completed_at": entry.created_at, "error_message": reason}
                )
            elif pending:
                stored = entry.model_copy(update={"status": WAITING, "pending_parents": pending})
            else:
                stored = entry.model_copy(update={"status": PENDING})
            self._put(stored)
            if stored.status is PENDING:
                self._notify_wakeup(stored.scheduled_for)
            elif stored.status is CANCELLED:
                self._notify_dependants_cancelled([stored])
        given = iter(ids)
        return [entry.id if entry.id in after else next(given) for entry in entries]

    async def get_parents(self, entry_id: str) -> list[str]:
        return list(self._parents.get(entry_id, ()))

    async def get_dependants(self, entry_id: str) -> list[str]:
        return sorted(self._dependants.get(entry_id, ()), key=lambda child: self._order.get(child, -1))

    def _resolve_dependants(self, parent: ScheduledCommandEntry) -> None:
        """``parent`` just reached a terminal status: count it for its WAITING dependants (called by ``_put``; a
        dependant it cancels comes back here through ``_put``, which is the cascade)."""
        for child_id in self._dependants.get(parent.id, ()):
            pair = (parent.id, child_id)
            child = self._entries.get(child_id)
            if pair in self._resolved or child is None or child.status is not WAITING:
                continue
            self._resolved.add(pair)
            met = parent_meets(parent.status, on_success_only=self._on_success_only[child_id])
            now: datetime = parent.completed_at or child.created_at
            if met is False:
                reason = cancel_reason(parent.id, parent.status)
                cancelled = child.model_copy(
                    update={"status": CANCELLED, "completed_at": now, "error_message": reason, "pending_parents": 0}
                )
                self._put(cancelled)  # the cascade below it, if any, is told first
                self._notify_dependants_cancelled([cancelled])
            elif child.pending_parents <= 1:
                self._put(child.model_copy(update={"status": PENDING, "pending_parents": 0}))
                self._notify_wakeup(child.scheduled_for)
            else:
                self._put(child.model_copy(update={"pending_parents": child.pending_parents - 1}))

    def _forget_dependencies(self, entry_id: str) -> None:
        """A purged dependant's pairs go with it (a purged parent's stay while its dependants are kept), as in
        ``SqlStore``."""
        for parent in self._parents.pop(entry_id, ()):
            self._resolved.discard((parent, entry_id))
            children = self._dependants.get(parent)
            if children is not None and entry_id in children:
                children.remove(entry_id)
                if not children:
                    del self._dependants[parent]
        self._on_success_only.pop(entry_id, None)
