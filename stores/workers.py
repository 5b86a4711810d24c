"""What the store holds for a worker process: ``StoredWorker``, a decision-free record of the live fleet.

A worker registers itself when it starts, and its heartbeat (the tick that renews its leases) records when it was
last seen. The store keeps what the worker said; whether a worker that stopped being seen is *gone* is decided
above the store (``scheduling.workers``), from ``last_seen_at`` and the worker's own ``lease_duration``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["StoredWorkerState", "StoredWorker"]

#: What the worker said about itself: running, stopping (draining at shutdown), or stopped (exited cleanly).
StoredWorkerState = Literal["running", "stopping", "stopped"]


class StoredWorker(BaseModel):
    """One worker process as a store keeps it. All datetimes are UTC-aware.

    .. versionadded:: 0.5
    """

    model_config = ConfigDict(frozen=True)

    #: The worker's ``SchedulerSettings.worker_id``: the name in its leases and the audit trail.
    worker_id: str = Field(min_length=1, max_length=256)
    host: str
    pid: int
    #: The queues it claims from; empty: every queue.
    queues: tuple[str, ...] = ()
    #: The command types it has handlers for.
    command_types: tuple[str, ...] = ()
    started_at: AwareDatetime
    #: Its latest heartbeat (registration counts as one).
    last_seen_at: AwareDatetime
    #: Its lease duration: a worker not seen for this long has missed every renewal of its leases.
    lease_duration: timedelta
    state: StoredWorkerState = "running"
    #: When it stopped cleanly (``state == "stopped"``).
    stopped_at: AwareDatetime | None = None
