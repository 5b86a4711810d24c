"""The dependency methods of ``RedisStore`` (a mixin; ``ScheduleOptions.after``, groups): adding dependants,
reading the pairs, and telling this process what a script's resolution did. The Lua is in
``_redis_dependency_scripts.py``: the release or cancellation of dependants runs inside every script that ends
entries, so it is as atomic as the outcome itself.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from ._redis_access import RedisAccess
from ._redis_codec import entry_fields, entry_from_json, from_micros
from ._redis_dependency_scripts import ADD_DEPENDANTS_BODY
from ._redis_scripts import LIB
from ._transitions import AddBatch, already_exists
from .dependencies import Dependency, UnknownParentError
from .entries import ScheduledCommandEntry
from .errors import UnreadableEntryError
from .queues import check_queue_name

__all__ = ["ADD_DEPENDANTS", "RedisDependencies"]

ADD_DEPENDANTS = LIB + ADD_DEPENDANTS_BODY


class RedisDependencies(RedisAccess):
    if TYPE_CHECKING:  # supplied by RedisStore

        def _notify_wakeup(self, due: datetime) -> None: ...
        def _notify_dependants_cancelled(self, entries: Sequence[ScheduledCommandEntry]) -> None: ...

    supports_dependencies = True

    async def add_dependants(
        self, entries: Sequence[ScheduledCommandEntry], after: Mapping[str, Dependency]
    ) -> list[str]:
        if not entries:
            return []
        AddBatch.of(entries)  # an id twice is refused here; an id held, by the script
        batch: list[list[Any]] = []
        for entry in entries:
            if entry.idempotency_key is not None:
                raise ValueError(f"entry {entry.id} has an idempotency key; a dependant cannot have one")
            check_queue_name(entry.queue)
            dependency = after.get(entry.id)
            parents = list(dependency.parents) if dependency is not None else []
            any_outcome = dependency is not None and not dependency.on_success_only
            batch.append([entry_fields(entry), parents, "1" if any_outcome else "0"])
        from redis.exceptions import ResponseError

        try:
            reply = await self._run("add_dependants", json.dumps(batch, ensure_ascii=False, separators=(",", ":")))
        except ResponseError as exc:
            kind, _, detail = str(exc).partition(" ")
            if kind == "EXISTS":
                raise already_exists(detail) from exc
            if kind == "UNKNOWN":
                raise UnknownParentError(detail, self.description) from exc
            if kind == "LATER":
                child, _, parent = detail.partition(" ")
                raise ValueError(f"entry {child} names {parent} as a parent before it is placed") from exc
            raise
        self._after_resolution(reply)
        return [entry.id for entry in entries]

    async def get_parents(self, entry_id: str) -> list[str]:
        client = await self._client()
        with self._unavailable():
            return await cast(Awaitable[list[str]], client.lrange(self._key(f"dp:{entry_id}"), 0, -1))

    async def get_dependants(self, entry_id: str) -> list[str]:
        client = await self._client()
        with self._unavailable():
            return cast(list[str], await client.zrange(self._key(f"dk:{entry_id}"), 0, -1))

    def _after_resolution(self, reply: Sequence[str]) -> None:
        """Tell this process what a script did to dependants (``resolution_reply``: the earliest due time released,
        then the snapshots of those cancelled); other processes hear it on the channels."""
        earliest, *cancelled = reply
        if earliest:
            with contextlib.suppress(ValueError, OverflowError):
                self._notify_wakeup(from_micros(earliest))
        if cancelled:
            entries = []
            for snapshot in cancelled:
                with contextlib.suppress(UnreadableEntryError):  # listed and dead-lettered like any corrupt one
                    entries.append(entry_from_json(snapshot))
            self._notify_dependants_cancelled(entries)
