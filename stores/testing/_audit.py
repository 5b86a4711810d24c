"""The audit-trail part of the store contract (``add_audit_record``, ``list_audit_records``,
``forget_audit_records``), asserted identically for the store under test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from stores.audit import AuditRecord
from stores.base import ScheduledCommandStore

BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def make_record(action: str = "requeue", **overrides: Any) -> AuditRecord:
    fields: dict[str, Any] = {
        "at": BASE,
        "source": "dashboard",
        "actor": "alice",
        "action": action,
        "entry_ids": ("e-1",),
        "count": 1,
        "client": "127.0.0.1",
    }
    return AuditRecord(**(fields | overrides))


async def test_a_record_is_listed_as_given(store: ScheduledCommandStore) -> None:
    record = make_record(
        source="cli", actor="bob@host-ü", entry_ids=("a", "b_%"), target="status=FAILED type=app.Ünï", count=2
    )

    await store.add_audit_record(record)

    assert await store.list_audit_records() == [record]


async def test_records_are_listed_newest_first_and_in_adding_order_within_one_instant(
    store: ScheduledCommandStore,
) -> None:
    for action, seconds in (("first", 0), ("late", 10), ("second", 0), ("third", 0)):
        await store.add_audit_record(make_record(action, at=at(seconds)))

    assert [r.action for r in await store.list_audit_records()] == ["late", "third", "second", "first"]
    assert [r.action for r in await store.list_audit_records(limit=2)] == ["late", "third"]
    assert [r.action for r in await store.list_audit_records(before=at(10))] == ["third", "second", "first"]


async def test_records_are_found_by_an_entry_they_name(store: ScheduledCommandStore) -> None:
    await store.add_audit_record(make_record("one", entry_ids=("e-1",), at=at(1)))
    await store.add_audit_record(make_record("both", entry_ids=("e-1", "e-2"), at=at(2)))
    await store.add_audit_record(make_record("filter", entry_ids=(), target="status=FAILED", count=9, at=at(3)))
    await store.add_audit_record(make_record("prefix", entry_ids=("e-10",), at=at(4)))
    await store.add_audit_record(make_record("wildcard", entry_ids=("e_%",), at=at(5)))

    assert [r.action for r in await store.list_audit_records(entry_id="e-1")] == ["both", "one"]
    assert [r.action for r in await store.list_audit_records(entry_id="e-2")] == ["both"]
    assert [r.action for r in await store.list_audit_records(entry_id="e-1", limit=1)] == ["both"]
    assert await store.list_audit_records(entry_id="e") == []
    assert [r.action for r in await store.list_audit_records(entry_id="e_%")] == ["wildcard"]


async def test_forgetting_deletes_only_the_records_before_the_time(store: ScheduledCommandStore) -> None:
    for seconds in (0, 5, 10):
        await store.add_audit_record(make_record(f"at-{seconds}", at=at(seconds)))

    assert await store.forget_audit_records(before=at(10)) == 2
    assert [r.action for r in await store.list_audit_records()] == ["at-10"]
    assert await store.forget_audit_records(before=at(10)) == 0


def test_a_record_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        make_record(at=datetime(2030, 1, 1))
    with pytest.raises(ValidationError, match="source"):
        make_record(source="telnet")
    with pytest.raises(ValidationError, match="actor"):
        make_record(actor="")
    with pytest.raises(ValidationError, match="count"):
        make_record(count=-1)
