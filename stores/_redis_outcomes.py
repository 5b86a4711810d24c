"""``count_outcomes`` and ``list_occurrences`` of ``RedisStore`` (a mixin), from the indexes it already keeps: no
new script, no new key. ``list_occurrences`` walks the schedule's index ``r:{name}`` newest first with the listing
script.

The finished entries of a range are read from the ``done:{status}`` sorted sets (scored by ``completed_at``), their
command types from their hashes, and the retried attempts from the attempts lists of those that needed more than one
attempt. So the cost grows with the entries finished in the range, not with everything stored (the ABC's default
reads every entry). Unlike SQL, a retried attempt is found through its entry once the entry has finished: the
retries of an entry still waiting for its next attempt are counted when it finishes (if in the range asked).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from ._redis_access import RedisAccess
from ._redis_codec import entry_from_json, from_micros, micros
from .entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from .errors import UnreadableEntryError
from .outcomes import FAILING_ATTEMPTS, Outcome, OutcomeCount, check_outcome_range, sorted_counts, truncate

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisOutcomes"]

_FINISHED: dict[ScheduledCommandStatus, Outcome] = {
    ScheduledCommandStatus.COMPLETED: "completed",
    ScheduledCommandStatus.FAILED: "failed",
    ScheduledCommandStatus.EXPIRED: "expired",
}
#: Entries read per pipeline round trip.
_CHUNK = 1_000


def _id_of(member: str) -> str:
    """The entry id of a ``done`` member, ``{seq:016d}:{id}`` (see ``_redis_scripts.py``)."""
    return member[17:]


class RedisOutcomes(RedisAccess):
    async def list_occurrences(self, name: str, *, limit: int = 20) -> list[ScheduledCommandEntry]:
        entries = []
        for reply in await self._run("list", f"r:{name}", 0, limit, "1"):
            with contextlib.suppress(UnreadableEntryError):  # the entry listings show a corrupt one
                entries.append(entry_from_json(reply))
        return entries

    async def count_outcomes(self, since: datetime, until: datetime, *, unit: timedelta) -> list[OutcomeCount]:
        check_outcome_range(since, until, unit)
        client = await self._client()
        counts: dict[tuple[datetime, str, Outcome], int] = {}

        def add(at: datetime, command_type: str, outcome: Outcome) -> None:
            if since <= at < until:
                key = (truncate(at, unit), command_type, outcome)
                counts[key] = counts.get(key, 0) + 1

        for status, outcome in _FINISHED.items():
            with self._unavailable():
                finished = await cast(
                    Awaitable[list[tuple[str, float]]],
                    client.zrangebyscore(
                        self._key(f"done:{status.value}"), micros(since), f"({micros(until)}", withscores=True
                    ),
                )
            for first in range(0, len(finished), _CHUNK):
                chunk = finished[first : first + _CHUNK]
                with self._unavailable():
                    async with client.pipeline(transaction=False) as pipe:
                        for member, _ in chunk:
                            pipe.hmget(self._key(f"e:{_id_of(member)}"), ["command_type", "attempt_count"])
                        fields: list[list[Any]] = await pipe.execute()
                retried_ids = []
                for (member, score), (command_type, attempt_count) in zip(chunk, fields, strict=True):
                    if command_type is None:  # purged meanwhile
                        continue
                    add(from_micros(int(score)), str(command_type), outcome)
                    with contextlib.suppress(TypeError, ValueError):
                        if int(attempt_count) > 1:
                            retried_ids.append((_id_of(member), str(command_type), int(attempt_count)))
                await self._count_retries(client, retried_ids, status, add)
        return sorted_counts(counts)

    async def _count_retries(
        self, client: Redis, entries: list[tuple[str, str, int]], status: ScheduledCommandStatus, add: Any
    ) -> None:
        """Each failing attempt of ``entries`` (finished in ``status``) that was followed by another one."""
        if not entries:
            return
        with self._unavailable():
            async with client.pipeline(transaction=False) as pipe:
                for entry_id, _, _ in entries:
                    pipe.lrange(self._key(f"a:{entry_id}"), 0, -1)
                lists: list[list[str]] = await pipe.execute()
        for (_, command_type, attempt_count), attempts in zip(entries, lists, strict=True):
            for raw in attempts:
                attempt = AttemptRecord.model_validate_json(raw)
                last = status is ScheduledCommandStatus.FAILED and attempt.attempt >= attempt_count
                if attempt.outcome in FAILING_ATTEMPTS and not last:
                    add(attempt.finished_at, command_type, "retried")
