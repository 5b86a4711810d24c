"""The operator transitions of the state machine, stated once for every store: from which status each one starts
and what it changes. A store applies one as a conditional update fenced by that status (``UPDATE ... WHERE status =
:from``; the memory store checks and writes under the event loop), so two operators racing on one entry change it
once, and no store writes its own version of what, say, a requeue resets.

The worker's own ends of a claim (complete, retry, dead letter, cancel, expire, release) are stated here too, as a
``ClaimEnd`` each: the store writes one with its one fenced finish (``ClaimStore.end_claim``), fenced by the lease
token; the decisions behind them (retry or not, when) are the service's, in ``scheduling``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from .entries import AttemptRecord, ScheduledCommandEntry, ScheduledCommandStatus
from .errors import UnreadableEntryError
from .schedules import StoredSchedule

__all__ = [
    "AddBatch",
    "CANCEL",
    "DISMISS",
    "RELEASED",
    "already_exists",
    "refuse_keyed_in_stream",
    "REQUEST_CANCEL",
    "REQUEUE",
    "ClaimEnd",
    "Transition",
    "as_column_values",
    "redefined_schedule",
    "schedule_paused_changes",
]


def already_exists(entry_id: str) -> ValueError:
    """The error of adding an entry whose id the store holds (a store that finds out while inserting raises it)."""
    return ValueError(f"an entry with id {entry_id!r} already exists")


def refuse_keyed_in_stream(chunk: Sequence[ScheduledCommandEntry]) -> None:
    """``add_streamed`` takes entries without an idempotency key only (a store writing a chunk before it has seen
    the next could not answer a later duplicate of a key with the first one's id).

    Raises:
        ValueError: naming the first entry of ``chunk`` with a key, and its key.
    """
    for entry in chunk:
        if entry.idempotency_key is not None:
            raise ValueError(
                f"add_streamed takes entries without an idempotency key; entry {entry.id!r} has "
                f"{entry.idempotency_key!r} (use add)"
            )


@dataclass(frozen=True, slots=True)
class AddBatch:
    """What ``add`` does with a batch, the same in every store: an id at most once (else ``ValueError``, nothing
    stored); an entry without an idempotency key is inserted; of the entries sharing a key, only the first is
    inserted, and only if the store does not hold the key already; every other one answers with the holder's id."""

    entries: Sequence[ScheduledCommandEntry]
    #: The entries without an idempotency key.
    plain: list[ScheduledCommandEntry]
    #: The first entry of each idempotency key in the batch.
    keyed: list[ScheduledCommandEntry]

    @classmethod
    def of(cls, entries: Sequence[ScheduledCommandEntry], *, held: Callable[[str], bool] | None = None) -> AddBatch:
        """Split ``entries``; ``held(id)`` tells whether the store holds an id already (when it can tell before
        inserting).

        Raises:
            ValueError: an id the store holds, or an id twice in the batch, naming it.
        """
        seen: set[str] = set()
        keys: set[str] = set()
        plain: list[ScheduledCommandEntry] = []
        keyed: list[ScheduledCommandEntry] = []
        for entry in entries:
            if held is not None and held(entry.id):
                raise already_exists(entry.id)
            if entry.id in seen:
                raise ValueError(f"the id {entry.id!r} appears twice in the batch")
            seen.add(entry.id)
            key = entry.idempotency_key
            if key is None:
                plain.append(entry)
            elif key not in keys:
                keys.add(key)
                keyed.append(entry)
        return cls(entries, plain, keyed)

    @property
    def keys(self) -> list[str]:
        """The idempotency keys of the batch, each once."""
        return [entry.idempotency_key for entry in self.keyed if entry.idempotency_key is not None]

    def ids(self, holders: Mapping[str, str]) -> list[str]:
        """What ``add`` returns, in order: each entry's id, or the id of the entry holding its key (``holders``:
        key -> id, read after inserting, so the batch's own first entry holds a key nobody held before)."""
        return [
            holders.get(entry.idempotency_key, entry.id) if entry.idempotency_key is not None else entry.id
            for entry in self.entries
        ]


@dataclass(frozen=True, slots=True)
class Transition:
    """An entry moves from ``source`` with the field changes ``changes(now)`` returns."""

    name: str
    source: ScheduledCommandStatus
    changes: Callable[[datetime], dict[str, Any]]
    #: Further statuses it starts from (a WAITING dependant is cancelled like a PENDING entry).
    also_from: tuple[ScheduledCommandStatus, ...] = ()

    @property
    def sources(self) -> tuple[ScheduledCommandStatus, ...]:
        """Every status the transition starts from."""
        return (self.source, *self.also_from)


#: A PENDING (or WAITING) entry that will not run.
CANCEL = Transition(
    "cancel",
    ScheduledCommandStatus.PENDING,
    lambda now: {"status": ScheduledCommandStatus.CANCELLED, "completed_at": now},
    also_from=(ScheduledCommandStatus.WAITING,),
)
#: A PROCESSING entry whose worker is asked to cancel its attempt (the worker then ends it CANCELLED, fenced).
REQUEST_CANCEL = Transition(
    "request_cancel",
    ScheduledCommandStatus.PROCESSING,
    lambda now: {"cancel_requested_at": now},
)
#: A dead letter run again: due now, with its whole retry budget, no expiry, no completion.
REQUEUE = Transition(
    "requeue",
    ScheduledCommandStatus.FAILED,
    lambda now: {
        "status": ScheduledCommandStatus.PENDING,
        "scheduled_for": now,
        "retry_count": 0,
        "completed_at": None,
        "expires_at": None,
        "cancel_requested_at": None,
    },
)
#: A dead letter an operator will not run again.
DISMISS = Transition(
    "dismiss",
    ScheduledCommandStatus.FAILED,
    lambda now: {"status": ScheduledCommandStatus.CANCELLED, "completed_at": now},
)


@dataclass(frozen=True, slots=True)
class ClaimEnd:
    """How a worker's claim ends: a PROCESSING entry, still held under the lease token, moves to ``status``.

    The one fenced finish of a store applies it (``ClaimStore.end_claim``): the lease is cleared; the attempt, when
    there is one, is recorded (``attempt_count + 1``, ``started_at`` its own start; with none, an entry that never
    ran has no ``started_at``); ``retry_count + 1`` when ``counts_failure``; and the fields of ``changes()``.
    """

    status: ScheduledCommandStatus
    completed_at: datetime | None = None
    #: The handler's result (COMPLETED only).
    result_payload: str | None = None
    #: When it is due again (a retry); None keeps ``scheduled_for``.
    due: datetime | None = None
    counts_failure: bool = False
    #: None keeps the previous error message.
    error_message: str | None = None
    attempt: AttemptRecord | None = None

    def changes(self) -> dict[str, Any]:
        """The entry fields this end sets, besides the lease, the attempt count and the retry count."""
        changes: dict[str, Any] = {"status": self.status}
        if self.completed_at is not None:
            changes["completed_at"] = self.completed_at
        if self.status is ScheduledCommandStatus.COMPLETED:
            changes["result_payload"] = self.result_payload
        if self.due is not None:
            changes["scheduled_for"] = self.due
        if self.error_message is not None:
            changes["error_message"] = self.error_message
        return changes

    @classmethod
    def completed(cls, attempt: AttemptRecord, result_payload: str | None) -> ClaimEnd:
        return cls(ScheduledCommandStatus.COMPLETED, attempt.finished_at, result_payload, attempt=attempt)

    @classmethod
    def retried(cls, due: datetime, error_message: str, attempt: AttemptRecord) -> ClaimEnd:
        return cls(
            ScheduledCommandStatus.PENDING, due=due, counts_failure=True, error_message=error_message, attempt=attempt
        )

    @classmethod
    def dead_lettered(cls, error_message: str, attempt: AttemptRecord) -> ClaimEnd:
        return cls(
            ScheduledCommandStatus.FAILED,
            attempt.finished_at,
            counts_failure=True,
            error_message=error_message,
            attempt=attempt,
        )

    @classmethod
    def cancelled(cls, error_message: str, attempt: AttemptRecord) -> ClaimEnd:
        """Cancelled while running (see ``request_cancel``): not a failure, so not retried."""
        return cls(ScheduledCommandStatus.CANCELLED, attempt.finished_at, error_message=error_message, attempt=attempt)

    @classmethod
    def expired(cls, now: datetime) -> ClaimEnd:
        """Claimed too late to run: no attempt."""
        return cls(ScheduledCommandStatus.EXPIRED, now)

    @classmethod
    def unreadable(cls, exc: UnreadableEntryError, now: datetime) -> ClaimEnd:
        """Claimed but unreadable (written behind the library's back): no attempt can run it and no retry can fix
        it, so it is a dead letter whose error names the field and value; not counted as a failed attempt."""
        return cls(ScheduledCommandStatus.FAILED, now, error_message=f"UnreadableEntryError: {exc.description}")


#: A stopping worker gives its entry back: PENDING, due as before, no attempt counted.
RELEASED = ClaimEnd(ScheduledCommandStatus.PENDING)


def schedule_paused_changes(paused: bool, *, now: datetime, next_generation: Any) -> dict[str, Any]:
    """Pausing or resuming a recurring schedule starts a new generation (so the occurrences of the old one do
    nothing when they run); a paused schedule has no next run. ``next_generation`` is the stored generation plus one
    (a value, or an SQL expression)."""
    changes: dict[str, Any] = {"paused": paused, "generation": next_generation, "updated_at": now}
    if paused:
        changes["next_run_at"] = None
    return changes


def redefined_schedule(stored: StoredSchedule, declared: StoredSchedule) -> StoredSchedule:
    """What an upsert stores when ``declared`` changes the definition of ``stored``: the new definition and
    ``updated_at``, the next generation (so the old definition's occurrences create no more); ``paused``,
    ``created_at`` and the bookkeeping times stay the stored ones."""
    return declared.model_copy(
        update={
            "generation": stored.generation + 1,
            "paused": stored.paused,
            "created_at": stored.created_at,
            "next_run_at": stored.next_run_at,
            "last_run_at": stored.last_run_at,
        }
    )


def as_column_values(changes: dict[str, Any]) -> dict[str, Any]:
    """``changes`` as a SQL store writes them: enum members as their stored values."""
    return {name: value.value if isinstance(value, Enum) else value for name, value in changes.items()}
