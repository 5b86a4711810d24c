"""Per-command ``ScheduleOptions`` and worker-wide ``SchedulerSettings``, validated at the edge."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stores.queues import DEFAULT_QUEUE, check_queue_name

from .clock import ensure_aware
from .retention import Retention
from .storable import (
    INT32_MAX,
    MAX_CORRELATION_ID_LENGTH,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_LOCK_LENGTH,
    check_storable_int,
    check_storable_metadata,
    check_storable_text,
)

__all__ = ["ScheduleOptions", "SchedulerSettings", "default_worker_id", "queue_for"]


def _positive(value: timedelta | None, name: str) -> timedelta | None:
    if value is not None and value <= timedelta(0):
        raise ValueError(f"{name} must be positive, got {value!r}")
    return value


class ScheduleOptions(BaseModel):
    """How and when one scheduled command runs. Every field is optional.

    .. versionadded:: 0.1
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: When it is due: a timezone-aware datetime (naive is rejected). Not together with ``delay``.
    scheduled_for: datetime | None = None
    #: Due this long after scheduling (>= 0). Not together with ``scheduled_for``. Neither: due now.
    delay: timedelta | None = None
    #: Higher runs first; among equal priority, earlier due first, then scheduling order. A 32-bit integer.
    priority: int = 0
    #: Retries after the first attempt (5 means up to 6 attempts); ``None``: the settings' ``max_retries``.
    max_retries: Annotated[int, Field(ge=0)] | None = None
    #: An entry not started this long after its due time becomes EXPIRED.
    expires_after: timedelta | None = None
    #: Groups the commands of one flow; carried into every lifecycle notification. At most 256 characters.
    correlation_id: str | None = None
    #: Free-form string pairs; carried into every lifecycle notification.
    metadata: dict[str, str] | None = None
    #: Scheduling again with a key the store still holds returns the first id and stores nothing new. At most 512
    #: characters.
    idempotency_key: str | None = None
    #: An attempt running longer is cancelled and counts as a failed attempt.
    timeout: timedelta | None = None
    #: The queue it waits in (``[A-Za-z0-9_.:-]{1,100}``). Left unset: the command class's ``default_queue``
    #: when it names one, else ``"default"``.
    queue: str = DEFAULT_QUEUE
    #: At most one entry holding this lock runs at a time, across every worker and queue; the others stay PENDING
    #: (spending no attempt) until it ends. At most 256 characters.
    lock: str | None = None
    #: Run only after these entries (ids ``schedule()`` returned; one id or several): until they meet
    #: ``after_condition`` the entry is WAITING, not claimable; see docs/workflows.md. Not with ``idempotency_key``.
    #: .. versionadded:: 0.7
    after: tuple[str, ...] = ()
    #: ``"success"`` (default): run once every ``after`` entry COMPLETED; cancelled, naming the parent, as soon as
    #: one ends otherwise (FAILED, EXPIRED, CANCELLED). ``"any"``: run once every one ended, whatever the outcome.
    #: .. versionadded:: 0.7
    after_condition: Literal["success", "any"] = "success"

    @field_validator("after", mode="before")
    @classmethod
    def _parent_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return (value,)
        if isinstance(value, Sequence):
            return tuple(value)
        return value

    @field_validator("after")
    @classmethod
    def _distinct_parents(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for parent in value:
            if not parent:
                raise ValueError("after names an empty entry id")
        duplicates = sorted({parent for parent in value if value.count(parent) > 1})
        if duplicates:
            raise ValueError(f"after names an entry more than once: {duplicates!r}")
        return value

    @field_validator("queue")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        return check_queue_name(value)

    @field_validator("lock")
    @classmethod
    def _storable_lock(cls, value: str | None) -> str | None:
        return None if value is None else check_storable_text(value, "lock", max_length=MAX_LOCK_LENGTH)

    @field_validator("scheduled_for")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return None if value is None else ensure_aware(value, "scheduled_for")

    # What every store can hold (see scheduling/storable.py): checked here, so every store refuses the same values.
    @field_validator("priority")
    @classmethod
    def _storable_priority(cls, value: int) -> int:
        return check_storable_int(value, "priority")

    @field_validator("max_retries")
    @classmethod
    def _storable_max_retries(cls, value: int | None) -> int | None:
        return None if value is None else check_storable_int(value, "max_retries", minimum=0)

    @field_validator("correlation_id")
    @classmethod
    def _storable_correlation_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_storable_text(value, "correlation_id", max_length=MAX_CORRELATION_ID_LENGTH)

    @field_validator("idempotency_key")
    @classmethod
    def _storable_idempotency_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_storable_text(value, "idempotency_key", max_length=MAX_IDEMPOTENCY_KEY_LENGTH)

    @field_validator("metadata")
    @classmethod
    def _storable_metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else check_storable_metadata(value)

    @field_validator("delay")
    @classmethod
    def _non_negative_delay(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(0):
            raise ValueError(f"delay must not be negative, got {value!r}")
        return value

    @field_validator("expires_after")
    @classmethod
    def _positive_expiry(cls, value: timedelta | None) -> timedelta | None:
        return _positive(value, "expires_after")

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta | None) -> timedelta | None:
        return _positive(value, "timeout")

    @model_validator(mode="after")
    def _one_due_time(self) -> Self:
        if self.scheduled_for is not None and self.delay is not None:
            raise ValueError(
                f"give scheduled_for ({self.scheduled_for.isoformat()}) or delay ({self.delay!r}), not both"
            )
        if self.after and self.idempotency_key is not None:
            raise ValueError(
                f"idempotency_key={self.idempotency_key!r} cannot be combined with after={list(self.after)!r}: "
                "a dependant is stored once, with its parents, by the call that schedules it"
            )
        return self

    def due_at(self, now: datetime) -> datetime:
        """The due time these options give, scheduling at ``now``."""
        if self.scheduled_for is not None:
            return self.scheduled_for
        return now + self.delay if self.delay is not None else now


def queue_for(command_class: type, options: ScheduleOptions) -> str:
    """The queue of a command of ``command_class`` scheduled with ``options``: the options' queue when they name
    one, else the class's ``default_queue`` (a ``ClassVar[str]``) when it has one, else ``"default"``."""
    if "queue" in options.model_fields_set:
        return options.queue
    default = getattr(command_class, "default_queue", None)
    if default is None:
        return options.queue
    return check_queue_name(default, f"{command_class.__qualname__}.default_queue")


def default_worker_id() -> str:
    """``host:pid:random`` — distinct for several workers on one host, readable in the audit trail."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class SchedulerSettings(BaseModel):
    """Settings of the scheduler and its background service. Defaults suit most applications.

    .. versionadded:: 0.1
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: When False, the service does not run (scheduling still works).
    enabled: bool = True
    #: Longest sleep between two polls when nothing is known to be due; the service otherwise sleeps until the
    #: next due time, and is woken when a sooner command is scheduled.
    polling_interval: timedelta = timedelta(seconds=5)
    #: ``CommandScheduler.wait()`` is woken by the store when the entry finishes; it also re-reads the entry this
    #: often, only as a safety net against a lost notification (a dropped database connection).
    wait_recheck_interval: timedelta = timedelta(seconds=5)
    #: Entries claimed per store round trip.
    batch_size: Annotated[int, Field(ge=1)] = 50
    #: Commands running at once in one service.
    max_concurrency: Annotated[int, Field(ge=1)] = 10
    #: Default retries after the first attempt, for options that do not say.
    max_retries: Annotated[int, Field(ge=0, le=INT32_MAX)] = 3
    #: Delay before the first retry; doubled for each further one when ``exponential_backoff``.
    retry_delay_base: timedelta = timedelta(seconds=10)
    #: Double the delay per retry; otherwise every retry waits ``retry_delay_base``.
    exponential_backoff: bool = True
    #: Cap on one retry delay.
    max_retry_delay: timedelta = timedelta(hours=1)
    #: Randomize retry delays ("full jitter": uniform between 0 and the computed delay).
    retry_jitter: bool = False
    #: How long a claim is held without renewal; running commands are renewed every third of it.
    lease_duration: timedelta = timedelta(seconds=60)
    #: On stop, how long running commands may finish before they are cancelled and released.
    shutdown_grace: timedelta = timedelta(seconds=30)
    #: Largest serialized command accepted by ``schedule()``.
    max_payload_bytes: Annotated[int, Field(ge=1)] = 1_048_576
    #: This worker's name in leases and the audit trail; default ``host:pid:random``.
    worker_id: str = Field(default_factory=default_worker_id)
    #: How long finished entries are kept before the running service deletes them (see ``Retention``: completed
    #: 7 days, cancelled and expired 30 days, dead letters until handled); ``None`` keeps everything.
    retention: Retention | None = Field(default_factory=Retention)
    #: How long a worker that is gone (stopped, or missed its lease renewals) stays in ``list_workers()``.
    worker_retention: timedelta = timedelta(days=1)
    #: The queues this worker claims from; ``None`` or empty: every queue.
    queues: tuple[str, ...] | None = None

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if not value:
            return None
        return tuple(dict.fromkeys(check_queue_name(name, "queues") for name in value))

    @field_validator(
        "polling_interval",
        "lease_duration",
        "retry_delay_base",
        "max_retry_delay",
        "wait_recheck_interval",
        "worker_retention",
    )
    @classmethod
    def _positive_durations(cls, value: timedelta, info: object) -> timedelta:
        name = getattr(info, "field_name", "value")
        result = _positive(value, name)
        assert result is not None
        return result

    @field_validator("shutdown_grace")
    @classmethod
    def _non_negative_grace(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError(f"shutdown_grace must not be negative, got {value!r}")
        return value

    @property
    def heartbeat_interval(self) -> timedelta:
        """How often running commands' leases are renewed."""
        return self.lease_duration / 3
