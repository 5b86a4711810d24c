"""The worker-registry methods of ``MemoryStore`` (a mixin): one record per worker id, in a dict.

Every method runs without awaiting, so each is atomic among asyncio tasks on one loop.
"""

from __future__ import annotations

from datetime import datetime

from .workers import StoredWorker, StoredWorkerState

__all__ = ["MemoryWorkers"]


class MemoryWorkers:
    def __init__(self) -> None:
        super().__init__()
        self._workers: dict[str, StoredWorker] = {}

    async def register_worker(self, worker: StoredWorker) -> None:
        self._workers[worker.worker_id] = worker

    async def touch_worker(self, worker_id: str, *, now: datetime, state: StoredWorkerState | None = None) -> bool:
        worker = self._workers.get(worker_id)
        if worker is None:
            return False
        changes: dict[str, object] = {"last_seen_at": now}
        if state is not None:
            changes["state"] = state
            if state == "stopped":
                changes["stopped_at"] = now
        self._workers[worker_id] = worker.model_copy(update=changes)
        return True

    async def list_workers(self) -> list[StoredWorker]:
        return sorted(self._workers.values(), key=lambda worker: (worker.started_at, worker.worker_id))

    async def forget_workers(self, *, seen_before: datetime) -> int:
        gone = [worker_id for worker_id, worker in self._workers.items() if worker.last_seen_at < seen_before]
        for worker_id in gone:
            del self._workers[worker_id]
        return len(gone)
