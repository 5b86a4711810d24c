"""The overview's outcomes chart: stacked bars laid out on the server, drawn as inline SVG by the template.

No script and no inline style (the CSP forbids both): every number is an SVG attribute, every colour a class of
``dashboard.css`` (``seg-completed`` ...), and the same numbers are in a table beside the chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduling._admin_outcomes import OutcomeHistory
from stores.outcomes import OUTCOMES

__all__ = ["OutcomeBar", "OutcomeChart", "Segment", "outcome_chart"]


@dataclass(frozen=True)
class Segment:
    """One outcome's part of a bar."""

    outcome: str
    count: int
    y: float
    height: float


@dataclass(frozen=True)
class OutcomeBar:
    start: datetime
    end: datetime
    counts: dict[str, int]
    x: float
    width: float
    #: Bottom to top in ``OUTCOMES`` order; outcomes with none are left out.
    segments: list[Segment]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def label(self) -> str:
        """``12:30`` within a day, ``Mar 01 12:00`` for the bars of a week."""
        return self.start.strftime("%H:%M" if self.end - self.start < timedelta(hours=6) else "%b %d %H:%M")


@dataclass(frozen=True)
class OutcomeChart:
    bars: list[OutcomeBar]
    width: int
    height: int

    @property
    def peak(self) -> int:
        return max((bar.total for bar in self.bars), default=0)

    @property
    def first_label(self) -> str:
        return self.bars[0].label + " UTC" if self.bars else ""

    @property
    def last_label(self) -> str:
        return self.bars[-1].label + " UTC" if self.bars else ""


def outcome_chart(history: OutcomeHistory, *, width: int = 600, height: int = 120) -> OutcomeChart:
    """A stacked bar per bucket of ``history``, heights scaled to the bar with the most outcomes."""
    span = timedelta(seconds=history.bucket_seconds)
    peak = max((sum(bucket.counts.values()) for bucket in history.buckets), default=0)
    slot = width / max(1, len(history.buckets))
    bars = []
    for i, bucket in enumerate(history.buckets):
        segments, top = [], float(height)
        for outcome in OUTCOMES:
            count = bucket.counts.get(outcome, 0)
            if not count:
                continue
            size = round(height * count / peak, 2)
            top = round(top - size, 2)
            segments.append(Segment(outcome=outcome, count=count, y=top, height=size))
        bars.append(
            OutcomeBar(
                start=bucket.start,
                end=bucket.start + span,
                counts=bucket.counts,
                x=round(i * slot + 1, 2),
                width=round(max(slot - 2, 1), 2),
                segments=segments,
            )
        )
    return OutcomeChart(bars=bars, width=width, height=height)
