"""Ending claims in batches, for ``SqlStore``: the group commit's settings and the one fenced UPDATE every backend
sends.

Whatever outcomes (complete, retry, dead letter, expire, release) arrive while one batch is being written are written
together in the next, as one UPDATE whose every row is fenced by its lease token (``FENCED_FINISH``; each backend
module wraps it in the statement that feeds it the batch).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from stores._group_commit import GroupCommit
from stores.entries import AttemptRecord
from stores.errors import StoreUnavailableError

__all__ = [
    "FENCED_FINISH",
    "PG_FENCED_FINISH",
    "PG_FENCED_FINISH_UNCHANGED",
    "PG_FENCED_FINISH_WITHOUT_DEPENDANTS",
    "Finish",
    "Finished",
    "finish_group_commit",
]


@dataclass(frozen=True, slots=True)
class Finish:
    """One fenced end of a claim: the entry's new status and what changes with it."""

    entry_id: str
    lease_token: str
    status: str
    completed_at: datetime | None = None
    result_payload: str | None = None
    due: datetime | None = None  #: new scheduled_for (retries); None keeps it
    retry_increment: int = 0
    error_message: str | None = None  #: None keeps the previous one
    attempt: AttemptRecord | None = None


class Finished(NamedTuple):
    status: str
    scheduled_for: datetime


#: Most requests one batch carries (10 parameters each keeps SQLite far below its parameter limit).
_MAX_FINISH_BATCH = 200


def finish_group_commit(
    write: Callable[[list[Finish]], Awaitable[list[Finished | None]]],
) -> GroupCommit[Finish, Finished | None]:
    """The group commit of ending claims. At most one request per entry in a batch: results are matched to requests
    by entry id, and a stale holder's request beside the current one must meet the current one's change, not share
    a statement. The database being away fails the batch's every waiter (each retries on its own)."""
    return GroupCommit(
        write,
        max_batch=_MAX_FINISH_BATCH,
        key=lambda request: request.entry_id,
        fail_together=(StoreUnavailableError,),
    )


#: Ends claimed entries from the rows of ``v``, each fenced by its lease token and PROCESSING status; shared by
#: both backends' batch statements.
_FENCED_FINISH = """UPDATE scheduled_commands
SET status = v.status,
    completed_at = v.completed_at,
    started_at = CASE WHEN v.started_at IS NOT NULL THEN v.started_at
                      WHEN scheduled_commands.attempt_count = 0 THEN NULL
                      ELSE scheduled_commands.started_at END,
    result_payload = CASE WHEN v.status = 'COMPLETED' THEN v.result_payload ELSE scheduled_commands.result_payload END,
    scheduled_for = COALESCE(v.due, scheduled_commands.scheduled_for),
    retry_count = scheduled_commands.retry_count + v.retry_increment,
    attempt_count = scheduled_commands.attempt_count + v.attempt_increment,
    error_message = COALESCE(v.error_message, scheduled_commands.error_message),
    lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
FROM v
WHERE scheduled_commands.id = v.id AND scheduled_commands.lease_token = v.token
  AND {processing}{extra}
RETURNING scheduled_commands.id, scheduled_commands.status, scheduled_commands.scheduled_for,
          scheduled_commands.completed_at, scheduled_commands.has_dependants"""
FENCED_FINISH = _FENCED_FINISH.format(processing="scheduled_commands.status = 'PROCESSING'", extra="")
#: PostgreSQL's rows are found by id: the ids of ``v`` as one array, probing the unique id index, and the status
#: written so that no partial index of PROCESSING entries matches it. Else the generic plan of the prepared
#: statement read the rows through such an index (it estimated one PROCESSING row), every entry of it, dead ones
#: included, at every batch: 2,170 index entries for 10 rows in a drain, growing with the entries in flight.
_PG_PROCESSING = (
    "(scheduled_commands.status || '') = 'PROCESSING' AND scheduled_commands.id = ANY(ARRAY(SELECT id FROM v))"
)
#: PostgreSQL's batch of every entry, for the transaction that resolves their dependants.
PG_FENCED_FINISH = _FENCED_FINISH.format(processing=_PG_PROCESSING, extra="")
#: The same, leaving out entries that have dependants: PostgreSQL's batch, which is one statement in autocommit;
#: those are ended in a transaction of their own, with their dependants (see ``stores/sql/_dependencies.py``).
PG_FENCED_FINISH_WITHOUT_DEPENDANTS = _FENCED_FINISH.format(
    processing=_PG_PROCESSING, extra=" AND NOT scheduled_commands.has_dependants"
)
#: The same, ending only rows still at the version (``xmin``) that the statement's snapshot saw, as CTE ``seen``
#: (id, version) holds it: PostgreSQL's one statement that also releases dependants (see ``_pg_finish.py``).
PG_FENCED_FINISH_UNCHANGED = _FENCED_FINISH.format(
    processing=_PG_PROCESSING,
    extra=" AND scheduled_commands.xmin = (SELECT seen.version FROM seen WHERE seen.id = v.id)",
)
