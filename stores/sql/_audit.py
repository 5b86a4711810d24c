"""The SQL of the audit trail, one named function per query; ``SqlStore`` calls them in its transactions.

The entry ids of a record are a JSON list; the entry page's question ("what was done to this entry") is a
``LIKE`` on it, a scan of the audit table, which holds operator actions only and is kept short by retention.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from stores.audit import AuditRecord

from ._tables import AUDIT

__all__ = ["add_audit_record", "forget_audit_records", "list_audit_records"]


async def add_audit_record(conn: AsyncConnection, record: AuditRecord) -> None:
    values = record.model_dump(exclude={"entry_ids"})
    await conn.execute(insert(AUDIT).values(**values, entry_ids_json=json.dumps(list(record.entry_ids))))


async def list_audit_records(
    conn: AsyncConnection, entry_id: str | None, before: datetime | None, limit: int
) -> list[AuditRecord]:
    query = select(AUDIT).order_by(AUDIT.c.at.desc(), AUDIT.c.seq.desc()).limit(limit)
    if entry_id is not None:
        query = query.where(AUDIT.c.entry_ids_json.contains(json.dumps(entry_id), autoescape=True))
    if before is not None:
        query = query.where(AUDIT.c.at < before)
    records = []
    for row in (await conn.execute(query)).all():
        values: dict[str, Any] = row._asdict()
        values.pop("seq")
        values["entry_ids"] = tuple(json.loads(values.pop("entry_ids_json")))
        records.append(AuditRecord.model_validate(values))
    return records


async def forget_audit_records(conn: AsyncConnection, before: datetime) -> int:
    result = await conn.execute(delete(AUDIT).where(AUDIT.c.at < before).returning(AUDIT.c.seq))
    return len(result.all())
