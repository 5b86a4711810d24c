"""``MemoryStore``'s queue bookkeeping: paused queues, held locks and per-queue counts, kept in step with entries.

Everything a claim asks ("may this entry be claimed now?") is answered from dictionaries, without a scan.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Collection
from datetime import datetime

from .entries import ScheduledCommandEntry, ScheduledCommandStatus
from .queues import QueueInfo, QueueLimits, Route, check_queue_name

__all__ = ["MemoryQueues"]

PENDING = ScheduledCommandStatus.PENDING
PROCESSING = ScheduledCommandStatus.PROCESSING


class MemoryQueues:
    """Per-queue state of a ``MemoryStore``; ``track`` is called with every entry snapshot replaced."""

    def __init__(self) -> None:
        self.paused: set[str] = set()
        #: lock -> id of the PROCESSING entry holding it.
        self.held_locks: dict[str, str] = {}
        self._depth: Counter[str] = Counter()
        self._running: Counter[str] = Counter()
        self.limits: dict[str, QueueLimits] = {}
        #: queue -> start times of its entries within the last ``rate.per`` (rate-limited queues only).
        self._starts: dict[str, deque[datetime]] = {}

    def track(self, previous: ScheduledCommandEntry | None, entry: ScheduledCommandEntry | None) -> None:
        """``previous`` was replaced by ``entry`` (``None``: added, or deleted)."""
        for snapshot, sign in ((previous, -1), (entry, 1)):
            if snapshot is None:
                continue
            if snapshot.status is PENDING:
                self._depth[snapshot.queue] += sign
            elif snapshot.status is PROCESSING:
                self._running[snapshot.queue] += sign
                if snapshot.lock is not None:
                    if sign > 0:
                        self.held_locks[snapshot.lock] = snapshot.id
                    elif self.held_locks.get(snapshot.lock) == snapshot.id:
                        del self.held_locks[snapshot.lock]

    def take(
        self,
        entry: ScheduledCommandEntry,
        route: Route | None,
        locks_taken: set[str],
        now: datetime,
    ) -> bool:
        """Whether a claim for ``route`` may take ``entry`` now; ``locks_taken`` holds the
        locks of the entries this claim took already, and gets ``entry``'s when it may."""
        if route is not None and not route.allows(entry.queue, entry.command_type):
            return False
        if entry.queue in self.paused:
            return False
        lock = entry.lock
        if lock is not None and (lock in self.held_locks or lock in locks_taken):
            return False
        if not self._within_limits(entry.queue, now):
            return False
        if lock is not None:
            locks_taken.add(lock)
        return True

    def _within_limits(self, queue: str, now: datetime) -> bool:
        """Whether one more entry of ``queue`` may start now; if so, counts its start (the claim takes it)."""
        limits = self.limits.get(queue)
        if limits is None:
            return True
        starts = self._starts.setdefault(queue, deque())
        if limits.rate is not None:
            while starts and starts[0] <= now - limits.rate.per:
                starts.popleft()
        allowance = limits.allowance(self._running[queue], len(starts))
        if allowance is not None and allowance <= 0:
            return False
        if limits.rate is not None:
            starts.append(now)
        return True

    def next_start_at(self, now: datetime, queues: Collection[str] | None) -> datetime | None:
        """The earliest time after ``now`` at which an unpaused rate limited queue (of ``queues``) that spent its
        rate may start again: when its ``rate.count``-th latest start is ``rate.per`` old."""
        earliest: datetime | None = None
        for name, limits in self.limits.items():
            if limits.rate is None or name in self.paused or (queues is not None and name not in queues):
                continue
            starts = self._starts.get(name, ())
            if len(starts) < limits.rate.count:
                continue
            frees_at = starts[len(starts) - limits.rate.count] + limits.rate.per
            if frees_at > now and (earliest is None or frees_at < earliest):
                earliest = frees_at
        return earliest

    def set_paused(self, name: str, paused: bool) -> None:
        check_queue_name(name)
        if paused:
            self.paused.add(name)
        else:
            self.paused.discard(name)

    def set_limits(self, name: str, limits: QueueLimits) -> None:
        check_queue_name(name)
        if limits.limited:
            self.limits[name] = limits
        else:
            self.limits.pop(name, None)
            self._starts.pop(name, None)

    def infos(self) -> list[QueueInfo]:
        names = {n for n, c in self._depth.items() if c} | {n for n, c in self._running.items() if c} | self.paused
        names |= self.limits.keys()
        infos = []
        for name in sorted(names):
            limits = self.limits.get(name, QueueLimits())
            infos.append(
                QueueInfo(
                    name=name,
                    paused=name in self.paused,
                    depth=self._depth[name],
                    running=self._running[name],
                    max_running=limits.max_running,
                    rate=limits.rate,
                )
            )
        return infos
