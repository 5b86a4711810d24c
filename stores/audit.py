"""What the store holds for an operator action: ``AuditRecord``, one line of the audit trail.

Requeue, cancel, dismiss, pause, resume, purge and the bulk actions leave one record each, whoever ran them: a
dashboard user, an admin API token or the CLI. The store keeps what it is given, newest first; what counts as an
action and who the actor is are decided above the store (``scheduling.audit``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = ["AuditRecord", "AuditSource"]

#: Where the action came from.
AuditSource = Literal["dashboard", "api", "cli", "library"]


class AuditRecord(BaseModel):
    """One operator action. All datetimes are UTC-aware.

    .. versionadded:: 0.6
    """

    model_config = ConfigDict(frozen=True)

    at: AwareDatetime
    source: AuditSource
    #: Who: the dashboard user, the API token's name, or ``user@host`` for the CLI.
    actor: str = Field(min_length=1, max_length=256)
    #: What: ``requeue``, ``cancel``, ``dismiss``, ``pause``, ``resume``, ``purge``, ``requeue_failed``...
    action: str = Field(min_length=1, max_length=64)
    #: The entries acted on, when they are named one by one (a bulk action on a filter names none).
    entry_ids: tuple[str, ...] = ()
    #: What else it was aimed at: a schedule's name, or the filter of a bulk action (``status=FAILED type=T``).
    target: str | None = Field(default=None, max_length=1024)
    #: How many entries (or schedules) it changed.
    count: int = Field(default=0, ge=0)
    #: The client address (dashboard and API), or None.
    client: str | None = Field(default=None, max_length=256)
