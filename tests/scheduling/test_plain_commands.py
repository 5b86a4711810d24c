"""The round trip known without parsing it back (``_plain_commands``): only classes of plain fields qualify, only
commands holding exactly plain values skip the parse, and whatever it lets through does round-trip."""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict, Field, PrivateAttr, computed_field, field_serializer, field_validator
from scheduling_app import Record, make_app

from mediator import Command, CommandHandler
from scheduling._plain_commands import holds_plain_values, plain_fields
from scheduling.storable import check_command_round_trip


class Plain(Command[None]):
    """Documented fields and defaults only: qualifies."""

    default_queue: ClassVar[str] = "default"

    count: int
    name: str = Field(default="", description="who")
    flag: bool = False
    note: str | None = None
    limit: int | None = None


class PlainHandler(CommandHandler[Plain, None]):
    async def handle(self, command: Plain) -> None:
        return None


class WithFloat(Command[None]):
    amount: float


class WithAlias(Command[None]):
    value: str = Field(alias="v")


class WithConstraint(Command[None]):
    count: Annotated[int, Field(gt=0)]


class WithValidator(Command[None]):
    name: str

    @field_validator("name")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class WithSerializer(Command[None]):
    name: str

    @field_serializer("name")
    def _lower(self, value: str) -> str:
        return value.lower()


class WithComputed(Command[None]):
    count: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return self.count * 2


class WithPrivate(Command[None]):
    count: int
    _seen: list[str] = PrivateAttr(default_factory=list)


class WithPostInit(Command[None]):
    count: int

    def model_post_init(self, context: Any) -> None:
        return None


class Stripping(Command[None]):
    model_config = ConfigDict(str_strip_whitespace=True)

    name: str


class ExtraAllowed(Command[None]):
    model_config = ConfigDict(extra="allow")

    name: str


class OwnDump(Plain):
    def model_dump_json(self, **kwargs: Any) -> str:
        return super().model_dump_json(**kwargs)


class IntOrStr(Command[None]):
    value: int | str


class Nested(Command[None]):
    inner: Plain


class Excluded(Command[None]):
    name: str = Field(default="", exclude=True)


class OwnInit(Command[None]):
    """Its ``__init__`` runs again when its JSON is read back (pydantic calls a class's own ``__init__``)."""

    count: int

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**values, "count": values["count"] * 2})


class OwnInitHandler(CommandHandler[OwnInit, None]):
    async def handle(self, command: OwnInit) -> None:
        return None


NOT_PLAIN = [
    WithFloat,
    WithAlias,
    WithConstraint,
    WithValidator,
    WithSerializer,
    WithComputed,
    WithPrivate,
    WithPostInit,
    Stripping,
    ExtraAllowed,
    OwnDump,
    IntOrStr,
    Nested,
    Excluded,
    OwnInit,
]


def test_a_class_of_plain_fields_qualifies() -> None:
    assert plain_fields(Plain) == (
        ("count", int, False),
        ("name", str, False),
        ("flag", bool, False),
        ("note", str, True),
        ("limit", int, True),
    )
    assert plain_fields(Record) is not None


@pytest.mark.parametrize("command_class", NOT_PLAIN, ids=[c.__name__ for c in NOT_PLAIN])
def test_a_class_with_anything_that_changes_values_on_the_way_does_not(command_class: type[Command[Any]]) -> None:
    assert plain_fields(command_class) is None


@pytest.mark.parametrize(
    "values",
    [
        {"count": True},  # a bool in an int field
        {"count": "1"},
        {"count": 1.0},
        {"count": 2**63},  # larger than the check vouches for
        {"count": -(2**63) - 1},
        {"count": 1, "flag": 1},
        {"count": 1, "name": None},  # None where the field does not allow it
        {"count": 1, "note": 5},
    ],
)
def test_a_value_not_exactly_of_its_field_type_takes_the_full_check(values: dict[str, Any]) -> None:
    command = Plain.model_construct(**{**Plain(count=0).__dict__, **values})
    fields = plain_fields(Plain)
    assert fields is not None
    assert not holds_plain_values(command, fields)


def test_a_command_missing_a_field_or_holding_extra_state_takes_the_full_check() -> None:
    fields = plain_fields(Plain)
    assert fields is not None
    assert holds_plain_values(Plain(count=1), fields)
    missing = Plain(count=1)
    del missing.__dict__["flag"]
    assert not holds_plain_values(missing, fields)
    extra = Plain(count=1)
    extra.__dict__["other"] = 1
    assert not holds_plain_values(extra, fields)


PLAIN_VALUES = st.builds(
    Plain,
    count=st.integers(min_value=-(2**64), max_value=2**64),
    name=st.text(),
    flag=st.booleans(),
    note=st.none() | st.text(),
    limit=st.none() | st.integers(),
)
ANY_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text())


@settings(max_examples=300, deadline=None)
@given(command=PLAIN_VALUES)
def test_whatever_skips_the_parse_does_round_trip(command: Plain) -> None:
    fields = plain_fields(Plain)
    assert fields is not None
    if holds_plain_values(command, fields):
        check_command_round_trip(command, command.model_dump_json(), "Plain")  # raises if it did not


@settings(max_examples=300, deadline=None)
@given(count=ANY_VALUES, name=ANY_VALUES, flag=ANY_VALUES, note=ANY_VALUES, limit=ANY_VALUES)
def test_values_set_behind_validation_skip_the_parse_only_when_they_round_trip(**values: Any) -> None:
    """``model_construct`` sets anything: what the check lets through still decodes to an equal command."""
    command = Plain.model_construct(**values)
    fields = plain_fields(Plain)
    assert fields is not None
    if holds_plain_values(command, fields):
        check_command_round_trip(command, command.model_dump_json(), "Plain")


async def test_schedule_still_refuses_a_plain_class_holding_a_value_that_does_not_round_trip() -> None:
    """The shortcut is per value: a command of a qualifying class whose value was set behind validation is refused
    naming the field, after commands of the same class went through without the parse."""
    app = make_app(handlers=[PlainHandler])
    assert await app.scheduler.schedule(Plain(count=1, name="a"))
    with warnings.catch_warnings():  # pydantic warns while it writes a value of another type than its field's
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=r"cannot be stored: field count"):
            await app.scheduler.schedule(Plain.model_construct(count="x"))
        with pytest.raises(ValueError, match=r"cannot be stored: field limit"):
            await app.scheduler.schedule_many([Plain(count=2), Plain.model_construct(count=3, limit=math.nan)])
    assert sum((await app.store.count_by_status()).values()) == 1


async def test_schedule_refuses_a_class_whose_own_init_changes_the_values_read_back() -> None:
    """The worker's command would hold 4 where 2 was scheduled: refused as before the shortcut."""
    app = make_app(handlers=[OwnInitHandler])
    with pytest.raises(ValueError, match=r"cannot be stored: field count would be decoded as 4 instead of 2"):
        await app.scheduler.schedule(OwnInit(count=1))
    assert sum((await app.store.count_by_status()).values()) == 0
