"""The listeners of a store, a base of ``ScheduledCommandStore``: wake-ups for entries that became PENDING, finish
listeners for watched entries, and the announcement of dependants a parent's end cancelled. Every store inherits
them as they are; a store calls the ``_notify_*`` methods when it writes (or hears of) such a change."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from ._store_types import DependantsCancelledListener, FinishListener, WakeupListener
from .entries import ScheduledCommandEntry

__all__ = ["StoreListeners"]


class StoreListeners:
    """Who is told when entries become PENDING or finish (see ``ScheduledCommandStore``)."""

    def __init__(self) -> None:
        self._wakeup_listeners: list[WakeupListener] = []
        self._finish_listeners: dict[str, list[FinishListener]] = {}
        self._dependants_cancelled_listeners: dict[object, DependantsCancelledListener] = {}

    # -- wake-ups ---------------------------------------------------------------------------------------------

    def add_wakeup_listener(self, listener: WakeupListener) -> None:
        """Call ``listener(due)`` whenever entries become PENDING, with their earliest due time.

        A store shared by several processes also calls it for entries that other processes add (PostgreSQL:
        LISTEN/NOTIFY). Listeners must be cheap and must not raise.
        """
        self._wakeup_listeners.append(listener)

    def remove_wakeup_listener(self, listener: WakeupListener) -> None:
        if listener in self._wakeup_listeners:
            self._wakeup_listeners.remove(listener)

    def _notify_wakeup(self, due: datetime) -> None:
        for listener in tuple(self._wakeup_listeners):
            listener(due)

    def add_finish_listener(self, entry_id: str, listener: FinishListener) -> None:
        """Call ``listener(entry_id)`` when that entry reaches a terminal status (COMPLETED, FAILED, EXPIRED,
        CANCELLED), in this process or, on a store shared by several processes, in another one (PostgreSQL:
        LISTEN/NOTIFY; SQLite: the commit watcher; Redis: pub/sub).

        A listener may also be called when the store cannot tell whether the entry finished (it reconnected after
        missing notifications): the caller re-reads the entry. Listeners must be cheap and must not raise; they
        stay registered until removed. Register before reading the entry, so a finish between the two is not missed.

        .. versionadded:: 0.5
        """
        self._finish_listeners.setdefault(entry_id, []).append(listener)

    def remove_finish_listener(self, entry_id: str, listener: FinishListener) -> None:
        """Undo ``add_finish_listener`` (nothing happens when it was not registered).

        .. versionadded:: 0.5
        """
        listeners = self._finish_listeners.get(entry_id)
        if listeners is not None and listener in listeners:
            listeners.remove(listener)
            if not listeners:
                del self._finish_listeners[entry_id]

    def _notify_finished(self, entry_ids: Iterable[str]) -> None:
        """Call the finish listeners of those of ``entry_ids`` that are watched."""
        if not self._finish_listeners:
            return
        for entry_id in entry_ids:
            for listener in tuple(self._finish_listeners.get(entry_id, ())):
                listener(entry_id)

    def set_dependants_cancelled_listener(self, key: object, listener: DependantsCancelledListener | None) -> None:
        """Call ``listener(entries)`` with the dependants that an outcome, a cancellation or an insert written
        through THIS store instance cancelled because of a parent, read in the transaction that cancelled them and
        called once it committed: every path that ends a parent (a worker's outcome, batched or not, an operator
        or correlation cancel, a recurring schedule's cancelled occurrences) reports here. One listener per ``key``
        (setting it again replaces it, ``None`` removes it), so one application announces each cancellation once.
        Listeners must be cheap and must not raise.

        .. versionadded:: 0.7
        """
        if listener is None:
            self._dependants_cancelled_listeners.pop(key, None)
        else:
            self._dependants_cancelled_listeners[key] = listener

    def _notify_dependants_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None:
        if entries:
            for listener in tuple(self._dependants_cancelled_listeners.values()):
                listener(entries)

    def _watched_ids(self) -> list[str]:
        """The ids some finish listener waits for."""
        return list(self._finish_listeners)

    def _recheck_finished(self) -> None:
        """Call every finish listener: notifications may have been missed (a reconnection); each re-reads."""
        self._notify_finished(self._watched_ids())
