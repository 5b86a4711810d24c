"""The SQL of operator statistics, one named query per question; ``SqlStore`` calls them on a read connection.

Throughput (``count_finished_since``) counts terminal entries per status and time bucket in the database, one
range scan of ``ix_scheduled_commands_finished (status, completed_at)`` per terminal status. The bucket number is
computed exactly, in whole microseconds: PostgreSQL from ``extract(epoch ...)`` of the interval (numeric); SQLite
from the text it stores (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), whole seconds through ``julianday`` and the
microseconds from the digits, because SQLite's date functions keep milliseconds only.

Running entries (``count_running``) read only PROCESSING rows through an index: PostgreSQL scans the partial index
``ix_scheduled_commands_lease (lease_expires_at) WHERE status = 'PROCESSING'`` (index only), SQLite searches by
status. The status is a literal so that the planner can match the partial index's condition.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import BigInteger, bindparam, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import TextClause

from ._tables import UtcDateTime
from .base import FinishedCount, check_bucket, finished_counts
from .entries import TERMINAL_STATUSES, ScheduledCommandStatus

__all__ = ["count_finished_since", "count_running"]

_TERMINAL = ", ".join(f"'{status.value}'" for status in sorted(TERMINAL_STATUSES))

_FINISHED_SINCE_POSTGRESQL: TextClause = text(
    f"""
    SELECT status,
           CAST(floor(extract(epoch FROM completed_at - CAST(:since AS timestamptz)) * 1000000 / :bucket_us)
                AS BIGINT) AS bucket,
           count(*) AS finished
    FROM scheduled_commands
    WHERE status IN ({_TERMINAL}) AND completed_at >= :since AND completed_at < 'infinity'
    GROUP BY status, bucket
    """
).bindparams(bindparam("since", type_=UtcDateTime), bindparam("bucket_us", type_=BigInteger))

_FINISHED_SINCE_SQLITE: TextClause = text(
    f"""
    SELECT status,
           (CAST(round((julianday(substr(completed_at, 1, 19)) - julianday(:since_second)) * 86400) AS INTEGER)
                * 1000000 + CAST(substr(completed_at, 21, 6) AS INTEGER) - :since_micro) / :bucket_us AS bucket,
           count(*) AS finished
    FROM scheduled_commands
    WHERE status IN ({_TERMINAL}) AND completed_at >= :since AND typeof(completed_at) = 'text'
      AND julianday(substr(completed_at, 1, 19)) IS NOT NULL
    GROUP BY status, bucket
    """
).bindparams(bindparam("since", type_=UtcDateTime))

_RUNNING: TextClause = text(
    """
    SELECT count(*) FROM scheduled_commands
    WHERE status = 'PROCESSING' AND lease_expires_at > :now
    """
).bindparams(bindparam("now", type_=UtcDateTime))


async def count_finished_since(conn: AsyncConnection, since: datetime, *, bucket: timedelta) -> list[FinishedCount]:
    """Terminal entries per status and bucket of ``bucket`` since ``since`` (see the store method's contract)."""
    check_bucket(bucket)
    bucket_us = bucket // timedelta(microseconds=1)
    since = since.astimezone(UTC)
    if conn.dialect.name == "sqlite":
        rows = await conn.execute(
            _FINISHED_SINCE_SQLITE,
            {
                "since": since,
                "since_second": since.strftime("%Y-%m-%d %H:%M:%S"),
                "since_micro": since.microsecond,
                "bucket_us": bucket_us,
            },
        )
    else:
        rows = await conn.execute(_FINISHED_SINCE_POSTGRESQL, {"since": since, "bucket_us": bucket_us})
    # A completed_at that is no timestamp (written behind the library's back) is not counted: no bucket holds it.
    counts = {
        (int(index), ScheduledCommandStatus(status)): int(finished)
        for status, index, finished in rows.all()
        if index is not None
    }
    return finished_counts(since, bucket, counts)


async def count_running(conn: AsyncConnection, now: datetime) -> int:
    """PROCESSING entries whose lease has not expired at ``now`` (see the store method's contract)."""
    return int((await conn.execute(_RUNNING, {"now": now.astimezone(UTC)})).scalar_one())
