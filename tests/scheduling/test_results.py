"""The pure parts of waiting for a result: a command class's result type, and a finished entry's outcome."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import pytest
from pydantic import BaseModel

from mediator import Command
from scheduling import ScheduledCommandEntry, ScheduledCommandStatus
from scheduling.errors import (
    CommandCancelledError,
    CommandExpiredError,
    CommandFailedError,
    CommandNotFinishedError,
    CommandOutcomeError,
)
from scheduling.results import decode_result, result_type_of

T = TypeVar("T")
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Point(BaseModel):
    x: int
    y: int


class Bare(Command):
    pass


class Nothing(Command[None]):
    pass


class Count(Command[int]):
    pass


class CountAgain(Count):
    pass


class Names(Command[list[str]]):
    pass


class Locate(Command[Point]):
    pass


class Maybe(Command[int | None]):
    pass


class Generic1(Command[T], Generic[T]):
    pass


class ViaGeneric(Generic1[float]):
    pass


@pytest.mark.parametrize(
    ("command_class", "expected"),
    [
        (Bare, None),
        (Nothing, None),
        (Count, int),
        (CountAgain, int),
        (Names, list[str]),
        (Locate, Point),
        (Maybe, int | None),
        (ViaGeneric, float),
    ],
)
def test_the_result_type_is_read_from_the_generic_base(command_class: type[Command[Any]], expected: Any) -> None:
    assert result_type_of(command_class) == expected


def entry(status: ScheduledCommandStatus, **fields: Any) -> ScheduledCommandEntry:
    values: dict[str, Any] = {
        "id": "e-1",
        "command_type": "app.Count",
        "payload": "{}",
        "status": status,
        "scheduled_for": NOW,
        "created_at": NOW,
    }
    return ScheduledCommandEntry.model_validate(values | fields)


COMPLETED = ScheduledCommandStatus.COMPLETED


@pytest.mark.parametrize(
    ("command_class", "payload", "expected"),
    [
        (Count, "5", 5),
        (Names, '["a","b"]', ["a", "b"]),
        (Locate, '{"x":1,"y":2}', Point(x=1, y=2)),
        (Maybe, "null", None),
        (Nothing, None, None),
        (None, '{"any":[1,2]}', {"any": [1, 2]}),  # an unregistered type: plain JSON
    ],
)
def test_a_completed_entry_decodes_to_the_result_type(
    command_class: type[Command[Any]] | None, payload: str | None, expected: Any
) -> None:
    result = decode_result(entry(COMPLETED, result_payload=payload), command_class)
    assert result == expected
    assert type(result) is type(expected)


def test_a_result_that_no_longer_validates_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"app\.Count e-1 \(\"many\"\) does not validate as int"):
        decode_result(entry(COMPLETED, result_payload='"many"'), Count)


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (ScheduledCommandStatus.FAILED, CommandFailedError),
        (ScheduledCommandStatus.EXPIRED, CommandExpiredError),
        (ScheduledCommandStatus.CANCELLED, CommandCancelledError),
    ],
)
def test_an_entry_that_did_not_complete_raises_its_outcome(
    status: ScheduledCommandStatus, error: type[CommandOutcomeError]
) -> None:
    finished = entry(status, error_message="RuntimeError: boom", attempt_count=2)
    with pytest.raises(error) as raised:
        decode_result(finished, Count)
    assert raised.value.command_id == "e-1"
    assert raised.value.error_message == "RuntimeError: boom"
    assert raised.value.entry is finished
    assert str(raised.value).startswith("app.Count e-1 ")
    assert str(raised.value).endswith(": RuntimeError: boom")


def test_a_failed_entry_names_its_attempts() -> None:
    failed = entry(ScheduledCommandStatus.FAILED, error_message="RuntimeError: boom", attempt_count=4)
    with pytest.raises(CommandFailedError, match="failed after 4 attempt"):
        decode_result(failed, Count)


@pytest.mark.parametrize("status", [ScheduledCommandStatus.PENDING, ScheduledCommandStatus.PROCESSING])
def test_an_unfinished_entry_raises_not_finished(status: ScheduledCommandStatus) -> None:
    with pytest.raises(CommandNotFinishedError, match=f"e-1 has not finished \\(status {status.value}\\)"):
        decode_result(entry(status), Count)
