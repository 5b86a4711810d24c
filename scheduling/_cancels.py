"""Cancel requests for the attempts running in this worker (``cancel(id, running=True)``).

Each entry this worker claims is watched through the store's finish listeners from the claim (``hold``, called as
its task is spawned, with no await after the claim) until its slot is freed (``release``): a cancel request is
written with the same wake-up a finish sends (PostgreSQL NOTIFY, the SQLite commit watcher, in-process calls), so
the worker holding the entry hears it within a second, whichever process asked, even when it arrives between the
claim and the handler's start (then the handler is cancelled as it starts). On a call the entry is re-read; when it
is still held under this attempt's lease and carries a request, the attempt's task is cancelled (an ``async def``
handler gets ``CancelledError``) and its ``CommandContext`` is told (a plain ``def`` handler, which cannot be
interrupted, sees ``cancel_requested`` and should return; its slot is held until it does).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from stores.base import ScheduledCommandStore

from .context import CommandContext
from .entries import ScheduledCommandEntry, ScheduledCommandStatus

__all__ = ["CANCELLED", "CancelRequests", "request"]

#: The error message and attempt error of an entry cancelled while it ran.
CANCELLED = "cancelled on request while it ran"

logger = logging.getLogger("scheduling.service")


class CancelRequests:
    """The entries claimed here, each watched for a cancel request from its claim until its slot is freed."""

    def __init__(self, store: ScheduledCommandStore) -> None:
        self._store = store
        #: entry id -> lease token, from the claim until the slot is freed: the finish listener is registered.
        self._held: dict[str, str] = {}
        #: entry id -> (lease token, the attempt's task, its context), while the handler runs.
        self._running: dict[str, tuple[str, asyncio.Task[object], CommandContext]] = {}
        #: Held entries whose listener was called before their handler started: re-read when it starts.
        self._heard_early: set[str] = set()
        self._requested: set[str] = set()
        self._checks: set[asyncio.Task[None]] = set()

    def hold(self, entry: ScheduledCommandEntry) -> None:
        """From the claim of ``entry`` until ``release``, listen for a cancel request (one listener per claim)."""
        if entry.lease_token is None or entry.id in self._held:  # pragma: no cover - claimed entries have a token
            return
        self._held[entry.id] = entry.lease_token
        self._store.add_finish_listener(entry.id, self._heard)

    def release(self, entry_id: str) -> None:
        """The entry's slot is freed: stop listening."""
        if self._held.pop(entry_id, None) is not None:
            self._store.remove_finish_listener(entry_id, self._heard)
        self._running.pop(entry_id, None)
        self._heard_early.discard(entry_id)
        self._requested.discard(entry_id)

    def watch(self, entry: ScheduledCommandEntry, run_context: CommandContext) -> None:
        """From now until ``unwatch``, a cancel request for ``entry`` cancels the current task; one heard since the
        claim does at once."""
        task = asyncio.current_task()
        if task is None or entry.lease_token is None:  # pragma: no cover - attempts run in tasks, on claimed entries
            return
        self._running[entry.id] = (entry.lease_token, task, run_context)
        if entry.id not in self._held:  # an attempt not spawned through the leases (none in the service)
            self.hold(entry)
        if entry.id in self._heard_early:
            self._heard_early.discard(entry.id)
            self._heard(entry.id)

    def unwatch(self, entry_id: str) -> bool:
        """The handler returned; whether a cancel request reached the attempt (then its outcome is "cancelled")."""
        self._running.pop(entry_id, None)
        if entry_id in self._requested:
            self._requested.discard(entry_id)
            return True
        return False

    def _heard(self, entry_id: str) -> None:
        """A finish listener: the entry may carry a request (or have finished elsewhere): re-read it."""
        if entry_id in self._requested:
            return
        if entry_id not in self._running:
            if entry_id in self._held:  # claimed, its handler not started yet: checked when it starts
                self._heard_early.add(entry_id)
            return
        check = asyncio.ensure_future(self._check(entry_id))
        self._checks.add(check)
        check.add_done_callback(self._checks.discard)

    async def _check(self, entry_id: str) -> None:
        try:
            entry = await self._store.get(entry_id)
        except Exception:
            logger.debug("could not read %s for a cancel request", entry_id, exc_info=True)
            return
        running = self._running.get(entry_id)
        if (
            running is None
            or entry is None
            or entry.status is not ScheduledCommandStatus.PROCESSING
            or entry.lease_token != running[0]
            or entry.cancel_requested_at is None
            or entry_id in self._requested
        ):
            return
        _, task, run_context = running
        self._requested.add(entry_id)
        run_context._request_cancel()  # the service tells the context it built
        logger.info(
            "cancelling the running attempt of %s %s on request",
            entry.command_type,
            entry_id,
            extra={"action": "cancel_running", "command_id": entry_id, "command_type": entry.command_type},
        )
        task.cancel()


async def request(store: ScheduledCommandStore, command_id: str, now: datetime) -> bool:
    """Store a cancel request for a PROCESSING command (``cancel(id, running=True)``); whether it was running."""
    requested = await store.request_cancel(command_id, now=now)
    if requested is None:
        return False
    logger.info(
        "asked the worker running %s %s to cancel it",
        requested.command_type,
        requested.id,
        extra={"action": "cancel_requested", "command_id": requested.id, "command_type": requested.command_type},
    )
    return True
