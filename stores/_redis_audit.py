"""The audit-trail methods of ``RedisStore`` (a mixin; the store supplies the connection and scripts).

``{prefix}:audit`` is a sorted set scored by the record's time (integer microseconds); a member is
``{seq:016d}:{record as JSON}``, ``seq`` from the ``{prefix}:audit:seq`` counter, so records of one instant list
in the order they were added. Forgetting the records before a time is one range removal.
"""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import cast

from ._redis_access import RedisAccess
from ._redis_codec import micros
from .audit import AuditRecord

__all__ = ["ADD_AUDIT_RECORD", "RedisAudit"]

# ARGV: prefix, at (micros), record JSON.
ADD_AUDIT_RECORD = """
local seq = redis.call('INCR', ARGV[1] .. ':audit:seq')
redis.call('ZADD', ARGV[1] .. ':audit', ARGV[2], string.format('%016d', seq) .. ':' .. ARGV[3])
return seq
"""

#: Members read per round trip while filtering by entry id.
_PAGE = 500


class RedisAudit(RedisAccess):
    async def add_audit_record(self, record: AuditRecord) -> None:
        await self._run("add_audit_record", micros(record.at), record.model_dump_json())

    async def list_audit_records(
        self, *, entry_id: str | None = None, before: datetime | None = None, limit: int = 100
    ) -> list[AuditRecord]:
        client = await self._client()
        top = f"({micros(before)}" if before is not None else "+inf"
        found: list[AuditRecord] = []
        offset = 0
        with self._unavailable():
            while len(found) < limit:
                page = _PAGE if entry_id is not None else limit - len(found)
                members = await cast(
                    Awaitable[list[str]],
                    client.zrevrangebyscore(self._key("audit"), top, "-inf", start=offset, num=page),
                )
                for member in members:
                    record = AuditRecord.model_validate_json(member.partition(":")[2])
                    if entry_id is None or entry_id in record.entry_ids:
                        found.append(record)
                if len(members) < page:
                    break
                offset += page
        return found[:limit]

    async def forget_audit_records(self, *, before: datetime) -> int:
        client = await self._client()
        with self._unavailable():
            return int(await client.zremrangebyscore(self._key("audit"), "-inf", f"({micros(before)}"))
