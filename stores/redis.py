"""``RedisStore``: scheduled commands in Redis, for teams that run Redis and no SQL database.

Every change of state is one Lua script (``_redis_scripts``), which the server runs atomically in one round trip:
claims, lease renewal, the fenced outcomes and the recovery of expired leases, with the secondary indexes (status,
command type, correlation id, schedule, idempotency key) kept in the same scripts. Entries that become PENDING
are published on a channel every store of that prefix listens to, so workers wake without polling delay (and ids
of entries that finish on another, for ``wait()``).

Requires the ``redis`` extra (redis-py's asyncio client); importing this module does not, using it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from . import _redis_scripts as scripts
from ._redis_audit import ADD_AUDIT_RECORD, RedisAudit
from ._redis_batch import outcome_batcher
from ._redis_codec import entry_fields, entry_from_json, entry_from_reply, from_micros, micros, pairs
from ._redis_schedules import RedisSchedules
from ._redis_server import check_layout, listen, subscribe, warn_without_persistence
from ._redis_url import mask_redis_url, split_prefix
from ._redis_workers import FORGET_WORKERS, REGISTER_WORKER, TOUCH_WORKER, RedisWorkers
from .base import FinishedCount, ReclaimedEntry, ScheduledCommandStore, check_bucket, finished_counts
from .entries import TERMINAL_STATUSES, AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from .errors import StoreUnavailableError, UnreadableEntryError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

#: Connections one store opens at most; calls beyond wait for one (up to the pool's timeout, 20 s).
_MAX_CONNECTIONS = 50

logger = logging.getLogger(__name__)

#: The key prefix when none is given: every key of the store starts with it and a colon.
DEFAULT_PREFIX = "cqrs-scheduling"

#: Purge deletes at most this many entries per script run, so one purge never blocks the server for long.
_PURGE_CHUNK = 1_000


_TERMINAL_ORDER = tuple(sorted(TERMINAL_STATUSES))

_SCRIPTS = {
    "add": scripts.ADD,
    "claim": scripts.CLAIM,
    "renew": scripts.RENEW,
    "finish": scripts.FINISH,
    "reclaim": scripts.RECLAIM,
    "cancel": scripts.CANCEL,
    "requeue": scripts.REQUEUE,
    "dismiss": scripts.DISMISS,
    "list": scripts.LIST,
    "next_due": scripts.NEXT_DUE,
    "purge": scripts.PURGE,
    "count_finished": scripts.COUNT_FINISHED,
    "upsert_schedule": scripts.UPSERT_SCHEDULE,
    "set_schedule_paused": scripts.SET_SCHEDULE_PAUSED,
    "record_schedule_run": scripts.RECORD_SCHEDULE_RUN,
    "register_worker": REGISTER_WORKER,
    "touch_worker": TOUCH_WORKER,
    "forget_workers": FORGET_WORKERS,
    "add_audit_record": ADD_AUDIT_RECORD,
}


class RedisStore(RedisSchedules, RedisWorkers, RedisAudit, ScheduledCommandStore):
    """A ``ScheduledCommandStore`` in Redis (5 or later; 7 recommended), through redis-py's asyncio client.

    Args:
        url: ``redis://host:6379/0``, ``rediss://...`` for TLS, or ``unix:///path/to/socket``; a ``prefix`` query
            parameter (``redis://host:6379/0?prefix=billing``) gives the prefix where only a URL can be given
            (``--store``, ``$CQRS_SCHEDULING_STORE``).
        prefix: every key of the store starts with ``prefix:`` (default: the URL's, else ``cqrs-scheduling``);
            stores with different prefixes share a server without seeing each other. For Redis Cluster, give a
            prefix with a hash tag, such as ``{jobs}``, so that every key lands in one slot (the scripts touch
            many keys).

    The key layout is versioned: a server holding a newer layout under the prefix is refused with
    ``SchemaVersionError``. Opening logs a warning when the server persists nothing (no AOF, no RDB snapshots):
    a restart of such a server loses every entry. See docs/stores.md for what each persistence setting keeps.

    .. versionadded:: 0.5
    """

    def __init__(self, url: str, *, prefix: str | None = None) -> None:
        super().__init__()
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"RedisStore needs a redis://, rediss:// or unix:// URL, not {mask_redis_url(url)!r}")
        url, url_prefix = split_prefix(url)
        prefix = prefix if prefix is not None else url_prefix or DEFAULT_PREFIX
        if not prefix or any(c.isspace() for c in prefix):
            raise ValueError(f"the key prefix must be non-empty and without whitespace, got {prefix!r}")
        self._url = url
        self._prefix = prefix
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._listener: asyncio.Task[None] | None = None
        self._open_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._finisher = outcome_batcher(self._finish_batch)
        self._explicit = False  # opened by open() / async with, not by first use

    # -- lifecycle --------------------------------------------------------------------------------------------

    @property
    def description(self) -> str:
        return f"RedisStore({self.url}, prefix={self._prefix!r})"

    @property
    def url(self) -> str:
        """The server URL, password masked."""
        return mask_redis_url(self._url)

    @property
    def prefix(self) -> str:
        return self._prefix

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._open_lock is None or self._loop is not loop:
            if self._loop is not None and self._loop is not loop:
                # Used under another event loop (``asyncio.run`` twice): the old loop's connections are unusable.
                self._redis, self._listener, self._scripts, self._explicit = None, None, {}, False
            self._loop = loop
            self._open_lock = asyncio.Lock()
            self._finisher = outcome_batcher(self._finish_batch)
        return self._open_lock

    @property
    def opened_explicitly(self) -> bool:
        """Whether ``open()`` (or ``async with``) opened the store and it is still open: then its opener closes it.
        A store that opened itself on first use is not (a service that starts on it closes it when it stops)."""
        return self._redis is not None and self._explicit

    async def open(self) -> None:
        """Connect, check the key layout and subscribe to wake-ups now (first use does it too): fails fast with
        ``StoreUnavailableError`` or ``SchemaVersionError``. Whoever calls it closes the store."""
        await self._open()
        self._explicit = True

    async def _open(self) -> None:
        async with self._lock():
            if self._redis is not None:
                return
            try:
                from redis.asyncio import BlockingConnectionPool, Redis
                from redis.asyncio.retry import Retry
                from redis.backoff import NoBackoff
            except ImportError as exc:
                raise ImportError("RedisStore needs the redis client: pip install 'cqrs-scheduling[redis]'") from exc
            # No client-side retries: a script whose reply was lost may have run, and running it again is the
            # caller's decision (the service retries StoreUnavailableError with backoff).
            # A blocking pool: more concurrent calls than connections wait for one (the default pool raises "Too many
            # connections" at its 100th, which 100 coroutines scheduling at once reach).
            pool = BlockingConnectionPool.from_url(
                self._url, decode_responses=True, retry=Retry(NoBackoff(), 0), max_connections=_MAX_CONNECTIONS
            )
            client: Redis = Redis.from_pool(pool)
            try:
                with self._unavailable():
                    await check_layout(client, self._key("meta"), self.description)
                    await warn_without_persistence(client, self.url, self.description)
            except BaseException:
                await client.aclose()
                raise
            self._redis = client
            self._scripts = {name: client.register_script(source) for name, source in _SCRIPTS.items()}
            # Subscribed before open() returns: a wake-up published right after it is not missed. (Inside the
            # listener task, a cancellation during the subscription can be swallowed by the client.)
            channels = (self._key("wakeup"), self._key("finished"))
            try:
                with self._unavailable():
                    pubsub = await subscribe(client, *channels)
            except BaseException:
                self._redis = None
                await client.aclose()
                raise
            hooks = (self._notify_wakeup, self._notify_finished, self._recheck_finished)
            self._listener = asyncio.create_task(
                listen(lambda: self._redis, channels, pubsub, hooks, self.url), name=f"wake-ups:{self.description}"
            )
            self._recheck_finished()  # a finish before the subscription was published to nobody

    async def close(self) -> None:
        async with self._lock():
            if self._listener is not None:
                while not self._listener.done():
                    self._listener.cancel()
                    await asyncio.wait({self._listener}, timeout=1.0)
                with contextlib.suppress(BaseException):
                    self._listener.result()
                self._listener = None
            if self._redis is not None:
                await self._redis.aclose()
                self._redis = None
            self._scripts = {}
            self._explicit = False

    def _key(self, suffix: str) -> str:
        return f"{self._prefix}:{suffix}"

    @contextlib.contextmanager
    def _unavailable(self) -> Iterator[None]:
        """Connection failures become ``StoreUnavailableError`` (retried by the service)."""
        from redis.exceptions import BusyLoadingError, ConnectionError, TimeoutError

        try:
            yield
        except (ConnectionError, TimeoutError, BusyLoadingError, OSError) as exc:
            raise StoreUnavailableError(self.url, str(exc) or type(exc).__name__) from exc

    async def _client(self) -> Redis:
        if self._redis is None or self._loop is not asyncio.get_running_loop():
            await self._open()
        assert self._redis is not None
        return self._redis

    async def _run(self, script: str, *args: str | int) -> Any:
        """Run one script with the prefix as its first argument."""
        await self._client()
        with self._unavailable():
            return await self._scripts[script](keys=[], args=[self._prefix, *args])

    # -- scheduling -------------------------------------------------------------------------------------------

    async def add(self, entries: Sequence[ScheduledCommandEntry]) -> list[str]:
        if not entries:
            return []
        batch: list[list[str]] = []
        seen: set[str] = set()
        for entry in entries:
            if entry.id in seen:
                raise ValueError(f"the id {entry.id!r} appears twice in the batch")
            seen.add(entry.id)
            fields = entry_fields(entry)
            status = next(i for i in range(0, len(fields), 2) if fields[i] == "status")
            fields[status + 1] = ScheduledCommandStatus.PENDING.value
            batch.append(fields)
        from redis.exceptions import ResponseError

        try:
            ids: list[str] = await self._run("add", json.dumps(batch, ensure_ascii=False, separators=(",", ":")))
        except ResponseError as exc:
            if str(exc).startswith("EXISTS "):
                raise ValueError(f"an entry with id {str(exc)[7:]!r} already exists") from exc
            raise
        self._notify_wakeup(min(e.scheduled_for for e in entries))
        return ids

    async def get(self, entry_id: str) -> ScheduledCommandEntry | None:
        client = await self._client()
        with self._unavailable():
            reply = await cast(Awaitable[dict[str, str]], client.hgetall(self._key(f"e:{entry_id}")))
        if not reply:
            return None
        return entry_from_reply([item for pair in reply.items() for item in pair])

    async def cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        cancelled = await self._cancel("id", entry_id, now)
        return cancelled[0] if cancelled else None

    async def cancel_by_correlation_id(self, correlation_id: str, *, now: datetime) -> list[ScheduledCommandEntry]:
        return await self._cancel("c", correlation_id, now)

    async def _cancel(self, index: str, value: str, now: datetime, keep: str = "") -> list[ScheduledCommandEntry]:
        replies = await self._run("cancel", micros(now), index, value, keep)
        return [entry_from_json(reply) for reply in replies]

    async def requeue(self, entry_id: str, *, now: datetime) -> bool:
        requeued = bool(await self._run("requeue", entry_id, micros(now)))
        if requeued:
            self._notify_wakeup(now)
        return requeued

    async def dismiss(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        reply = await self._run("dismiss", entry_id, micros(now))
        return entry_from_json(reply) if reply else None

    # -- claiming and outcomes --------------------------------------------------------------------------------

    async def claim_due(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta
    ) -> list[ScheduledCommandEntry]:
        if limit <= 0:
            return []
        replies = await self._run(
            "claim", micros(now), limit, worker_id, micros(now + lease_duration), uuid.uuid4().hex
        )
        claimed: list[ScheduledCommandEntry] = []
        for reply in replies:
            try:
                claimed.append(entry_from_json(reply))
            except UnreadableEntryError as exc:  # written behind our back: FAILED under the lease just taken, naming
                fields = pairs(json.loads(reply))  # the field and value (as the SQL stores); never strands the others
                error = [("completed_at", micros(now)), ("error_message", f"UnreadableEntryError: {exc.description}")]
                await self._finish(fields["id"], fields["lease_token"], ScheduledCommandStatus.FAILED, set_fields=error)
                logger.error("%s; dead-lettered", exc, extra={"action": "unreadable_row", "command_id": exc.entry_id})
        return claimed

    async def renew_leases(self, leases: Sequence[tuple[str, str]], *, until: datetime) -> set[str]:
        if not leases:
            return set()
        renewed = await self._run("renew", micros(until), *(part for lease in leases for part in lease))
        return set(renewed)

    async def _finish(
        self,
        entry_id: str,
        lease_token: str,
        status: ScheduledCommandStatus,
        *,
        attempt: AttemptRecord | None = None,
        failed: bool = False,
        set_fields: Sequence[tuple[str, str | None]] = (),
    ) -> bool:
        if attempt is not None:  # the attempt's own start, not the claim's
            set_fields = [*set_fields, ("started_at", micros(attempt.started_at))]
        assigned = [part for name, value in set_fields if value is not None for part in (name, value)]
        deleted = [name for name, value in set_fields if value is None]
        request = [
            entry_id,
            lease_token,
            status.value,
            attempt.model_dump_json() if attempt is not None else "",
            "1" if failed else "0",
            assigned,
            deleted,
        ]
        await self._client()
        return await self._finisher.submit(request)

    async def _finish_batch(self, requests: list[list[Any]]) -> list[bool]:
        results = await self._run("finish", json.dumps(requests, ensure_ascii=False, separators=(",", ":")))
        return [bool(result) for result in results]

    async def complete(
        self, entry_id: str, lease_token: str, *, result_payload: str | None, attempt: AttemptRecord
    ) -> bool:
        return await self._finish(
            entry_id,
            lease_token,
            ScheduledCommandStatus.COMPLETED,
            attempt=attempt,
            set_fields=[("completed_at", micros(attempt.finished_at)), ("result_payload", result_payload)],
        )

    async def retry_later(
        self, entry_id: str, lease_token: str, *, due: datetime, error_message: str, attempt: AttemptRecord
    ) -> bool:
        return await self._finish(
            entry_id,
            lease_token,
            ScheduledCommandStatus.PENDING,
            attempt=attempt,
            failed=True,
            set_fields=[("scheduled_for", micros(due)), ("error_message", error_message)],
        )

    async def dead_letter(self, entry_id: str, lease_token: str, *, error_message: str, attempt: AttemptRecord) -> bool:
        return await self._finish(
            entry_id,
            lease_token,
            ScheduledCommandStatus.FAILED,
            attempt=attempt,
            failed=True,
            set_fields=[("completed_at", micros(attempt.finished_at)), ("error_message", error_message)],
        )

    async def expire(self, entry_id: str, lease_token: str, *, now: datetime) -> bool:
        return await self._finish(
            entry_id, lease_token, ScheduledCommandStatus.EXPIRED, set_fields=[("completed_at", micros(now))]
        )

    async def release(self, entry_id: str, lease_token: str) -> bool:
        released = await self._finish(entry_id, lease_token, ScheduledCommandStatus.PENDING)
        if released:
            entry = await self.get(entry_id)
            if entry is not None:
                self._notify_wakeup(entry.scheduled_for)
        return released

    async def reclaim_expired_leases(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta
    ) -> list[ReclaimedEntry]:
        if limit <= 0:
            return []
        replies = await self._run(
            "reclaim", micros(now), limit, worker_id, micros(now + lease_duration), uuid.uuid4().hex
        )
        return [
            ReclaimedEntry(entry_from_json(reply), owner, from_micros(expiry) if expiry is not None else None)
            for owner, expiry, reply in replies
        ]

    # -- recurring schedules (the rest: RedisSchedules) --------------------------------------------------------

    async def cancel_occurrences(
        self, name: str, *, now: datetime, keep_generation: int | None = None
    ) -> list[ScheduledCommandEntry]:
        keep = str(keep_generation) if keep_generation is not None else ""
        return await self._cancel("r", name, now, keep)

    # -- reading and housekeeping -----------------------------------------------------------------------------

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

    async def list_entries(
        self,
        *,
        status: ScheduledCommandStatus | None = None,
        command_type: str | None = None,
        correlation_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
        newest_first: bool = False,
        on_unreadable: Callable[[UnreadableEntryError], None] | None = None,
    ) -> list[ScheduledCommandEntry]:
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must not be negative, got limit={limit}, offset={offset}")
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
        replies = await self._run("list", index, offset, limit, "1" if newest_first else "0", *matching)
        entries: list[ScheduledCommandEntry] = []
        for reply in replies:
            try:
                entries.append(entry_from_json(reply))
            except UnreadableEntryError as exc:  # one corrupt hash never hides the others
                if on_unreadable is None:
                    logger.error(
                        "%s; skipped in a listing", exc, extra={"action": "unreadable_row", "command_id": exc.entry_id}
                    )
                else:
                    on_unreadable(exc)
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
        return from_micros(earliest) if earliest is not None else None

    async def purge(
        self,
        *,
        older_than: datetime,
        statuses: Collection[ScheduledCommandStatus] = TERMINAL_STATUSES,
        limit: int | None = None,
    ) -> int:
        chosen = [s.value for s in _TERMINAL_ORDER if s in set(statuses)]
        if not chosen:
            return 0
        deleted = 0
        while limit is None or deleted < limit:
            chunk = _PURGE_CHUNK if limit is None else min(_PURGE_CHUNK, limit - deleted)
            removed = int(await self._run("purge", micros(older_than), chunk, *chosen))
            deleted += removed
            if removed < chunk:
                break
        return deleted
