"""The queue methods of ``CommandScheduler`` (a mixin): pausing, resuming, limiting and listing queues across the
fleet; the store keeps the state (docs/queues.md)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from stores.queues import QueueInfo, QueueLimits, RateLimit, check_queue_name

if TYPE_CHECKING:
    from stores.base import ScheduledCommandStore

__all__ = ["QueueMethods"]

logger = logging.getLogger("scheduling.scheduler")


class QueueMethods:
    """The queue methods of ``CommandScheduler``."""

    if TYPE_CHECKING:
        _store: ScheduledCommandStore

    async def pause_queue(self, name: str) -> None:
        """Pause the queue ``name`` across the fleet: no worker claims its entries until ``resume_queue``; entries
        already running finish. Stored in the database, so it holds for workers started later too.

        Raises:
            ValueError: ``name`` is not a valid queue name.
            UnsupportedFeatureError: the store cannot pause queues (a third-party store without queues).

        .. versionadded:: 0.5
        """
        await self._store.set_queue_paused(check_queue_name(name), True)
        logger.info("paused queue %s", name, extra={"action": "pause_queue", "queue": name})

    async def resume_queue(self, name: str) -> None:
        """Resume a paused queue (a queue that is not paused stays as it is); wakes the workers.

        .. versionadded:: 0.5
        """
        await self._store.set_queue_paused(check_queue_name(name), False)
        logger.info("resumed queue %s", name, extra={"action": "resume_queue", "queue": name})

    async def set_queue_limits(
        self, name: str, *, max_running: int | None = None, rate: RateLimit | None = None
    ) -> None:
        """Set the fleet-wide limits of the queue ``name``, enforced by the claim: at most ``max_running`` of its
        entries PROCESSING at once across every worker, at most ``rate.count`` started within any ``rate.per``. Each
        call sets both: ``None`` (the default) clears that limit. Stored in the database; wakes the workers.

        Raises:
            ValueError: ``name`` is not a valid queue name, ``max_running`` is below 1 (a ``ValidationError``
                naming the value).
            UnsupportedFeatureError: the store cannot limit queues (a third-party store without queues).

        .. versionadded:: 0.5
        """
        limits = QueueLimits(max_running=max_running, rate=rate)
        await self._store.set_queue_limits(check_queue_name(name), limits)
        logger.info("limited queue %s: %s", name, limits, extra={"action": "set_queue_limits", "queue": name})

    async def list_queues(self) -> list[QueueInfo]:
        """Every queue with PENDING or PROCESSING entries, or paused: its depth, running entries, paused, limits.

        .. versionadded:: 0.5
        """
        return await self._store.list_queues()
