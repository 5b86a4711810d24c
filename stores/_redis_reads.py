"""The reading and housekeeping methods of ``RedisStore`` (a mixin; the store supplies the connection and scripts):
attempts, counts, listings for the CLI and the dashboard, the next due time and purging finished entries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection
from datetime import datetime, timedelta
from typing import cast

from ._redis_access import RedisAccess
from ._redis_codec import entry_from_json, from_micros, log_unreadable, micros
from .base import FinishedCount, check_bucket, finished_counts
from .entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from .errors import UnreadableEntryError, UnsupportedFeatureError
from .filters import EntryFilter, EntryPage

__all__ = ["RedisReads"]


#: Purge deletes at most this many entries per script run, so one purge never blocks the server for long.
_PURGE_CHUNK = 1_000

_TERMINAL_ORDER = tuple(sorted(TERMINAL_STATUSES))


class RedisReads(RedisAccess):
    #: Searches (an ``EntryFilter`` beyond status, command type and correlation id) are refused: no index answers them.
    supports_search = False

    async def get_attempts(self, entry_id: str) -> list[AttemptRecord]:
        client = await self._client()
        with self._unavailable():
            attempts = await cast(Awaitable[list[str]], client.lrange(self._key(f"a:{entry_id}"), 0, -1))
        return [AttemptRecord.model_validate_json(attempt) for attempt in attempts]

    async def count_by_status(self) -> dict[ScheduledCommandStatus, int]:
        client = await self._client()
        with self._unavailable():
            counts = await cast(Awaitable[dict[str, str]], client.hgetall(self._key("counts")))
        return {status: int(counts.get(status.value, 0)) for status in ScheduledCommandStatus}

    async def list_matching(self, wanted: EntryFilter, page: EntryPage) -> list[ScheduledCommandEntry]:
        if wanted.searches:  # no index answers them: every entry's hash would be read and decoded
            raise UnsupportedFeatureError(
                self.description,
                "searching entries by id prefix, error text or time range",
                "use SqlStore or MemoryStore; filter by status, command type or correlation id",
            )
        status, command_type, correlation_id = wanted.status, wanted.command_type, wanted.correlation_id
        # The narrowest index given walks; the other filters are checked entry by entry in the script.
        filters = {"status": status.value if status else None, "command_type": command_type}
        if correlation_id is not None:
            index = f"c:{correlation_id}"
        elif status is not None:
            index, filters["status"] = f"s:{status.value}", None
        elif command_type is not None:
            index, filters["command_type"] = f"t:{command_type}", None
        else:
            index = "all"
        matching = [part for name, value in filters.items() if value is not None for part in (name, value)]
        replies = await self._run("list", index, page.offset, page.limit, "1" if page.newest_first else "0", *matching)
        entries: list[ScheduledCommandEntry] = []
        for reply in replies:
            try:
                entries.append(entry_from_json(reply))
            except UnreadableEntryError as exc:  # one corrupt hash never hides the others
                if page.on_unreadable is None:
                    log_unreadable(exc, "skipped in a listing")
                else:
                    page.on_unreadable(exc)
        return entries

    async def count_running(self, *, now: datetime) -> int:
        client = await self._client()
        with self._unavailable():
            return int(await client.zcount(self._key("leases"), f"({micros(now)}", "+inf"))

    async def count_purgeable(
        self, *, older_than: datetime, statuses: Collection[ScheduledCommandStatus] = TERMINAL_STATUSES
    ) -> int:
        client = await self._client()
        chosen = [s for s in _TERMINAL_ORDER if s in set(statuses)]
        with self._unavailable():
            async with client.pipeline(transaction=False) as pipe:
                for status in chosen:
                    pipe.zcount(self._key(f"done:{status.value}"), "-inf", f"({micros(older_than)}")
                counts: list[int] = await pipe.execute()
        return sum(counts)

    async def count_finished_since(self, since: datetime, *, bucket: timedelta) -> list[FinishedCount]:
        check_bucket(bucket)
        bucket_micros = bucket // timedelta(microseconds=1)
        replies = await self._run("count_finished", micros(since), bucket_micros, *(s.value for s in _TERMINAL_ORDER))
        counts = {(int(index), ScheduledCommandStatus(status)): int(count) for status, index, count in replies}
        return finished_counts(since, bucket, counts)

    async def next_due_at(self) -> datetime | None:
        earliest = await self._run("next_due")
        try:
            return from_micros(earliest) if earliest is not None else None
        except (ValueError, OverflowError):  # a due time no datetime holds: the worker polls (and claims it)
            return None

    async def purge_finished(
        self, older_than: datetime, statuses: frozenset[ScheduledCommandStatus], limit: int | None
    ) -> int:
        chosen = [s.value for s in _TERMINAL_ORDER if s in statuses]
        deleted = 0
        while limit is None or deleted < limit:
            chunk = _PURGE_CHUNK if limit is None else min(_PURGE_CHUNK, limit - deleted)
            removed = int(await self._run("purge", micros(older_than), chunk, *chosen))
            deleted += removed
            if removed < chunk:
                break
        return deleted
