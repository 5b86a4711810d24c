"""How options become an entry: built without pydantic's validator when validation would change nothing, and then
the same entry, field by field, as the validated one; anything else still goes through the validator."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from scheduling import ScheduleOptions
from scheduling._new_entry import derived_entry, new_entry, new_id, new_ids
from stores.entries import ScheduledCommandEntry

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)

OPTIONS = [
    ScheduleOptions(),
    ScheduleOptions(
        delay=timedelta(hours=1),
        priority=-7,
        max_retries=0,
        expires_after=timedelta(minutes=30),
        correlation_id="c-1",
        metadata={"user": "42", "é": "ü"},
        idempotency_key="k-1",
        timeout=timedelta(seconds=1.5),
        queue="mail",
        lock="account:1",
    ),
    ScheduleOptions(scheduled_for=datetime(2027, 1, 1, tzinfo=timezone(timedelta(hours=-5)))),
]


def _validated(entry: ScheduledCommandEntry) -> ScheduledCommandEntry:
    """What pydantic's validator makes of the fields ``entry`` was given."""
    return ScheduledCommandEntry(**{name: getattr(entry, name) for name in entry.model_fields_set})


def _built(options: ScheduleOptions, **extra: object) -> ScheduledCommandEntry:
    due = options.due_at(NOW)
    expires_at = due + options.expires_after if options.expires_after is not None else None
    return new_entry(
        "app.Record",
        '{"value":"x"}',
        options,
        scheduled_for=due,
        expires_at=expires_at,
        now=NOW,
        default_max_retries=3,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("options", OPTIONS)
def test_an_entry_built_without_the_validator_is_the_validated_entry(options: ScheduleOptions) -> None:
    entry = _built(options, trace_context='{"traceparent":"00-x"}')
    validated = _validated(entry)
    assert entry == validated
    assert entry.model_dump() == validated.model_dump()
    assert entry.model_dump_json() == validated.model_dump_json()
    assert entry.model_fields_set == validated.model_fields_set
    assert list(entry.__dict__) == list(validated.__dict__)


def test_a_recurring_occurrence_built_without_the_validator_is_the_validated_entry() -> None:
    entry = _built(
        OPTIONS[1], idempotency_key="occ", recurring_name="nightly", occurrence_at=NOW, occurrence_generation=2
    )
    assert entry == _validated(entry)
    assert entry.model_dump() == _validated(entry).model_dump()


def test_the_entry_has_its_own_metadata_dict() -> None:
    options = OPTIONS[1]
    entry = _built(options)
    copy = derived_entry(entry, id=new_id(), payload='{"value":"y"}')
    assert entry.metadata == copy.metadata == options.metadata
    assert entry.metadata is not options.metadata
    assert copy.metadata is not entry.metadata


def test_a_derived_entry_changes_only_what_it_is_given() -> None:
    entry = _built(OPTIONS[1])
    copy = derived_entry(entry, id="other", command_type="app.Other", payload="{}", queue="q2")
    assert copy.model_dump() == entry.model_dump() | {
        "id": "other",
        "command_type": "app.Other",
        "payload": "{}",
        "queue": "q2",
    }
    assert copy.model_fields_set == entry.model_fields_set
    assert copy == _validated(copy)


def test_a_naive_clock_is_still_refused_by_the_validator() -> None:
    """A custom ``Clock`` returning a naive datetime: the same ``ValidationError`` as before, nothing built."""
    naive = datetime(2026, 12, 6, 9, 0)
    with pytest.raises(ValidationError, match="created_at"):
        new_entry(
            "app.Record", "{}", ScheduleOptions(), scheduled_for=NOW, expires_at=None, now=naive, default_max_retries=3
        )


def test_values_the_validator_would_coerce_are_coerced_as_before() -> None:
    """A ``bool`` default retry count (an ``int`` subclass) goes through the validator, as it always did."""
    entry = new_entry(
        "app.Record", "{}", ScheduleOptions(), scheduled_for=NOW, expires_at=None, now=NOW, default_max_retries=True
    )
    assert entry.max_retries == 1
    assert type(entry.max_retries) is int


def test_a_negative_default_retry_count_is_still_refused() -> None:
    with pytest.raises(ValidationError, match="max_retries"):
        new_entry(
            "app.Record", "{}", ScheduleOptions(), scheduled_for=NOW, expires_at=None, now=NOW, default_max_retries=-1
        )


@pytest.mark.parametrize("make", [lambda: [new_id() for _ in range(2000)], lambda: new_ids(2000)])
def test_new_ids_are_version_4_uuids_as_uuid4_writes_them(make: Callable[[], list[str]]) -> None:
    """One at a time (``schedule()``) or many from one read of the random source (``schedule_many()``)."""
    ids = set(make())
    assert len(ids) == 2000
    for value in ids:
        parsed = uuid.UUID(value)
        assert str(parsed) == value
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
