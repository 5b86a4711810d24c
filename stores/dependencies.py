"""Dependencies between entries (``ScheduleOptions.after``, groups): what the store keeps and the one rule that
decides, for every store alike, what a parent's outcome does to a dependant.

A dependant names one or more parents and a condition: ``on_success_only`` (the default: every parent must end
COMPLETED) or any outcome (every parent must end: COMPLETED, FAILED, EXPIRED or CANCELLED). It is stored WAITING,
not claimable, with a count of the parents that have not met the condition (``pending_parents``). Each parent's
outcome is written in the same transaction as what it does to its dependants: one fewer pending parent (PENDING at
zero), or CANCELLED with a reason naming the parent when the condition can no longer hold, which cascades to the
dependants of the cancelled entry. Each (parent, dependant) pair counts once (it is marked resolved), so a parent
that is requeued after dead-lettering and then completes does not count twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from .entries import TERMINAL_STATUSES, ScheduledCommandStatus
from .errors import StoreError

__all__ = ["Dependency", "UnknownParentError", "cancel_reason", "parent_meets"]

COMPLETED = ScheduledCommandStatus.COMPLETED


@dataclass(frozen=True, slots=True)
class Dependency:
    """What a dependant waits for: its ``parents`` (entry ids) and the condition they must meet.

    .. versionadded:: 0.7
    """

    #: The entries it runs after, at least one, each once.
    parents: tuple[str, ...]
    #: True (default): it runs only if every parent COMPLETED, and is CANCELLED as soon as one ends otherwise.
    #: False: it runs once every parent ended, whatever the outcome (a group's callback).
    on_success_only: bool = True

    def __post_init__(self) -> None:
        if not self.parents:
            raise ValueError("a dependency names at least one parent entry")
        if len(set(self.parents)) != len(self.parents):
            raise ValueError(f"a dependency names a parent twice: {list(self.parents)!r}")


class UnknownParentError(StoreError, ValueError):
    """``after=`` names an entry the store does not hold (never scheduled, or purged); nothing was stored.

    .. versionadded:: 0.7
    """

    def __init__(self, parent_id: str, store: str) -> None:
        self.parent_id = parent_id
        self.store = store
        super().__init__(parent_id, store)

    def __str__(self) -> str:
        return (
            f"cannot schedule after entry {self.parent_id!r}: {self.store} holds no such entry "
            "(check the id; a finished entry is kept until retention purges it)"
        )


def parent_meets(status: ScheduledCommandStatus, *, on_success_only: bool) -> bool | None:
    """What a parent in ``status`` means for a dependant: True, it met the condition; False, the condition can no
    longer hold (the dependant is cancelled); None, not yet (it has not ended).

    FAILED counts as an end: a dead letter that an operator requeues later does not revive dependants that were
    cancelled meanwhile (nor count twice for a dependant it already released).
    """
    if status is COMPLETED:
        return True
    if status in TERMINAL_STATUSES:
        return not on_success_only
    return None


def cancel_reason(parent_id: str, parent_status: ScheduledCommandStatus | str) -> str:
    """The ``error_message`` of a dependant cancelled because of its parent: names the parent and its outcome."""
    status = parent_status.value if isinstance(parent_status, ScheduledCommandStatus) else parent_status
    return f"ParentNotCompleted: parent {parent_id} ended {status}"
