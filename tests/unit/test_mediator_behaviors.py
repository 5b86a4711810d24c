"""Pipeline behaviors: order, scope by message type, results, ``applies_to`` and the plan cache."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from injector import Binder, Injector, Module, inject

from mediator import (
    Command,
    CommandHandler,
    Mediator,
    MediatorModule,
    Notification,
    NotificationHandler,
    PipelineBehavior,
    Query,
    QueryHandler,
)
from mediator.behaviors import Next

LOG: list[str] = []


@pytest.fixture(autouse=True)
def _clear_log() -> None:
    LOG.clear()


class CreateUser(Command[int]):
    email: str


class CreateAdmin(CreateUser):
    pass


class GetUser(Query[str]):
    user_id: int


class UserCreated(Notification):
    pass


class CreateUserHandler(CommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        LOG.append("handler")
        return 1


class CreateAdminHandler(CommandHandler[CreateAdmin, int]):
    async def handle(self, command: CreateAdmin) -> int:
        LOG.append("admin handler")
        return 100


class GetUserHandler(QueryHandler[GetUser, str]):
    def handle(self, query: GetUser) -> str:
        LOG.append("query handler")
        return f"user {query.user_id}"


class OnUserCreated(NotificationHandler[UserCreated]):
    async def handle(self, notification: UserCreated) -> None:
        LOG.append("notification handler")


class Outer(PipelineBehavior):
    async def handle(self, message: Any, next: Next) -> Any:
        LOG.append("outer before")
        result = await next()
        LOG.append("outer after")
        return result


class Inner(PipelineBehavior):
    async def handle(self, message: Any, next: Next) -> Any:
        LOG.append("inner before")
        result = await next()
        LOG.append("inner after")
        return result


class OnlyCreateUser(PipelineBehavior[CreateUser]):
    async def handle(self, message: CreateUser, next: Next) -> Any:
        LOG.append(f"only-create-user {type(message).__name__}")
        return await next()


class Doubles(PipelineBehavior[CreateUser]):
    async def handle(self, message: CreateUser, next: Next) -> Any:
        return 2 * await next()


class ShortCircuits(PipelineBehavior[GetUser]):
    async def handle(self, message: GetUser, next: Next) -> Any:
        return "cached"


class Switchable(PipelineBehavior):
    enabled = False
    asked: ClassVar[list[type]] = []

    @classmethod
    def applies_to(cls, message_type: type[Any]) -> bool:
        cls.asked.append(message_type)
        return cls.enabled

    async def handle(self, message: Any, next: Next) -> Any:
        LOG.append("switchable")
        return await next()


HANDLERS = [CreateUserHandler, CreateAdminHandler, GetUserHandler, OnUserCreated]


def make_mediator(*behaviors: type, modules: tuple[Module, ...] = ()) -> Mediator:
    return Injector([*modules, MediatorModule(HANDLERS, behaviors=list(behaviors))]).get(Mediator)


async def test_behaviors_run_outermost_first_in_registration_order() -> None:
    """The first registered behavior is the outermost: it runs first before and last after the handler."""
    mediator = make_mediator(Outer, Inner)

    assert await mediator.send(CreateUser(email="a")) == 1

    assert LOG == ["outer before", "inner before", "handler", "inner after", "outer after"]


async def test_an_unparametrized_behavior_wraps_commands_and_queries_but_not_publish() -> None:
    """PipelineBehavior without argument wraps every send(); publish() has no pipeline."""
    mediator = make_mediator(Outer)

    await mediator.send(GetUser(user_id=1))
    await mediator.publish(UserCreated())

    assert LOG == ["outer before", "query handler", "outer after", "notification handler"]


async def test_a_parametrized_behavior_applies_only_to_its_type_and_subclasses() -> None:
    """PipelineBehavior[CreateUser] wraps CreateUser and CreateAdmin sends, not GetUser."""
    mediator = make_mediator(OnlyCreateUser)

    await mediator.send(CreateUser(email="a"))
    await mediator.send(CreateAdmin(email="b"))
    await mediator.send(GetUser(user_id=1))

    assert LOG == [
        "only-create-user CreateUser",
        "handler",
        "only-create-user CreateAdmin",
        "admin handler",
        "query handler",
    ]


async def test_a_behavior_can_change_the_result() -> None:
    """What a behavior returns is what send() returns."""
    mediator = make_mediator(Doubles)

    assert await mediator.send(CreateUser(email="a")) == 2
    assert await mediator.send(CreateAdmin(email="a")) == 200


async def test_a_behavior_can_answer_without_calling_the_handler() -> None:
    """A behavior that does not call next() short-circuits the handler."""
    mediator = make_mediator(ShortCircuits)

    assert await mediator.send(GetUser(user_id=1)) == "cached"
    assert LOG == []


async def test_a_behavior_exception_propagates() -> None:
    """An exception raised in a behavior reaches the caller; the inner pipeline and the handler do not run."""

    class Fails(PipelineBehavior):
        async def handle(self, message: Any, next: Next) -> Any:
            raise RuntimeError("refused")

    mediator = make_mediator(Outer, Fails)

    with pytest.raises(RuntimeError, match="refused"):
        await mediator.send(CreateUser(email="a"))
    assert LOG == ["outer before"]


async def test_a_behavior_whose_applies_to_is_false_is_not_called_until_the_cache_is_cleared() -> None:
    """applies_to is asked once per type; its False keeps the behavior out until Mediator.clear_cache()."""
    Switchable.enabled = False
    Switchable.asked.clear()
    mediator = make_mediator(Switchable)

    await mediator.send(CreateUser(email="a"))
    await mediator.send(CreateUser(email="a"))
    assert LOG == ["handler", "handler"]
    assert Switchable.asked == [CreateUser]

    Switchable.enabled = True
    await mediator.send(CreateUser(email="a"))
    assert LOG[-1] == "handler"  # the cached plan still leaves it out

    mediator.clear_cache()
    await mediator.send(CreateUser(email="a"))
    assert LOG[-2:] == ["switchable", "handler"]
    assert Switchable.asked == [CreateUser, CreateUser]


async def test_applies_to_is_asked_with_each_message_type() -> None:
    """applies_to receives the concrete message type, once per type dispatched."""
    Switchable.enabled = True
    Switchable.asked.clear()
    mediator = make_mediator(Switchable)

    await mediator.send(CreateAdmin(email="a"))
    await mediator.send(GetUser(user_id=1))
    await mediator.send(CreateAdmin(email="a"))

    assert Switchable.asked == [CreateAdmin, GetUser]


class Prefix:
    def __init__(self, text: str) -> None:
        self.text = text


class Prefixes(PipelineBehavior[GetUser]):
    @inject
    def __init__(self, prefix: Prefix) -> None:
        self.prefix = prefix

    async def handle(self, message: GetUser, next: Next) -> Any:
        return self.prefix.text + await next()


async def test_behaviors_are_built_by_the_injector() -> None:
    """A behavior's @inject constructor gets its dependencies from the injector."""

    class Bindings(Module):
        def configure(self, binder: Binder) -> None:
            binder.bind(Prefix, to=Prefix(">> "))

    mediator = make_mediator(Prefixes, modules=(Bindings(),))

    assert await mediator.send(GetUser(user_id=5)) == ">> user 5"


async def test_behaviors_of_several_modules_merge_in_module_order() -> None:
    """Behaviors from several MediatorModules wrap in the order the modules were given."""
    injector = Injector([MediatorModule(HANDLERS, behaviors=[Inner]), MediatorModule(behaviors=[Outer])])

    await injector.get(Mediator).send(CreateUser(email="a"))

    assert LOG == ["inner before", "outer before", "handler", "outer after", "inner after"]
