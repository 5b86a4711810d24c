"""Queues as operators see them (part of ``scheduling.admin``, which re-exports every name): the list, pause,
resume and limits, shared by the command line (``cqrs-scheduling queue``), the admin API and the dashboard."""

from __future__ import annotations

from pydantic import BaseModel

from stores.base import ScheduledCommandStore
from stores.queues import QueueInfo, QueueLimits, check_queue_name

__all__ = ["QueueList", "limit_queue", "queue_info", "queue_list", "set_queue_paused"]


class QueueList(BaseModel):
    """``queue list --json`` and ``GET /api/queues``: every queue with waiting or running entries, or paused or
    limited, by name."""

    queues: list[QueueInfo]


async def queue_list(store: ScheduledCommandStore) -> QueueList:
    """Every queue the store knows of: depth, running, paused, limits.

    Raises:
        UnsupportedFeatureError: the store has no queues (a third-party store without them).
    """
    return QueueList(queues=await store.list_queues())


async def queue_info(store: ScheduledCommandStore, name: str) -> QueueInfo:
    """The queue ``name`` as ``list_queues()`` reports it; an empty, active, unlimited one when it holds nothing."""
    for queue in await store.list_queues():
        if queue.name == name:
            return queue
    return QueueInfo(name=name)


async def set_queue_paused(store: ScheduledCommandStore, name: str, paused: bool) -> QueueInfo:
    """Pause or resume the queue ``name`` for the whole fleet; the queue afterwards.

    Raises:
        ValueError: ``name`` is not a valid queue name (quoting it).
        UnsupportedFeatureError: the store has no queues (a third-party store without them).
    """
    check_queue_name(name, "queue name")
    await store.set_queue_paused(name, paused)
    return await queue_info(store, name)


async def limit_queue(store: ScheduledCommandStore, name: str, limits: QueueLimits) -> QueueInfo:
    """Store the fleet-wide limits of the queue ``name`` (a ``None`` clears that limit); the queue afterwards.

    Raises:
        ValueError: ``name`` is not a valid queue name (quoting it).
        UnsupportedFeatureError: the store has no queues (a third-party store without them).
    """
    check_queue_name(name, "queue name")
    await store.set_queue_limits(name, limits)
    return await queue_info(store, name)
