"""The SQL of recurring schedules, one named function per query; ``SqlStore`` calls them in its transactions.

The upsert is a locked read-modify-write in one transaction: ``INSERT ... ON CONFLICT (name) DO NOTHING`` (a
concurrent declaration of a new name waits for the first one to commit, then does nothing), then the row is read
locked (``FOR UPDATE`` on PostgreSQL; SQLite's ``BEGIN IMMEDIATE`` already holds the write lock) and updated only
when the definition differs, so any number of processes declaring one schedule at once store it once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from stores._transitions import redefined_schedule, schedule_paused_changes
from stores.entries import ScheduledCommandStatus
from stores.schedules import StoredSchedule

from ._backend import Backend
from ._tables import ENTRIES, SCHEDULES

__all__ = [
    "cancel_occurrences",
    "delete_schedule",
    "get_schedule",
    "list_schedules",
    "record_schedule_run",
    "set_schedule_paused",
    "upsert_schedule",
]

_DEFINITION_COLUMNS = ("command_type", "payload", "cron", "interval_us", "timezone", "options_json", "misfire_policy")


def _to_row(schedule: StoredSchedule) -> dict[str, Any]:
    values = schedule.model_dump(exclude={"interval"})
    values["interval_us"] = schedule.interval // timedelta(microseconds=1) if schedule.interval is not None else None
    return values


def _from_row(row: Row[Any]) -> StoredSchedule:
    values = row._asdict()
    interval_us = values.pop("interval_us")
    values["interval"] = timedelta(microseconds=interval_us) if interval_us is not None else None
    return StoredSchedule.model_validate(values)


async def upsert_schedule(conn: AsyncConnection, schedule: StoredSchedule, backend: Backend) -> StoredSchedule:
    inserted = (
        await conn.execute(
            backend.insert_ignoring_conflicts(SCHEDULES, "name").values(_to_row(schedule)).returning(SCHEDULES.c.name)
        )
    ).first()
    if inserted is not None:
        return schedule
    query = backend.lock_rows(select(SCHEDULES).where(SCHEDULES.c.name == schedule.name), skip_locked=False)
    stored = _from_row((await conn.execute(query)).one())
    if stored.definition() == schedule.definition():
        return stored
    redefined = redefined_schedule(stored, schedule)
    row = _to_row(redefined)
    changes = {column: row[column] for column in (*_DEFINITION_COLUMNS, "generation", "updated_at")}
    await conn.execute(update(SCHEDULES).where(SCHEDULES.c.name == schedule.name).values(**changes))
    return redefined


async def get_schedule(conn: AsyncConnection, name: str) -> StoredSchedule | None:
    row = (await conn.execute(select(SCHEDULES).where(SCHEDULES.c.name == name))).first()
    return _from_row(row) if row is not None else None


async def list_schedules(conn: AsyncConnection) -> list[StoredSchedule]:
    rows = (await conn.execute(select(SCHEDULES).order_by(SCHEDULES.c.name))).all()
    return [_from_row(row) for row in rows]


async def delete_schedule(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(delete(SCHEDULES).where(SCHEDULES.c.name == name).returning(SCHEDULES.c.name))
    return result.first() is not None


async def set_schedule_paused(
    conn: AsyncConnection, name: str, paused: bool, *, now: datetime
) -> StoredSchedule | None:
    changes = schedule_paused_changes(paused, now=now, next_generation=SCHEDULES.c.generation + 1)
    row = (
        await conn.execute(update(SCHEDULES).where(SCHEDULES.c.name == name).values(**changes).returning(*SCHEDULES.c))
    ).first()
    return _from_row(row) if row is not None else None


async def record_schedule_run(
    conn: AsyncConnection, name: str, generation: int, *, last_run_at: datetime | None, next_run_at: datetime | None
) -> bool:
    changes: dict[str, Any] = {"next_run_at": next_run_at}
    if last_run_at is not None:
        changes["last_run_at"] = last_run_at
    result = await conn.execute(
        update(SCHEDULES)
        .where(SCHEDULES.c.name == name, SCHEDULES.c.generation == generation)
        .values(**changes)
        .returning(SCHEDULES.c.name)
    )
    return result.first() is not None


async def cancel_occurrences(
    conn: AsyncConnection, name: str, *, now: datetime, keep_generation: int | None
) -> list[Row[Any]]:
    conditions = [ENTRIES.c.recurring_name == name, ENTRIES.c.status == ScheduledCommandStatus.PENDING.value]
    if keep_generation is not None:
        generation = ENTRIES.c.occurrence_generation
        conditions.append(generation.is_(None) | (generation != keep_generation))
    result = await conn.execute(
        update(ENTRIES)
        .where(*conditions)
        .values(status=ScheduledCommandStatus.CANCELLED.value, completed_at=now)
        .returning(*ENTRIES.c)
    )
    return sorted(result.all(), key=lambda row: row.seq)
