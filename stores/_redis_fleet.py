"""What ``RedisStore`` refuses of the fleet features (queues, locks, pausing, limits), with one clear error."""

from __future__ import annotations

from .entries import ScheduledCommandEntry
from .errors import UnsupportedFeatureError
from .queues import DEFAULT_QUEUE, Route

__all__ = ["refuse_fleet_claim", "refuse_fleet_entry"]

_WHY = "fleet features are not on RedisStore yet: use SqlStore"


def refuse_fleet_entry(entry: ScheduledCommandEntry, store: str) -> None:
    """Every entry of a RedisStore is in the default queue and holds no lock."""
    if entry.queue != DEFAULT_QUEUE or entry.lock is not None:
        raise UnsupportedFeatureError(store, "queues and locks", f"queue={entry.queue!r}, lock={entry.lock!r}; {_WHY}")


def refuse_fleet_claim(route: Route | None, store: str) -> None:
    """A RedisStore claims from the default queue only. It does not route by command type: a worker without the
    handler dead-letters the entry, as every store did before 0.5."""
    if route is not None and route.queues is not None and route.queues != {DEFAULT_QUEUE}:
        raise UnsupportedFeatureError(store, "claiming by queue", f"queues={sorted(route.queues)}; {_WHY}")
