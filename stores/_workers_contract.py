"""The worker-registry part of the store contract, a base of ``ScheduledCommandStore``: every running worker's
record, kept by its heartbeats (``stores.testing.StoreContract``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime

from .workers import StoredWorker, StoredWorkerState

__all__ = ["WorkerRegistryStore"]


class WorkerRegistryStore(ABC):
    """The worker-registry methods every store implements.

    .. versionadded:: 0.5
    """

    @abstractmethod
    async def register_worker(self, worker: StoredWorker) -> None:
        """Store ``worker`` atomically, replacing any record of the same ``worker_id`` (a restart under one id).

        .. versionadded:: 0.5
        """

    @abstractmethod
    async def touch_worker(self, worker_id: str, *, now: datetime, state: StoredWorkerState | None = None) -> bool:
        """A heartbeat: set ``last_seen_at = now`` (and ``state`` when given; ``stopped_at = now`` when it is
        ``"stopped"``) atomically. False, and nothing stored, when no worker of that id is registered (it was
        forgotten: the caller registers again).

        .. versionadded:: 0.5
        """

    @abstractmethod
    async def list_workers(self) -> list[StoredWorker]:
        """Every registered worker, by ``started_at`` then ``worker_id``.

        .. versionadded:: 0.5
        """

    @abstractmethod
    async def forget_workers(self, *, seen_before: datetime) -> int:
        """Delete, atomically, every worker whose ``last_seen_at`` is before ``seen_before``; return how many.

        .. versionadded:: 0.5
        """
