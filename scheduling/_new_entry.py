"""How a command and its options become a stored entry: the one place, for commands scheduled once and for
recurring occurrences alike, plus the checks that refuse what a worker could not run as scheduled."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from mediator import Command

from .entries import ScheduledCommandEntry, ScheduledCommandStatus
from .options import ScheduleOptions
from .storable import MAX_COMMAND_TYPE_LENGTH, check_command_round_trip, check_storable_text

__all__ = ["check_storable_command", "new_entry", "recurring_lock"]


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
    return ScheduledCommandEntry(
        id=str(uuid.uuid4()),
        command_type=command_type,
        payload=payload,
        status=ScheduledCommandStatus.PENDING,
        priority=options.priority,
        scheduled_for=scheduled_for,
        created_at=now,
        expires_at=expires_at,
        max_retries=options.max_retries if options.max_retries is not None else default_max_retries,
        correlation_id=options.correlation_id,
        metadata=options.metadata,
        idempotency_key=idempotency_key if idempotency_key is not None else options.idempotency_key,
        timeout_seconds=options.timeout.total_seconds() if options.timeout is not None else None,
        recurring_name=recurring_name,
        occurrence_at=occurrence_at,
        occurrence_generation=occurrence_generation,
        trace_context=trace_context,
        queue=queue if queue is not None else options.queue,
        lock=options.lock,
    )
