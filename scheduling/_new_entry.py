"""How a command and its options become a stored entry: the one place, for commands scheduled once and for
recurring occurrences alike, plus the checks that refuse what a worker could not run as scheduled."""

from __future__ import annotations

import math
import os
from collections.abc import Set as AbstractSet
from datetime import datetime
from typing import Any

from mediator import Command

from .entries import ScheduledCommandEntry, ScheduledCommandStatus
from .options import ScheduleOptions
from .storable import MAX_COMMAND_TYPE_LENGTH, check_command_round_trip, check_storable_text

__all__ = ["check_storable_command", "derived_entry", "new_entry", "new_id", "new_ids", "recurring_lock"]


#: The hex digit of a ``uuid.uuid4()``'s variant nibble for each random one: its two high bits set to ``10``.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_id() -> str:
    """A new entry id: ``str(uuid.uuid4())``, the same text from the same random source (``os.urandom``), without
    building a ``UUID`` object (which cost about a third of the scheduler's own work per command)."""
    return _format_id(os.urandom(16).hex())


def new_ids(count: int) -> list[str]:
    """``count`` new ids (as ``new_id``) from one read of the random source: one system call instead of one each,
    the largest single cost of an id."""
    random = os.urandom(16 * count).hex()
    return [_format_id(random[i : i + 32]) for i in range(0, 32 * count, 32)]


def _format_id(random: str) -> str:
    """The text of the version-4 UUID of 32 random hex digits: the version digit ``4`` and the RFC 4122 variant bits
    set, as ``uuid.UUID(bytes=..., version=4)`` sets them (122 random bits)."""
    return f"{random[:8]}-{random[8:12]}-4{random[13:16]}-{_VARIANT[random[16]]}{random[17:20]}-{random[20:32]}"


def recurring_lock(name: str) -> str:
    """The lock the occurrences of the recurring schedule ``name`` hold unless declared with ``overlap=True``."""
    return f"recurring:{name}"


def check_storable_command(command: Command[Any], payload: str, command_type: str) -> None:
    """Refuse, with a ``ValueError`` naming the field, a command the worker could not run as scheduled: a type name
    longer than the store holds, or a payload that does not decode to an equal command."""
    check_storable_text(command_type, "the command type name", max_length=MAX_COMMAND_TYPE_LENGTH)
    check_command_round_trip(command, payload, command_type)


def new_entry(
    command_type: str,
    payload: str,
    options: ScheduleOptions,
    *,
    scheduled_for: datetime,
    expires_at: datetime | None,
    now: datetime,
    default_max_retries: int,
    idempotency_key: str | None = None,
    recurring_name: str | None = None,
    occurrence_at: datetime | None = None,
    occurrence_generation: int | None = None,
    trace_context: str | None = None,
    queue: str | None = None,
) -> ScheduledCommandEntry:
    """The PENDING entry ``options`` make of a command: the one place where options become an entry, for commands
    scheduled once and for recurring occurrences alike (``idempotency_key`` defaults to the options' own)."""
    values = _TEMPLATE.copy()
    values["id"] = new_id()
    values["command_type"] = command_type
    values["payload"] = payload
    values["priority"] = options.priority
    values["scheduled_for"] = scheduled_for
    values["created_at"] = now
    values["expires_at"] = expires_at
    values["max_retries"] = options.max_retries if options.max_retries is not None else default_max_retries
    values["correlation_id"] = options.correlation_id
    values["metadata"] = options.metadata
    values["idempotency_key"] = idempotency_key if idempotency_key is not None else options.idempotency_key
    values["timeout_seconds"] = options.timeout.total_seconds() if options.timeout is not None else None
    values["recurring_name"] = recurring_name
    values["occurrence_at"] = occurrence_at
    values["occurrence_generation"] = occurrence_generation
    values["trace_context"] = trace_context
    values["queue"] = queue if queue is not None else options.queue
    values["lock"] = options.lock
    if not _already_valid(values):  # validated: coerced where pydantic coerces, or refused with its error
        return ScheduledCommandEntry(**{name: values[name] for name in _GIVEN})
    if options.metadata is not None:  # as validation does: no entry shares the options' dict
        values["metadata"] = dict(options.metadata)
    return _construct(values, _GIVEN)


def derived_entry(entry: ScheduledCommandEntry, **changes: str) -> ScheduledCommandEntry:
    """A copy of the new entry ``entry`` with other text in some of its ``str`` fields (``id``, ``command_type``,
    ``payload``, ``queue``): the entries of one ``schedule_many()`` share every other value. Like ``model_copy``, it
    does not validate again what ``entry`` already holds; the copy has its own ``metadata`` dict."""
    values = entry.__dict__.copy()
    values.update(changes)
    if entry.metadata is not None:
        values["metadata"] = dict(entry.metadata)
    return _construct(values, entry.model_fields_set)


#: The fields ``new_entry`` gives (the others keep their defaults): the entry's ``model_fields_set``.
_GIVEN = frozenset(
    {
        "id",
        "command_type",
        "payload",
        "status",
        "priority",
        "scheduled_for",
        "created_at",
        "expires_at",
        "max_retries",
        "correlation_id",
        "metadata",
        "idempotency_key",
        "timeout_seconds",
        "recurring_name",
        "occurrence_at",
        "occurrence_generation",
        "trace_context",
        "queue",
        "lock",
    }
)
#: Every field in the model's order, with its default (those ``new_entry`` gives are overwritten); a new entry's
#: status.
_TEMPLATE: dict[str, Any] = {
    name: field.default if name not in _GIVEN else None for name, field in ScheduledCommandEntry.model_fields.items()
}
_TEMPLATE["status"] = ScheduledCommandStatus.PENDING


def _construct(values: dict[str, Any], fields_set: AbstractSet[str]) -> ScheduledCommandEntry:
    """The entry validation makes of ``values`` (every field, in the model's order) when it would return them
    unchanged, which ``_already_valid`` checked: what ``model_construct`` does, at a fraction of its cost."""
    entry = object.__new__(ScheduledCommandEntry)
    object.__setattr__(entry, "__dict__", values)
    object.__setattr__(entry, "__pydantic_fields_set__", set(fields_set))
    object.__setattr__(entry, "__pydantic_extra__", None)
    object.__setattr__(entry, "__pydantic_private__", None)
    return entry


def _already_valid(values: dict[str, Any]) -> bool:
    """Whether validating ``values`` as an entry would return them unchanged: each value of exactly the type its
    field declares and within its constraints (aware datetimes, a count >= 0, a positive finite timeout, a dict of
    ``str``). Anything else (a naive datetime from a custom clock, an ``int`` subclass, ...) is left to pydantic."""
    due = values["scheduled_for"]
    now = values["created_at"]
    expires = values["expires_at"]
    occurrence = values["occurrence_at"]
    timeout = values["timeout_seconds"]
    metadata = values["metadata"]
    return (
        type(due) is datetime
        and due.utcoffset() is not None
        and (now is due or (type(now) is datetime and now.utcoffset() is not None))
        and (expires is None or (type(expires) is datetime and expires.utcoffset() is not None))
        and (occurrence is None or (type(occurrence) is datetime and occurrence.utcoffset() is not None))
        and type(values["priority"]) is int
        and type(values["max_retries"]) is int
        and values["max_retries"] >= 0
        and (values["occurrence_generation"] is None or type(values["occurrence_generation"]) is int)
        and (timeout is None or (type(timeout) is float and 0 < timeout < math.inf))
        and type(values["id"]) is str
        and type(values["command_type"]) is str
        and type(values["payload"]) is str
        and type(values["queue"]) is str
        and (values["correlation_id"] is None or type(values["correlation_id"]) is str)
        and (values["idempotency_key"] is None or type(values["idempotency_key"]) is str)
        and (values["recurring_name"] is None or type(values["recurring_name"]) is str)
        and (values["trace_context"] is None or type(values["trace_context"]) is str)
        and (values["lock"] is None or type(values["lock"]) is str)
        and (
            metadata is None
            or (type(metadata) is dict and all(type(k) is str and type(v) is str for k, v in metadata.items()))
        )
    )
