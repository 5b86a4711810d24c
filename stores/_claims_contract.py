"""The claim part of the store contract, a base of ``ScheduledCommandStore``: claiming due entries under leases and
ending those claims, each end fenced by the claim's ``lease_token`` (see ``stores/base.py``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime, timedelta

from ._store_types import ReclaimedEntry
from .entries import AttemptRecord, ScheduledCommandEntry
from .queues import Route

__all__ = ["ClaimStore"]


class ClaimStore(ABC):
    """Claims and their fenced outcomes (``tests/stores/test_contract.py``, ``test_contract_outcomes.py``)."""

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

    @abstractmethod
    async def complete(
        self, entry_id: str, lease_token: str, *, result_payload: str | None, attempt: AttemptRecord
    ) -> bool:
        """PROCESSING -> COMPLETED (``completed_at = attempt.finished_at``), recording the attempt. Fenced."""

    @abstractmethod
    async def retry_later(
        self, entry_id: str, lease_token: str, *, due: datetime, error_message: str, attempt: AttemptRecord
    ) -> bool:
        """PROCESSING -> PENDING due at ``due``, ``retry_count + 1``, recording the failed attempt. Fenced."""

    @abstractmethod
    async def dead_letter(self, entry_id: str, lease_token: str, *, error_message: str, attempt: AttemptRecord) -> bool:
        """PROCESSING -> FAILED (``completed_at = attempt.finished_at``), ``retry_count + 1``, recording it. Fenced."""

    @abstractmethod
    async def expire(self, entry_id: str, lease_token: str, *, now: datetime) -> bool:
        """PROCESSING -> EXPIRED (``completed_at = now``), without an attempt. Fenced."""

    @abstractmethod
    async def release(self, entry_id: str, lease_token: str) -> bool:
        """PROCESSING -> PENDING, due as before, no attempt counted (a stopping worker gives it back). Fenced."""

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
        raise NotImplementedError(f"{type(self).__name__} cannot cancel running entries")
