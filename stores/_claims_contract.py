"""The claim part of the store contract, a base of ``ScheduledCommandStore``: claiming due entries under leases and
ending those claims, each end fenced by the claim's ``lease_token`` (see ``stores/base.py``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ._store_types import ReclaimedEntry
from ._transitions import RELEASED, ClaimEnd
from .entries import AttemptRecord, ScheduledCommandEntry
from .queues import Route

__all__ = ["ClaimStore"]


class ClaimStore(ABC):
    """Claims and their fenced outcomes (``stores.testing.StoreContract``)."""

    if TYPE_CHECKING:

        def _notify_wakeup(self, due: datetime) -> None: ...

    @abstractmethod
    async def claim_due(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta, route: Route | None = None
    ) -> list[ScheduledCommandEntry]:
        """Atomically move up to ``limit`` due PENDING entries to PROCESSING under new leases and return them.

        Due means ``scheduled_for <= now``; order is priority descending, then ``scheduled_for``, then scheduling
        order. Each claimed entry gets ``lease_owner = worker_id``, a fresh ``lease_token``,
        ``lease_expires_at = now + lease_duration`` and ``started_at = now``. Two concurrent claims never return
        the same entry. Expired entries are claimed like any other: expiry is the caller's decision.

        Routing: only entries that ``route`` allows (its queues and command types; ``None``: every entry) are
        claimed, and none of a paused queue. An entry whose ``lock``
        another entry holds (PROCESSING) is not claimed, nor two entries of one lock in one claim.
        """

    @abstractmethod
    async def renew_leases(self, leases: Sequence[tuple[str, str]], *, until: datetime) -> set[str]:
        """Extend the leases ``(entry_id, lease_token)`` still held to ``until``; return the ids renewed."""

    async def end_claim(self, entry_id: str, lease_token: str, end: ClaimEnd) -> datetime | None:
        """The one fenced end of a claim, which ``complete``, ``retry_later``, ``dead_letter``, ``cancel_claimed``,
        ``expire`` and ``release`` ask with the ``ClaimEnd`` each states: atomically, if the entry is PROCESSING
        under ``lease_token``, apply ``end`` (see ``ClaimEnd``), update its WAITING dependants when it reached a
        terminal status (see ``add_dependants``) and call the finish listeners; return its ``scheduled_for`` after
        the change. ``None``, and nothing changed, when the lease is not held.

        Every store implements it; it is not abstract only so that a store written before 0.8, which overrides the
        six methods instead, still works.

        .. versionadded:: 0.8
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not implement end_claim (asked to end a claim as {end.status.value})"
        )

    async def complete(
        self, entry_id: str, lease_token: str, *, result_payload: str | None, attempt: AttemptRecord
    ) -> bool:
        """PROCESSING -> COMPLETED (``completed_at = attempt.finished_at``), recording the attempt. Fenced."""
        return await self.end_claim(entry_id, lease_token, ClaimEnd.completed(attempt, result_payload)) is not None

    async def retry_later(
        self, entry_id: str, lease_token: str, *, due: datetime, error_message: str, attempt: AttemptRecord
    ) -> bool:
        """PROCESSING -> PENDING due at ``due``, ``retry_count + 1``, recording the failed attempt. Fenced."""
        return await self.end_claim(entry_id, lease_token, ClaimEnd.retried(due, error_message, attempt)) is not None

    async def dead_letter(self, entry_id: str, lease_token: str, *, error_message: str, attempt: AttemptRecord) -> bool:
        """PROCESSING -> FAILED (``completed_at = attempt.finished_at``), ``retry_count + 1``, recording it. Fenced."""
        return await self.end_claim(entry_id, lease_token, ClaimEnd.dead_lettered(error_message, attempt)) is not None

    async def expire(self, entry_id: str, lease_token: str, *, now: datetime) -> bool:
        """PROCESSING -> EXPIRED (``completed_at = now``), without an attempt. Fenced."""
        return await self.end_claim(entry_id, lease_token, ClaimEnd.expired(now)) is not None

    async def release(self, entry_id: str, lease_token: str) -> bool:
        """PROCESSING -> PENDING, due as before, no attempt counted (a stopping worker gives it back). Fenced.
        Wakes listeners with its due time."""
        due = await self.end_claim(entry_id, lease_token, RELEASED)
        if due is None:
            return False
        self._notify_wakeup(due)
        return True

    @abstractmethod
    async def reclaim_expired_leases(
        self, *, now: datetime, limit: int, worker_id: str, lease_duration: timedelta
    ) -> list[ReclaimedEntry]:
        """Take over up to ``limit`` PROCESSING entries whose lease expired at or before ``now``, atomically.

        Each gets a new lease for ``worker_id`` (so the dead worker's token no longer fences anything); the caller
        then records the lost attempt with ``retry_later`` or ``dead_letter``.
        """

    # -- cancelling running entries (optional) ----------------------------------------------------------------

    async def request_cancel(self, entry_id: str, *, now: datetime) -> ScheduledCommandEntry | None:
        """Ask the worker holding a PROCESSING entry to cancel its attempt: set ``cancel_requested_at = now``
        (kept, not moved, when already set) and wake that worker through the finish listeners, in this process or
        another (the entry is reported as if it may have finished: the listener re-reads it).

        Changes nothing else: the entry stays PROCESSING until its worker ends it with ``cancel_claimed`` (or with
        another outcome, when the attempt finished first). Returns the entry, or ``None`` (nothing changed) when it
        is unknown or not PROCESSING.

        .. versionadded:: 0.6
        """
        raise NotImplementedError(f"{type(self).__name__} cannot cancel running entries")

    async def cancel_claimed(
        self, entry_id: str, lease_token: str, *, error_message: str, attempt: AttemptRecord
    ) -> bool:
        """PROCESSING -> CANCELLED (``completed_at = attempt.finished_at``), recording the (cancelled) attempt; not
        retried, ``retry_count`` unchanged. Fenced.

        .. versionadded:: 0.6
        """
        return await self.end_claim(entry_id, lease_token, ClaimEnd.cancelled(error_message, attempt)) is not None
