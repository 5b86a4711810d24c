"""The SQL of the worker registry, one named function per query; ``SqlStore`` calls them in its transactions."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.workers import StoredWorker, StoredWorkerState

from ._tables import WORKERS

__all__ = ["forget_workers", "list_workers", "register_worker", "touch_worker"]


def _to_row(worker: StoredWorker) -> dict[str, Any]:
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "queues_json": json.dumps(list(worker.queues)),
        "command_types_json": json.dumps(list(worker.command_types)),
        "started_at": worker.started_at,
        "last_seen_at": worker.last_seen_at,
        "lease_seconds": worker.lease_duration.total_seconds(),
        "state": worker.state,
        "stopped_at": worker.stopped_at,
    }


def _from_row(row: Row[Any]) -> StoredWorker:
    values = row._asdict()
    return StoredWorker.model_validate(
        {
            **values,
            "queues": tuple(json.loads(values.pop("queues_json"))),
            "command_types": tuple(json.loads(values.pop("command_types_json"))),
            "lease_duration": timedelta(seconds=values.pop("lease_seconds")),
        }
    )


async def register_worker(conn: AsyncConnection, worker: StoredWorker) -> None:
    """Replace any row of the id (delete, then insert: the same statements on both databases)."""
    await conn.execute(delete(WORKERS).where(WORKERS.c.worker_id == worker.worker_id))
    await conn.execute(insert(WORKERS).values(_to_row(worker)))


async def touch_worker(conn: AsyncConnection, worker_id: str, now: datetime, state: StoredWorkerState | None) -> bool:
    changes: dict[str, Any] = {"last_seen_at": now}
    if state is not None:
        changes["state"] = state
        if state == "stopped":
            changes["stopped_at"] = now
    result = await conn.execute(
        update(WORKERS).where(WORKERS.c.worker_id == worker_id).values(**changes).returning(WORKERS.c.worker_id)
    )
    return result.first() is not None


async def list_workers(conn: AsyncConnection) -> list[StoredWorker]:
    rows = (await conn.execute(select(WORKERS).order_by(WORKERS.c.started_at, WORKERS.c.worker_id))).all()
    return [_from_row(row) for row in rows]


async def forget_workers(conn: AsyncConnection, seen_before: datetime) -> int:
    result = await conn.execute(
        delete(WORKERS).where(WORKERS.c.last_seen_at < seen_before).returning(WORKERS.c.worker_id)
    )
    return len(result.all())
