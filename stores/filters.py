"""Which entries an operator asks about: ``EntryFilter``, the search of the entries list, the admin API, the CLI's
``list`` and bulk actions, answered by every store's ``list_entries(where=...)`` and ``count_entries``.

Every field given must hold (they are joined with AND). Time ranges are half-open: ``*_after`` includes the instant
it names, ``*_before`` excludes it, so consecutive ranges never count an entry twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from .entries import TERMINAL_STATUSES, ScheduledCommandEntry, ScheduledCommandStatus
from .errors import UnreadableEntryError

__all__ = ["EntryFilter", "EntryPage", "combined"]

#: The fields a store answers from an index (RedisStore answers only these; see ``EntryFilter.searches``).
INDEXED_FIELDS = frozenset({"status", "command_type", "correlation_id"})

_RANGES = (("created", "created_at"), ("due", "scheduled_for"), ("finished", "completed_at"))


class EntryFilter(BaseModel):
    """Entries matching every field given; an empty filter matches every entry.

    .. versionadded:: 0.6
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: ScheduledCommandStatus | None = None
    #: The command type, ``module.Name``, exactly.
    command_type: str | None = None
    correlation_id: str | None = None
    #: The first characters of the id (case-sensitive): an 8-character short id names one entry.
    id_prefix: str | None = Field(default=None, min_length=1, max_length=64)
    #: Text the last error message contains, ignoring case (SQLite ignores the case of ASCII letters only).
    error_contains: str | None = Field(default=None, min_length=1, max_length=500)
    created_after: AwareDatetime | None = None
    created_before: AwareDatetime | None = None
    due_after: AwareDatetime | None = None
    due_before: AwareDatetime | None = None
    #: Finished (``completed_at``) in this range: an entry not in a terminal status never matches a finished range.
    finished_after: AwareDatetime | None = None
    finished_before: AwareDatetime | None = None

    @model_validator(mode="after")
    def _ranges_are_ordered(self) -> EntryFilter:
        for name, _ in _RANGES:
            after, before = getattr(self, f"{name}_after"), getattr(self, f"{name}_before")
            if after is not None and before is not None and after >= before:
                raise ValueError(
                    f"{name}_after ({after.isoformat()}) must be earlier than {name}_before ({before.isoformat()})"
                )
        return self

    @property
    def searches(self) -> bool:
        """Whether a field beyond status, command type and correlation id is given (a search, not an index walk)."""
        return any(value is not None for name, value in self if name not in INDEXED_FIELDS)

    @property
    def by_creation(self) -> bool:
        """Whether a listing is in creation order (``created_at``, then scheduling order), not scheduling order
        alone: when a created range is given, so that a SQL store reads a range's newest rows through its index
        instead of passing every row created after the range. (Entries are created in scheduling order but for
        producers racing each other: the two orders differ only among entries created at nearly the same time.)

        .. versionadded:: 0.6
        """
        return self.created_after is not None or self.created_before is not None

    def ranges(self) -> list[tuple[str, datetime | None, datetime | None]]:
        """``(entry field, after, before)`` for each time range given."""
        ranges = []
        for name, field in _RANGES:
            after, before = getattr(self, f"{name}_after"), getattr(self, f"{name}_before")
            if after is not None or before is not None:
                ranges.append((field, after, before))
        return ranges

    def matches(self, entry: ScheduledCommandEntry) -> bool:
        """Whether ``entry`` matches every field given (the reference the stores' queries answer like)."""
        if self.status is not None and entry.status is not self.status:
            return False
        if self.command_type is not None and entry.command_type != self.command_type:
            return False
        if self.correlation_id is not None and entry.correlation_id != self.correlation_id:
            return False
        if self.id_prefix is not None and not entry.id.startswith(self.id_prefix):
            return False
        if self.error_contains is not None and (
            entry.error_message is None or self.error_contains.casefold() not in entry.error_message.casefold()
        ):
            return False
        for field, after, before in self.ranges():
            value: datetime | None = getattr(entry, field)
            if value is None or (after is not None and value < after) or (before is not None and value >= before):
                return False
            if field == "completed_at" and entry.status not in TERMINAL_STATUSES:  # only finished entries finished
                return False
        return True

    def describe(self) -> str:
        """The filter in one line, as the audit trail and confirmations name it: ``status=FAILED error~"timeout"``."""
        parts = []
        for name, value in self:
            if value is None:
                continue
            shown = value.isoformat() if isinstance(value, datetime) else getattr(value, "value", value)
            parts.append(f'error~"{value}"' if name == "error_contains" else f"{name}={shown}")
        return " ".join(parts) or "every entry"


@dataclass(frozen=True, slots=True)
class EntryPage:
    """Which page of the matching entries ``list_entries`` asks a store's ``list_matching`` for (checked: ``limit``
    and ``offset`` are not negative).

    .. versionadded:: 0.8
    """

    limit: int
    offset: int
    #: Reverse order: the newest first.
    newest_first: bool = False
    #: Called with each stored row that does not convert to an entry (left out of the page); ``None``: logged.
    on_unreadable: Callable[[UnreadableEntryError], None] | None = None


def combined(
    where: EntryFilter | None,
    *,
    status: ScheduledCommandStatus | None = None,
    command_type: str | None = None,
    correlation_id: str | None = None,
) -> EntryFilter:
    """``where`` with ``list_entries``' own filter arguments added (for store implementations).

    Raises:
        ValueError: an argument and ``where`` ask for different values of the same field, naming both.
    """
    base = where if where is not None else EntryFilter()
    changes: dict[str, object] = {}
    for name, value in (("status", status), ("command_type", command_type), ("correlation_id", correlation_id)):
        if value is None:
            continue
        current = getattr(base, name)
        if current is not None and current != value:
            shown, held = getattr(value, "value", value), getattr(current, "value", current)
            raise ValueError(f"{name}={shown!r} contradicts the filter's {name}={held!r}")
        changes[name] = value
    return base.model_copy(update=changes) if changes else base
