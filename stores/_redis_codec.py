"""How ``RedisStore`` writes entries and schedules into Redis hashes, and reads them back.

Every value is a string: times as integer microseconds since the epoch (exact, and usable as sorted-set scores
below 2**53), numbers in decimal, ``metadata`` as JSON. A ``None`` attribute is an absent field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from pydantic import ValidationError

from ._transitions import Transition
from .entries import ScheduledCommandEntry
from .errors import UnreadableEntryError
from .schedules import StoredSchedule

logger = logging.getLogger("stores.redis")

__all__ = [
    "entry_fields",
    "field_changes",
    "field_text",
    "transition_args",
    "entry_from_json",
    "entry_from_reply",
    "from_micros",
    "log_unreadable",
    "micros",
    "pairs",
    "schedule_fields",
    "schedule_from_reply",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

_TIMES = frozenset(
    {
        "scheduled_for",
        "created_at",
        "started_at",
        "completed_at",
        "expires_at",
        "lease_expires_at",
        "occurrence_at",
        "cancel_requested_at",
    }
)
_INTEGERS = frozenset(
    {"priority", "retry_count", "attempt_count", "max_retries", "occurrence_generation", "pending_parents"}
)
_TEXTS = (
    "id",
    "command_type",
    "payload",
    "status",
    "correlation_id",
    "idempotency_key",
    "error_message",
    "result_payload",
    "lease_owner",
    "lease_token",
    "recurring_name",
    "trace_context",
    "queue",
    "lock",
)
#: Definition fields of a schedule, kept together as one JSON document.
_DEFINITION = ("command_type", "payload", "cron", "interval", "timezone", "options_json", "misfire_policy")


def micros(moment: datetime) -> str:
    """A UTC-aware datetime as integer microseconds since the epoch."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the store holds UTC-aware datetimes only")
    return str((moment - _EPOCH) // _MICROSECOND)


def from_micros(value: str | int) -> datetime:
    return _EPOCH + int(value) * _MICROSECOND


def entry_fields(entry: ScheduledCommandEntry) -> list[str]:
    """The entry's hash fields as a flat name, value, name, value... list (absent: ``None`` attributes)."""
    flat: list[str] = []
    for name, value in entry:
        if value is None or (name == "queue" and value == "default"):  # absent: the default queue
            continue
        flat += (name, field_text(name, value))
    return flat


def field_text(name: str, value: Any) -> str:
    """One entry attribute as its hash field holds it (``value`` not None)."""
    if name in _TIMES:
        return micros(value)
    if name == "metadata":
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if name == "timeout_seconds":
        return repr(float(value))
    return str(value.value if isinstance(value, Enum) else value)


def transition_args(transition: Transition, now: datetime) -> list[str]:
    """An operator transition as the scripts take it (``_redis_operator_scripts.TRANSITION``): its source statuses,
    the new status and the field changes it makes at ``now``."""
    changes = transition.changes(now)
    new = changes.pop("status", None)
    assigned, deleted = field_changes(changes)
    return [
        json.dumps([source.value for source in transition.sources]),
        new.value if new is not None else "",
        json.dumps(assigned, ensure_ascii=False),
        json.dumps(deleted),
    ]


def field_changes(changes: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Entry field changes (a transition's, ``stores._transitions``) as a script applies them: the flat name,
    value... list to set, and the names to delete (those changed to None)."""
    assigned = [
        part for name, value in changes.items() if value is not None for part in (name, field_text(name, value))
    ]
    return assigned, [name for name, value in changes.items() if value is None]


def pairs(reply: Sequence[str]) -> dict[str, str]:
    """An HGETALL reply (a flat list) as a dict."""
    return dict(zip(reply[::2], reply[1::2], strict=True))


def entry_from_reply(reply: Sequence[str]) -> ScheduledCommandEntry:
    """An entry from its HGETALL reply.

    Raises:
        UnreadableEntryError: a field holds a value that does not convert (written behind the store's back).
    """
    fields = pairs(reply)
    values: dict[str, Any] = {name: fields[name] for name in _TEXTS if name in fields}
    column = ""
    try:
        for column in _TIMES & fields.keys():
            values[column] = from_micros(fields[column])
        for column in _INTEGERS & fields.keys():
            values[column] = int(fields[column])
        column = "metadata"
        if column in fields:
            values[column] = json.loads(fields[column])
        column = "timeout_seconds"
        if column in fields:
            values[column] = float(fields[column])
    except (ValueError, OverflowError) as exc:
        raise UnreadableEntryError(fields.get("seq"), fields.get("id"), column, fields.get(column), str(exc)) from exc
    try:
        return ScheduledCommandEntry.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        column = str(error["loc"][0]) if error["loc"] else "?"
        raise UnreadableEntryError(
            fields.get("seq"), fields.get("id"), column, fields.get(column), error["msg"]
        ) from exc


def log_unreadable(exc: UnreadableEntryError, action: str) -> None:
    """Log an entry that does not convert, and what became of it (``action``)."""
    logger.error("%s; %s", exc, action, extra={"action": "unreadable_row", "command_id": exc.entry_id})


def entry_from_json(text: str) -> ScheduledCommandEntry:
    """An entry from a script's snapshot: its HGETALL list as JSON."""
    return entry_from_reply(json.loads(text))


def schedule_fields(schedule: StoredSchedule) -> tuple[str, list[str]]:
    """The schedule's definition (JSON) and its other fields as name, value pairs ('' for ``None``)."""
    definition = schedule.model_dump_json(include=set(_DEFINITION))

    def moment(value: datetime | None) -> str:
        return micros(value) if value is not None else ""

    return definition, [
        "paused",
        "1" if schedule.paused else "0",
        "generation",
        str(schedule.generation),
        "next_run_at",
        moment(schedule.next_run_at),
        "last_run_at",
        moment(schedule.last_run_at),
        "created_at",
        micros(schedule.created_at),
        "updated_at",
        micros(schedule.updated_at),
    ]


def schedule_from_reply(reply: Sequence[str]) -> StoredSchedule:
    fields = pairs(reply)
    values: dict[str, Any] = json.loads(fields["definition"])
    values |= {
        "name": fields["name"],
        "paused": fields["paused"] == "1",
        "generation": int(fields["generation"]),
        "created_at": from_micros(fields["created_at"]),
        "updated_at": from_micros(fields["updated_at"]),
    }
    for name in ("next_run_at", "last_run_at"):
        if name in fields:
            values[name] = from_micros(fields[name])
    return StoredSchedule.model_validate(values)
