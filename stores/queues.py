"""Queues: the names entries are routed by, and what the store keeps per queue (paused, limits).

A queue springs into being when an entry first names it; the store keeps a row for a queue only once it is paused
or given limits. ``QueueInfo`` is what ``list_queues()`` reports.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "DEFAULT_QUEUE",
    "QUEUE_NAME_PATTERN",
    "QueueInfo",
    "QueueLimits",
    "RateLimit",
    "Route",
    "check_queue_name",
]

#: The queue of an entry whose options and command class name none.
DEFAULT_QUEUE = "default"
#: What a queue name may hold: letters, digits and ``_ . : -``, 1 to 100 of them.
QUEUE_NAME_PATTERN = r"[A-Za-z0-9_.:-]{1,100}"
_QUEUE_NAME = re.compile(QUEUE_NAME_PATTERN)


def check_queue_name(value: object, field: str = "queue") -> str:
    """``value`` if it is a valid queue name; otherwise a ``ValueError`` naming the field and the value."""
    if not isinstance(value, str) or _QUEUE_NAME.fullmatch(value) is None:
        shown = value[:120] if isinstance(value, str) else value
        raise ValueError(f"{field} must match {QUEUE_NAME_PATTERN} (letters, digits, _ . : -), got {shown!r}")
    return value


@dataclass(frozen=True, slots=True)
class Route:
    """What one claim may take: entries of these queues and these command types (``None``: any).

    .. versionadded:: 0.5
    """

    queues: frozenset[str] | None = None
    command_types: frozenset[str] | None = None

    @classmethod
    def of(cls, queues: Collection[str] | None, command_types: Collection[str] | None) -> Route:
        return cls(
            frozenset(queues) if queues is not None else None,
            frozenset(command_types) if command_types is not None else None,
        )

    def allows(self, queue: str, command_type: str) -> bool:
        return (self.queues is None or queue in self.queues) and (
            self.command_types is None or command_type in self.command_types
        )


class RateLimit(BaseModel):
    """At most ``count`` starts per ``per``, across the fleet, for one queue.

    .. versionadded:: 0.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    count: Annotated[int, Field(ge=1, le=2**31 - 1)]
    per: timedelta

    @field_validator("per")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError(f"per must be a positive duration, got {value!r}")
        return value


class QueueLimits(BaseModel):
    """The fleet-wide limits of one queue; ``None`` is no limit.

    ``max_running`` caps the queue's PROCESSING entries across every worker; ``rate`` caps the starts (claims) of its
    entries within any window of ``rate.per``. The claim enforces both.

    .. versionadded:: 0.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_running: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    rate: RateLimit | None = None

    @property
    def limited(self) -> bool:
        return self.max_running is not None or self.rate is not None

    def allowance(self, running: int, started: int) -> int | None:
        """How many more entries a claim may start now, given ``running`` PROCESSING entries and ``started`` starts
        within the last ``rate.per`` (``None``: no limit)."""
        left: int | None = None
        if self.max_running is not None:
            left = self.max_running - running
        if self.rate is not None:
            by_rate = self.rate.count - started
            left = by_rate if left is None else min(left, by_rate)
        return None if left is None else max(left, 0)


class QueueInfo(BaseModel):
    """One queue as ``list_queues()`` reports it.

    .. versionadded:: 0.5
    """

    model_config = ConfigDict(frozen=True)

    name: str
    #: A paused queue is not claimed; its entries already running finish.
    paused: bool = False
    #: PENDING entries.
    depth: int = 0
    #: PROCESSING entries.
    running: int = 0
    #: Most PROCESSING entries at once across the fleet, or ``None`` (no limit).
    max_running: int | None = None
    #: Most starts per period across the fleet, or ``None`` (no limit).
    rate: RateLimit | None = None
