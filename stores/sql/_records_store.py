"""The records ``SqlStore`` keeps beside the entries, each method one transaction around a named query: recurring
schedules (SQL in ``_schedules.py``; their occurrences are entries, cancelled by ``SqlStore``), the worker registry
(``_workers.py``) and the audit trail (``_audit.py``)."""

from __future__ import annotations

from datetime import datetime

from stores.audit import AuditRecord
from stores.schedules import StoredSchedule
from stores.workers import StoredWorker, StoredWorkerState

from . import _audit as audit
from . import _schedules as schedules
from . import _workers as workers
from ._connections import SqlConnections

__all__ = ["SqlRecords"]


class SqlRecords(SqlConnections):
    async def upsert_schedule(self, schedule: StoredSchedule) -> StoredSchedule:
        async with self._write() as conn:
            return await schedules.upsert_schedule(conn, schedule, self._backend)

    async def get_schedule(self, name: str) -> StoredSchedule | None:
        async with self._read() as conn:
            return await schedules.get_schedule(conn, name)

    async def list_schedules(self) -> list[StoredSchedule]:
        async with self._read() as conn:
            return await schedules.list_schedules(conn)

    async def delete_schedule(self, name: str) -> bool:
        async with self._write() as conn:
            return await schedules.delete_schedule(conn, name)

    async def set_schedule_paused(self, name: str, paused: bool, *, now: datetime) -> StoredSchedule | None:
        async with self._write() as conn:
            return await schedules.set_schedule_paused(conn, name, paused, now=now)

    async def record_schedule_run(
        self, name: str, generation: int, *, last_run_at: datetime | None, next_run_at: datetime | None
    ) -> bool:
        async with self._write() as conn:
            return await schedules.record_schedule_run(
                conn, name, generation, last_run_at=last_run_at, next_run_at=next_run_at
            )

    # -- the worker registry (SQL in _workers.py) ---------------------------------------------------------------

    async def register_worker(self, worker: StoredWorker) -> None:
        async with self._write() as conn:
            await workers.register_worker(conn, worker)

    async def touch_worker(self, worker_id: str, *, now: datetime, state: StoredWorkerState | None = None) -> bool:
        async with self._single_statement() as conn:
            return await workers.touch_worker(conn, worker_id, now, state)

    async def list_workers(self) -> list[StoredWorker]:
        async with self._read() as conn:
            return await workers.list_workers(conn)

    async def forget_workers(self, *, seen_before: datetime) -> int:
        async with self._single_statement() as conn:
            return await workers.forget_workers(conn, seen_before)

    # -- the audit trail (SQL in _audit.py) ---------------------------------------------------------------------

    async def add_audit_record(self, record: AuditRecord) -> None:
        async with self._single_statement() as conn:
            await audit.add_audit_record(conn, record)

    async def list_audit_records(
        self, *, entry_id: str | None = None, before: datetime | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        async with self._read() as conn:
            return await audit.list_audit_records(conn, entry_id, before, limit)

    async def forget_audit_records(self, *, before: datetime) -> int:
        async with self._single_statement() as conn:
            return await audit.forget_audit_records(conn, before)
