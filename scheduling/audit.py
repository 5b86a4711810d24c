"""The audit trail of operator actions: who did what to which entries, when, and from where.

Requeue, cancel (and dismiss), pause, resume, purge and requeue-all-failed leave one ``AuditRecord`` each in the
store, whether they came from the dashboard, the admin API or the CLI. ``record_action`` writes one after the
action succeeded; ``audit_trail`` reads them back, newest first (the entry page, the Audit page, ``/api/audit`` and
``cqrs-scheduling audit`` all answer from it).

A record that cannot be written (the store failed between the action and its record) does not undo the action:
it is logged at ERROR with everything the record would have held, so the trail's gap is visible in the logs.
"""

from __future__ import annotations

import getpass
import logging
import socket
from collections.abc import Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from stores.audit import AuditRecord, AuditSource
from stores.base import ScheduledCommandStore

__all__ = ["Actor", "AuditRecord", "AuditTrail", "audit_trail", "record_action"]

logger = logging.getLogger("scheduling.audit")

#: The most records one read of the trail returns.
MAX_RECORDS = 1_000


class Actor(BaseModel):
    """Who acts, and from where.

    .. versionadded:: 0.6
    """

    model_config = ConfigDict(frozen=True)

    source: AuditSource
    #: The dashboard user, the API token's name, ``user@host`` for the CLI.
    name: str
    #: The client address, when the action came over HTTP.
    client: str | None = None

    @classmethod
    def cli(cls) -> Actor:
        """The user running the CLI, as ``user@host``."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):  # no login name (a container's numeric uid)
            user = "unknown"
        return cls(source="cli", name=f"{user}@{socket.gethostname()}")


class AuditTrail(BaseModel):
    """``audit``: operator actions, newest first."""

    records: list[AuditRecord]
    #: Only the actions naming this entry, when asked for.
    entry_id: str | None = None
    #: The ``before`` of the next (older) page, or None when this page holds the last records.
    next_before: datetime | None = None


async def record_action(
    store: ScheduledCommandStore,
    actor: Actor,
    action: str,
    *,
    now: datetime,
    entry_ids: Sequence[str] = (),
    target: str | None = None,
    count: int | None = None,
) -> AuditRecord:
    """Store one record of ``action`` done by ``actor`` (``count`` defaults to the number of ``entry_ids``)."""
    record = AuditRecord(
        at=now,
        source=actor.source,
        actor=actor.name or "unknown",
        action=action,
        entry_ids=tuple(entry_ids),
        target=target,
        count=len(entry_ids) if count is None else count,
        client=actor.client,
    )
    try:
        await store.add_audit_record(record)
    except Exception:
        logger.exception(
            "the audit record of an operator action could not be stored: %s",
            record.model_dump_json(),
            extra={"action": "audit", "audit_action": action},
        )
    return record


async def audit_trail(
    store: ScheduledCommandStore,
    *,
    entry_id: str | None = None,
    before: datetime | None = None,
    limit: int = 100,
) -> AuditTrail:
    """Up to ``limit`` records (at most ``MAX_RECORDS``), newest first; only those naming ``entry_id`` when given."""
    limit = max(1, min(limit, MAX_RECORDS))
    records = await store.list_audit_records(entry_id=entry_id, before=before, limit=limit + 1)
    more = len(records) > limit
    records = records[:limit]
    return AuditTrail(records=records, entry_id=entry_id, next_before=records[-1].at if more else None)
