"""A store without queues, as a third-party store written before queues existed is: the base class's answers
(``UnsupportedFeatureError``) for pausing, limits and listing. Every store of the package has queues."""

from __future__ import annotations

from stores import MemoryStore, ScheduledCommandStore

__all__ = ["QueuelessStore"]


class QueuelessStore(MemoryStore):
    set_queue_paused = ScheduledCommandStore.set_queue_paused
    set_queue_limits = ScheduledCommandStore.set_queue_limits
    list_queues = ScheduledCommandStore.list_queues
