"""What ``schedule()`` refuses because the store could not hold it, or the worker could not decode it as scheduled.

Every refusal is a ``ValueError`` naming the field, the same on every store (the limits are checked above the
stores), and stores nothing. Values exactly at a limit are stored and run on every store. A property-based test
generates commands and options: either ``schedule()`` refuses them, or the worker runs exactly the command that was
scheduled, with the options that were given.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict, Field, PrivateAttr
from reliability_support import empty
from scheduling_app import make_app
from sqlalchemy import text

from mediator import Command, CommandHandler
from scheduling import ScheduledCommandStatus, ScheduleOptions, SchedulerSettings
from stores import MemoryStore, ScheduledCommandStore, SqlStore

S = ScheduledCommandStatus


class Measure(Command[None]):
    amount: float


class Aliased(Command[None]):
    value: str = Field(alias="v")


class AliasedOptional(Command[None]):
    note: str | None = Field(default=None, alias="n")


class Tree(Command[None]):
    data: Any


class Anything(Command[None]):
    """The command the property-based test generates."""

    number: float
    count: int
    text: str
    tree: Any


class NanAsConstant(Command[None]):
    """Writes NaN and infinities as the JSON constants, which pydantic's parser reads back."""

    model_config = ConfigDict(ser_json_inf_nan="constants")
    amount: float


class Ratio(Command[None]):
    value: Annotated[Decimal, Field(allow_inf_nan=True)]


class WithPrivateState(Command[None]):
    amount: float
    _seen: list[str] = PrivateAttr(default_factory=list)


#: What the handlers received, in order (the test compares it with what was scheduled).
RECEIVED: list[Command[Any]] = []


class MeasureHandler(CommandHandler[Measure, None]):
    async def handle(self, command: Measure) -> None:
        RECEIVED.append(command)


class AliasedHandler(CommandHandler[Aliased, None]):
    async def handle(self, command: Aliased) -> None:
        RECEIVED.append(command)


class AliasedOptionalHandler(CommandHandler[AliasedOptional, None]):
    async def handle(self, command: AliasedOptional) -> None:
        RECEIVED.append(command)


class TreeHandler(CommandHandler[Tree, None]):
    async def handle(self, command: Tree) -> None:
        RECEIVED.append(command)


class AnythingHandler(CommandHandler[Anything, None]):
    async def handle(self, command: Anything) -> None:
        RECEIVED.append(command)


class NanAsConstantHandler(CommandHandler[NanAsConstant, None]):
    async def handle(self, command: NanAsConstant) -> None:
        RECEIVED.append(command)


class RatioHandler(CommandHandler[Ratio, None]):
    async def handle(self, command: Ratio) -> None:
        RECEIVED.append(command)


class WithPrivateStateHandler(CommandHandler[WithPrivateState, None]):
    async def handle(self, command: WithPrivateState) -> None:
        RECEIVED.append(command)


HANDLERS: list[type] = [
    MeasureHandler,
    AliasedHandler,
    AliasedOptionalHandler,
    TreeHandler,
    AnythingHandler,
    NanAsConstantHandler,
    RatioHandler,
    WithPrivateStateHandler,
]


def nested_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


# name, command, field named in the error
UNDECODABLE: list[tuple[str, Callable[[], Command[Any]], str]] = [
    ("NaN", lambda: Measure(amount=math.nan), "amount"),
    ("infinity", lambda: Measure(amount=math.inf), "amount"),
    ("minus infinity", lambda: Measure(amount=-math.inf), "amount"),
    ("required field with an alias", lambda: Aliased(v="x"), "v"),
    ("optional field with an alias", lambda: AliasedOptional(n="x"), "note"),
    ("nested deeper than the parser reads", lambda: Tree(data=nested_list(220)), "data"),
]


@pytest.mark.parametrize(("name", "make", "field"), UNDECODABLE, ids=[row[0] for row in UNDECODABLE])
async def test_a_command_the_worker_could_not_decode_as_scheduled_is_refused(
    any_store: ScheduledCommandStore, name: str, make: Callable[[], Command[Any]], field: str
) -> None:
    app = make_app(store=any_store, handlers=HANDLERS)
    with pytest.raises(ValueError, match=f"cannot be stored.*field {field}") as refused:
        await app.scheduler.schedule(make())
    assert type(make()).__qualname__ in str(refused.value)
    with pytest.raises(ValueError, match=f"field {field}"):
        await app.scheduler.schedule_many([Measure(amount=1.0), make()])
    assert sum((await any_store.count_by_status()).values()) == 0, "nothing is stored"


async def test_commands_that_survive_storage_are_delivered_equal(any_store: ScheduledCommandStore) -> None:
    """The round-trip check refuses nothing that does round-trip: extreme floats, deep (but parseable) nesting,
    NUL and astral characters, an aliased field given by alias that the JSON carries back."""
    RECEIVED.clear()
    app = make_app(store=any_store, handlers=HANDLERS)
    commands: list[Command[Any]] = [
        Measure(amount=5e-324),
        Measure(amount=1.7976931348623157e308),
        Measure(amount=-0.0),
        Tree(data=nested_list(100)),
        Tree(data={"a\x00b": ["\U0001f600", None, True, 2**70]}),
        AliasedOptional(),
    ]
    for command in commands:
        await app.scheduler.schedule(command)
    assert await app.service.run_until_idle() == len(commands)
    assert commands == RECEIVED


async def test_a_nan_the_json_carries_back_is_not_refused() -> None:
    """NaN is never == NaN, yet a model that writes it as a JSON constant, or a Decimal field that allows it, gets
    NaN back: such a command is delivered, not refused as if it did not survive."""
    RECEIVED.clear()
    app = make_app(handlers=HANDLERS)
    await app.scheduler.schedule(NanAsConstant(amount=math.nan))
    await app.scheduler.schedule(Ratio(value=Decimal("NaN")))
    assert await app.service.run_until_idle() == 2
    first, second = RECEIVED
    assert isinstance(first, NanAsConstant) and math.isnan(first.amount)
    assert isinstance(second, Ratio) and second.value.is_nan()


async def test_a_set_private_attribute_is_refused_by_name() -> None:
    """Private attributes are not in the JSON: a command carrying private state is refused with the attribute's name
    and value, not as a field "<root>" whose two sides print the same; one that leaves it at its default is fine."""
    app = make_app(handlers=HANDLERS)
    command = WithPrivateState(amount=1.0)
    command._seen.append("x")
    with pytest.raises(ValueError, match=r"private attribute _seen holds \['x'\].*default \(\[\]\)"):
        await app.scheduler.schedule(command)
    assert await app.scheduler.schedule(WithPrivateState(amount=2.0))


INT32_MAX = 2**31 - 1

# option values no store can hold (PostgreSQL's integer and varchar(n), text without NUL, UTF-8): the field named
REFUSED_OPTIONS: list[tuple[str, dict[str, Any], str]] = [
    ("priority above int32", {"priority": INT32_MAX + 1}, "priority"),
    ("priority below int32", {"priority": -(2**31) - 1}, "priority"),
    ("priority 2**63", {"priority": 2**63}, "priority"),
    ("max_retries above int32", {"max_retries": INT32_MAX + 1}, "max_retries"),
    ("correlation id too long", {"correlation_id": "c" * 257}, "correlation_id"),
    ("correlation id with NUL", {"correlation_id": "a\x00b"}, "correlation_id"),
    ("correlation id lone surrogate", {"correlation_id": "a\udcffb"}, "correlation_id"),
    ("idempotency key too long", {"idempotency_key": "k" * 513}, "idempotency_key"),
    ("idempotency key with NUL", {"idempotency_key": "\x00"}, "idempotency_key"),
    ("metadata value with NUL", {"metadata": {"k": "a\x00"}}, "metadata"),
    ("metadata key lone surrogate", {"metadata": {"\ud800": "v"}}, "metadata"),
    ("metadata too large", {"metadata": {"k": "v" * 70_000}}, "metadata"),
]


@pytest.mark.parametrize(("name", "values", "field"), REFUSED_OPTIONS, ids=[row[0] for row in REFUSED_OPTIONS])
def test_option_values_no_store_can_hold_are_refused(name: str, values: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ScheduleOptions(**values)


def test_a_default_max_retries_no_store_can_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        SchedulerSettings(max_retries=INT32_MAX + 1)


async def test_option_values_at_the_limits_are_stored_and_run(any_store: ScheduledCommandStore) -> None:
    """Exactly at every limit: stored as given, read back equal, and run, on every store."""
    RECEIVED.clear()
    app = make_app(store=any_store, handlers=HANDLERS)
    at_limits = [
        ScheduleOptions(priority=INT32_MAX, max_retries=INT32_MAX, correlation_id="c" * 256),
        ScheduleOptions(priority=-(2**31), idempotency_key="k" * 512, metadata={"k": "é" * 10_000, "😀": ""}),
    ]
    ids = [await app.scheduler.schedule(Measure(amount=float(i)), options) for i, options in enumerate(at_limits)]
    for entry_id, options in zip(ids, at_limits, strict=True):
        entry = await app.scheduler.get_status(entry_id)
        assert entry is not None
        assert entry.priority == options.priority
        assert entry.correlation_id == options.correlation_id
        assert entry.idempotency_key == options.idempotency_key
        assert entry.metadata == options.metadata
    assert await app.service.run_until_idle() == 2
    assert [Measure(amount=0.0), Measure(amount=1.0)] == RECEIVED


# -- property-based: either refused, or delivered exactly -------------------------------------------------------

JSON_LEAVES = st.none() | st.booleans() | st.integers() | st.floats() | st.text()
JSON_TREES = st.recursive(
    JSON_LEAVES,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
COMMANDS = st.builds(
    Anything,
    number=st.floats(),
    count=st.integers(min_value=-(2**70), max_value=2**70),
    text=st.text(),
    tree=JSON_TREES,
)
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "priority": st.integers(min_value=-(2**64), max_value=2**64),
        "max_retries": st.integers(min_value=0, max_value=2**64),
        "correlation_id": st.text(max_size=300),
        "idempotency_key": st.text(max_size=600),
        "metadata": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
    },
)

StoreMaker = Callable[[Path], Awaitable[ScheduledCommandStore]]


async def _emptied(store: ScheduledCommandStore) -> ScheduledCommandStore:
    """The store without entries: a new MemoryStore, or the SQL store with its rows deleted."""
    if isinstance(store, MemoryStore):
        return MemoryStore()
    assert isinstance(store, SqlStore)
    async with store.engine.begin() as conn:
        await conn.execute(text("DELETE FROM scheduled_command_attempts"))
        await conn.execute(text("DELETE FROM scheduled_commands"))
    return store


async def _schedule_and_run(store: ScheduledCommandStore, command: Anything, values: dict[str, Any]) -> None:
    RECEIVED.clear()
    app = make_app(store=store, handlers=HANDLERS)
    try:
        options = ScheduleOptions(**values)
        entry_id = await app.scheduler.schedule(command, options)
    except ValueError:
        assert sum((await store.count_by_status()).values()) == 0, "a refused command is not stored"
        return
    entry = await app.scheduler.get_status(entry_id)
    assert entry is not None
    assert (entry.priority, entry.correlation_id, entry.idempotency_key, entry.metadata) == (
        options.priority,
        options.correlation_id,
        options.idempotency_key,
        options.metadata,
    )
    assert await app.service.run_until_idle() == 1
    assert [command] == RECEIVED
    assert (await app.scheduler.get_status(entry_id)).status is S.COMPLETED  # type: ignore[union-attr]


def _check_every_command(make_store: StoreMaker, max_examples: int) -> None:
    with tempfile.TemporaryDirectory() as directory, asyncio.Runner() as runner:
        store = runner.run(make_store(Path(directory)))
        try:

            @settings(
                max_examples=max_examples,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(command=COMMANDS, values=OPTIONS)
            def check(command: Anything, values: dict[str, Any]) -> None:
                runner.run(_schedule_and_run(runner.run(_emptied(store)), command, values))

            check()
        finally:
            runner.run(store.close())


async def _memory(_: Path) -> ScheduledCommandStore:
    return MemoryStore()


async def _sqlite(directory: Path) -> ScheduledCommandStore:
    store = SqlStore(f"sqlite:///{directory / 'limits.db'}")
    await store.open()
    return store


def _postgresql(url: str) -> StoreMaker:
    async def make(_: Path) -> ScheduledCommandStore:
        store = SqlStore(url)
        await empty(store)
        return store

    return make


def test_generated_commands_are_refused_or_delivered_exactly_memory() -> None:
    _check_every_command(_memory, max_examples=150)


def test_generated_commands_are_refused_or_delivered_exactly_sqlite() -> None:
    _check_every_command(_sqlite, max_examples=40)


def test_generated_commands_are_refused_or_delivered_exactly_postgresql(module_postgres_url: str) -> None:
    _check_every_command(_postgresql(module_postgres_url), max_examples=40)


@pytest.mark.soak
@pytest.mark.timeout(1800)
def test_soak_generated_commands_are_refused_or_delivered_exactly(module_postgres_url: str) -> None:
    for maker, examples in ((_memory, 5_000), (_sqlite, 1_000), (_postgresql(module_postgres_url), 1_000)):
        _check_every_command(maker, max_examples=examples)


@pytest.mark.parametrize("name", ["nightly\x00", "nightly \udcff"])
async def test_a_recurring_schedule_name_no_store_can_hold_is_refused(
    any_store: ScheduledCommandStore, name: str
) -> None:
    app = make_app(store=any_store, handlers=HANDLERS)
    with pytest.raises(ValueError, match="schedule name"):
        await app.scheduler.schedule_recurring(name, Measure(amount=1.0), interval=timedelta(hours=1))
    assert await any_store.list_schedules() == []


async def test_recurring_options_and_commands_meet_the_same_limits(any_store: ScheduledCommandStore) -> None:
    app = make_app(store=any_store, handlers=HANDLERS)
    with pytest.raises(ValueError, match=r"cannot be stored.*field amount"):
        await app.scheduler.schedule_recurring("nan", Measure(amount=math.nan), interval=timedelta(hours=1))
    with pytest.raises(ValueError, match="priority"):
        ScheduleOptions(priority=2**31)
    assert await any_store.list_schedules() == []
