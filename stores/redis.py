"""``RedisStore``: scheduled commands in Redis, for teams that run Redis and no SQL database.

Every change of state is one Lua script (``_redis_scripts``), which the server runs atomically in one round trip:
claims, lease renewal, the fenced outcomes and the recovery of expired leases, with the secondary indexes (status,
command type, correlation id, schedule, idempotency key) and the release or cancellation of dependants
(``ScheduleOptions.after``, groups: ``_redis_dependencies``) kept in the same scripts. Entries that become PENDING
are published on a channel every store of that prefix listens to, so workers wake without polling delay (and ids
of entries that finish on another, for ``wait()``).

Requires the ``redis`` extra (redis-py's asyncio client); importing this module does not, using it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from . import _redis_operator_scripts as operator_scripts
from . import _redis_scripts as scripts
from ._redis_audit import ADD_AUDIT_RECORD, RedisAudit
from ._redis_batch import outcome_batcher
from ._redis_codec import (
    entry_fields,
    entry_from_json,
    entry_from_reply,
    field_changes,
    from_micros,
    log_unreadable,
    micros,
    pairs,
    transition_args,
)
from ._redis_dependencies import ADD_DEPENDANTS, RedisDependencies
from ._redis_outcomes import RedisOutcomes
from ._redis_queues import CLAIM, SET_QUEUE, RedisQueues, route_args
from ._redis_reads import RedisReads
from ._redis_schedules import INSERT_SCHEDULE, RECORD_SCHEDULE_RUN, REPLACE_SCHEDULE, RedisSchedules
from ._redis_server import check_layout, listen, subscribe, warn_without_persistence
from ._redis_url import mask_redis_url, split_prefix
from ._redis_workers import FORGET_WORKERS, REGISTER_WORKER, TOUCH_WORKER, RedisWorkers
from ._transitions import CANCEL, DISMISS, REQUEUE, AddBatch, ClaimEnd, already_exists
from .base import ReclaimedEntry, ScheduledCommandStore
from .entries import ScheduledCommandEntry, ScheduledCommandStatus
from .errors import StoreUnavailableError, UnreadableEntryError
from .queues import Route, check_queue_name

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

#: Connections one store opens at most; calls beyond wait for one (up to the pool's timeout, 20 s).
_MAX_CONNECTIONS = 50


#: The key prefix when none is given: every key of the store starts with it and a colon.
DEFAULT_PREFIX = "cqrs-scheduling"

_SCRIPTS = {
    "add": scripts.ADD,
    "claim": CLAIM,
    "set_queue": SET_QUEUE,
    "renew": scripts.RENEW,
    "finish": scripts.FINISH,
    "reclaim": scripts.RECLAIM,
    "cancel": operator_scripts.CANCEL,
    "requeue": operator_scripts.REQUEUE,
    "request_cancel": operator_scripts.REQUEST_CANCEL,
    "dismiss": operator_scripts.DISMISS,
    "list": scripts.LIST,
    "next_due": scripts.NEXT_DUE,
    "purge": scripts.PURGE,
    "count_finished": scripts.COUNT_FINISHED,
    "insert_schedule": INSERT_SCHEDULE,
    "replace_schedule": REPLACE_SCHEDULE,
    "record_schedule_run": RECORD_SCHEDULE_RUN,
    "register_worker": REGISTER_WORKER,
    "touch_worker": TOUCH_WORKER,
    "forget_workers": FORGET_WORKERS,
    "add_audit_record": ADD_AUDIT_RECORD,
    "add_dependants": ADD_DEPENDANTS,
}


class RedisStore(
    RedisDependencies,
    RedisReads,
    RedisQueues,
    RedisOutcomes,
    RedisSchedules,
    RedisWorkers,
    RedisAudit,
    ScheduledCommandStore,
):
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
            # Bytes that are no UTF-8 (written behind our back) decode to lone surrogates, not an error that would
            # fail a whole claim: the entry holding them is then dead-lettered naming the field.
            pool = BlockingConnectionPool.from_url(
                self._url,
                decode_responses=True,
                encoding_errors="surrogateescape",
                retry=Retry(NoBackoff(), 0),
                max_connections=_MAX_CONNECTIONS,
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
        AddBatch.of(entries)  # an id twice is refused here; an id held, and idempotency keys, by the script
        batch: list[list[str]] = []
        for entry in entries:
            # The ready sets are keyed "{priority}|{queue}|{type}": a queue name holds no "|" (ScheduleOptions checks
            # it; an entry built by hand is checked here).
            check_queue_name(entry.queue)
            fields = entry_fields(entry)
            status = next(i for i in range(0, len(fields), 2) if fields[i] == "status")
            fields[status + 1] = ScheduledCommandStatus.PENDING.value
            batch.append(fields)
        from redis.exceptions import ResponseError

        try:
            ids: list[str] = await self._run("add", json.dumps(batch, ensure_ascii=False, separators=(",", ":")))
        except ResponseError as exc:
            if str(exc).startswith("EXISTS "):
                raise already_exists(str(exc)[7:]) from exc
            raise
        self._notify_wakeup(min(e.scheduled_for for e in entries))
        return ids

    async def get(self, entry_id: str) -> ScheduledCommandEntry | None:
        client = await self._client()
        with self._unavailable():
            reply = await cast(Awaitable[dict[str, str]], client.hgetall(self._key(f"e:{entry_id}")))
        if not reply:
            return None
        reply["id"] = entry_id  # the key's id wins over a field written behind our back (as in the scripts)
        return entry_from_reply([item for pair in reply.items() for item in pair])

    async def cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        cancelled = await self._cancel("id", entry_id, now)
        return cancelled[0] if cancelled else None

    async def cancel_by_correlation_id(self, correlation_id: str, *, now: datetime) -> list[ScheduledCommandEntry]:
        return await self._cancel("c", correlation_id, now)

    async def _cancel(self, index: str, value: str, now: datetime, keep: str = "") -> list[ScheduledCommandEntry]:
        *replies, resolution = await self._run("cancel", *transition_args(CANCEL, now), index, value, keep)
        cancelled = [entry_from_json(reply) for reply in replies]
        self._after_resolution(resolution)
        return cancelled

    async def requeue(self, entry_id: str, *, now: datetime) -> bool:
        requeued = bool(await self._run("requeue", *transition_args(REQUEUE, now), entry_id))
        if requeued:
            self._notify_wakeup(now)
        return requeued

    async def request_cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        reply = await self._run("request_cancel", entry_id, micros(now))
        return entry_from_json(reply) if reply else None  # the holder hears it on the finished channel

    async def dismiss(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        reply = await self._run("dismiss", *transition_args(DISMISS, now), entry_id)
        return entry_from_json(reply) if reply else None

    # -- claiming and outcomes --------------------------------------------------------------------------------

    async def claim_due(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta, route: Route | None = None
    ) -> list[ScheduledCommandEntry]:
        if limit <= 0:
            return []
        replies = await self._run(
            "claim", micros(now), limit, worker_id, micros(now + lease_duration), uuid.uuid4().hex, *route_args(route)
        )
        claimed: list[ScheduledCommandEntry] = []
        for reply in replies:
            try:  # not through an awaited helper: a coroutine per claimed entry shows in a worker's CPU
                claimed.append(entry_from_json(reply))
            except UnreadableEntryError as exc:
                await self._dead_letter_unreadable(reply, exc, now)
        return claimed

    async def _readable_or_dead_lettered(self, reply: str, now: datetime) -> ScheduledCommandEntry | None:
        """The entry a claim (or a takeover) just leased; None when it was written behind our back and cannot be
        read: then it is FAILED under that lease, naming the field and value (as the SQL stores), and never strands
        the entries leased beside it."""
        try:
            return entry_from_json(reply)
        except UnreadableEntryError as exc:
            await self._dead_letter_unreadable(reply, exc, now)
            return None

    async def _dead_letter_unreadable(self, reply: str, exc: UnreadableEntryError, now: datetime) -> None:
        """FAILED under the lease just taken, naming the field and value."""
        fields = pairs(json.loads(reply))
        await self._end_claim(fields["id"], fields["lease_token"], ClaimEnd.unreadable(exc, now))
        log_unreadable(exc, "dead-lettered")

    async def renew_leases(self, leases: Sequence[tuple[str, str]], *, until: datetime) -> set[str]:
        if not leases:
            return set()
        renewed = await self._run("renew", micros(until), *(part for lease in leases for part in lease))
        return set(renewed)

    async def end_claim(self, entry_id: str, lease_token: str, end: ClaimEnd) -> datetime | None:
        due = await self._end_claim(entry_id, lease_token, end)
        if due is None:
            return None
        try:
            return from_micros(due)
        except (ValueError, OverflowError):  # a due time no datetime holds (written behind our back): look now
            return from_micros(0)

    async def _end_claim(self, entry_id: str, lease_token: str, end: ClaimEnd) -> str | None:
        """``end_claim`` as the finish script answers it: the entry's ``scheduled_for`` as stored, or None."""
        changes = end.changes()
        del changes["status"]  # the script moves the status with its indexes
        if end.attempt is not None:  # the attempt's own start, not the claim's
            changes["started_at"] = end.attempt.started_at
        assigned, deleted = field_changes(changes)
        request = [
            entry_id,
            lease_token,
            end.status.value,
            end.attempt.model_dump_json() if end.attempt is not None else "",
            "1" if end.counts_failure else "0",
            assigned,
            deleted,
        ]
        await self._client()
        return await self._finisher.submit(request)

    async def _finish_batch(self, requests: list[list[Any]]) -> list[str | None]:
        *results, resolution = await self._run(
            "finish", json.dumps(requests, ensure_ascii=False, separators=(",", ":"))
        )
        self._after_resolution(resolution)
        return [str(result) if result is not None else None for result in results]

    async def reclaim_expired_leases(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta
    ) -> list[ReclaimedEntry]:
        if limit <= 0:
            return []
        replies = await self._run(
            "reclaim", micros(now), limit, worker_id, micros(now + lease_duration), uuid.uuid4().hex
        )
        taken: list[ReclaimedEntry] = []
        for owner, expiry, reply in replies:
            entry = await self._readable_or_dead_lettered(reply, now)
            if entry is not None:
                taken.append(ReclaimedEntry(entry, owner, _lease_expiry(expiry)))
        return taken

    # -- recurring schedules (the rest: RedisSchedules) --------------------------------------------------------

    async def cancel_occurrences(
        self, name: str, *, now: datetime, keep_generation: int | None = None
    ) -> list[ScheduledCommandEntry]:
        keep = str(keep_generation) if keep_generation is not None else ""
        return await self._cancel("r", name, now, keep)


def _lease_expiry(value: str | None) -> datetime | None:
    """The previous lease expiry of an entry taken over; None when there was none or it cannot be read."""
    try:
        return from_micros(value) if value is not None else None
    except (ValueError, OverflowError):
        return None
