"""The audit-trail methods of ``MemoryStore`` (a mixin): the records in a list, oldest first.

Every method runs without awaiting, so each is atomic among asyncio tasks on one loop.
"""

from __future__ import annotations

from datetime import datetime

from .audit import AuditRecord

__all__ = ["MemoryAudit"]


class MemoryAudit:
    def __init__(self) -> None:
        super().__init__()
        self._audit: list[AuditRecord] = []

    async def add_audit_record(self, record: AuditRecord) -> None:
        self._audit.append(record)

    async def list_audit_records(
        self, *, entry_id: str | None = None, before: datetime | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        order = sorted(enumerate(self._audit), key=lambda pair: (pair[1].at, pair[0]), reverse=True)
        found = [
            record
            for _, record in order
            if (entry_id is None or entry_id in record.entry_ids) and (before is None or record.at < before)
        ]
        return found[:limit]

    async def forget_audit_records(self, *, before: datetime) -> int:
        kept = [record for record in self._audit if record.at >= before]
        forgotten = len(self._audit) - len(kept)
        self._audit = kept
        return forgotten
