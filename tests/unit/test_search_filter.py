"""``parse_filter``: operators' filter text (query parameters, form fields, CLI options) to an ``EntryFilter``, and
its refusals naming the offending value."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from scheduling.search import parse_filter
from stores.entries import ScheduledCommandStatus
from stores.filters import EntryFilter, combined

NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, EntryFilter()),
        ({"status": " failed ", "command_type": "", "error": "  "}, EntryFilter(status=ScheduledCommandStatus.FAILED)),
        ({"error": "Timeout", "id_prefix": "ab12"}, EntryFilter(error_contains="Timeout", id_prefix="ab12")),
        ({"created_after": "2026-03-01T12:00:00Z"}, EntryFilter(created_after=NOON)),
        ({"due_before": "2026-03-01T14:00:00+02:00"}, EntryFilter(due_before=NOON)),
    ],
)
def test_fields_become_a_filter(fields: dict[str, str | None], expected: EntryFilter) -> None:
    assert parse_filter(fields) == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"status": "done"}, "unknown status 'done'; use one of PENDING"),
        ({"finished_after": "2026-03-01 12:00"}, "finished_after '2026-03-01 12:00' needs a UTC offset"),
        ({"due_after": "soon"}, "due_after 'soon' is not an ISO 8601 time"),
        (
            {"created_after": "2026-03-01T12:00:00Z", "created_before": "2026-03-01T12:00:00Z"},
            "created_after (2026-03-01T12:00:00+00:00) must be earlier than created_before",
        ),
        ({"error": "x" * 501}, "error: String should have at most 500 characters"),
    ],
)
def test_bad_values_are_named(fields: dict[str, str | None], message: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(message)):
        parse_filter(fields)


def test_a_form_time_without_offset_is_utc() -> None:
    assert parse_filter({"created_after": "2026-03-01T12:00"}, naive_is_utc=True) == EntryFilter(created_after=NOON)


def test_describe_and_combine() -> None:
    where = EntryFilter(status=ScheduledCommandStatus.FAILED, error_contains="time out", created_after=NOON)
    assert where.describe() == 'status=FAILED error~"time out" created_after=2026-03-01T12:00:00+00:00'
    assert EntryFilter().describe() == "every entry"
    assert combined(where, command_type="a.B") == where.model_copy(update={"command_type": "a.B"})
    with pytest.raises(ValueError, match="status='PENDING' contradicts the filter's status='FAILED'"):
        combined(where, status=ScheduledCommandStatus.PENDING)
