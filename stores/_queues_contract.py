"""The queue part of the store contract, a base of ``ScheduledCommandStore``: pausing and limiting queues fleet-wide
(see ``stores/queues.py``). Optional: a store that keeps no queues inherits refusals (``UnsupportedFeatureError``)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import UnsupportedFeatureError
from .queues import QueueInfo, QueueLimits

__all__ = ["QueueStore"]


class QueueStore:
    """The queue methods (``stores.testing.QueueContract``).

    .. versionadded:: 0.5
    """

    if TYPE_CHECKING:

        @property
        def description(self) -> str: ...

    async def set_queue_paused(self, name: str, paused: bool) -> None:
        """Pause (no entry of the queue is claimed; those running finish) or resume the queue ``name``.

        .. versionadded:: 0.5
        """
        raise UnsupportedFeatureError(self.description, "pausing queues", "use SqlStore or MemoryStore")

    async def set_queue_limits(self, name: str, limits: QueueLimits) -> None:
        """Store the fleet-wide limits of the queue ``name`` (both of them: a ``None`` clears that limit). The claim
        enforces them: at most ``max_running`` PROCESSING entries of the queue across the fleet, at most
        ``rate.count`` starts within any ``rate.per``.

        .. versionadded:: 0.5
        """
        raise UnsupportedFeatureError(self.description, "queue limits", "use SqlStore or MemoryStore")

    async def list_queues(self) -> list[QueueInfo]:
        """Every queue that holds a PENDING or PROCESSING entry, or is paused or limited, by name.

        .. versionadded:: 0.5
        """
        raise UnsupportedFeatureError(self.description, "listing queues", "use SqlStore or MemoryStore")

    async def next_start_at(self, now: datetime, queues: Collection[str] | None = None) -> datetime | None:
        """The earliest time after ``now`` at which a rate limited queue (of ``queues``; ``None``: every queue) that
        has spent its rate may start an entry again; ``None`` when none has (or the store keeps no rates). Workers
        whose claim came back empty sleep until then rather than polling for the next start.

        .. versionadded:: 0.5
        """
        return None
