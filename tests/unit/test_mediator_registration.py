"""Registration: invalid classes are refused when registered, duplicates when the mediator is built."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import pytest
from injector import Injector

from mediator import (
    Command,
    CommandHandler,
    DuplicateHandlerError,
    Mediator,
    MediatorError,
    MediatorModule,
    Notification,
    NotificationHandler,
    PipelineBehavior,
    Query,
    QueryHandler,
)
from mediator.behaviors import Next
from mediator.errors import InvalidHandlerError


class CreateUser(Command[int]):
    email: str


class GetUser(Query[str]):
    user_id: int


class UserCreated(Notification):
    user_id: int


class CreateUserHandler(CommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        return 1


class OtherCreateUserHandler(CommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        return 2


class GetUserHandler(QueryHandler[GetUser, str]):
    async def handle(self, query: GetUser) -> str:
        return "u"


class OtherGetUserHandler(QueryHandler[GetUser, str]):
    def handle(self, query: GetUser) -> str:
        return "v"


class OnUserCreated(NotificationHandler[UserCreated]):
    async def handle(self, notification: UserCreated) -> None:
        return None


class AlsoOnUserCreated(NotificationHandler[UserCreated]):
    async def handle(self, notification: UserCreated) -> None:
        return None


# -- duplicates --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "message_type"),
    [
        (CreateUserHandler, OtherCreateUserHandler, CreateUser),
        (GetUserHandler, OtherGetUserHandler, GetUser),
    ],
    ids=["command", "query"],
)
def test_two_handlers_of_one_request_in_one_module_fail_at_module_construction(
    first: type, second: type, message_type: type
) -> None:
    """Two handlers of one command or query in one MediatorModule raise DuplicateHandlerError right away."""
    with pytest.raises(DuplicateHandlerError) as caught:
        MediatorModule([first, second])

    error = caught.value
    assert isinstance(error, MediatorError)
    assert (error.message_type, error.first, error.second) == (message_type, first, second)
    for name in (message_type.__name__, first.__name__, second.__name__):
        assert name in str(error)


def test_two_handlers_of_one_command_in_two_modules_fail_when_the_mediator_is_built() -> None:
    """Across two MediatorModules the duplicate is found when the injector builds the Mediator."""
    injector = Injector([MediatorModule([CreateUserHandler]), MediatorModule([OtherCreateUserHandler])])

    with pytest.raises(DuplicateHandlerError, match="CreateUser has two handlers") as caught:
        injector.get(Mediator)

    assert caught.value.first is CreateUserHandler
    assert caught.value.second is OtherCreateUserHandler
    assert "OtherCreateUserHandler" in str(caught.value)


@pytest.mark.parametrize("handler", [CreateUserHandler, OnUserCreated], ids=["command", "notification"])
def test_one_handler_registered_twice_in_one_module_is_a_duplicate(handler: type) -> None:
    """The same handler class listed twice raises DuplicateHandlerError naming the handler and its message."""
    with pytest.raises(DuplicateHandlerError, match="registered twice") as caught:
        MediatorModule([handler, handler])

    assert caught.value.first is caught.value.second is handler
    assert handler.__name__ in str(caught.value)
    assert caught.value.message_type.__name__ in str(caught.value)


def test_one_handler_registered_in_two_modules_is_a_duplicate() -> None:
    """The same handler in two MediatorModules raises DuplicateHandlerError when the Mediator is built."""
    injector = Injector([MediatorModule([OnUserCreated]), MediatorModule([OnUserCreated])])

    with pytest.raises(DuplicateHandlerError, match=r"OnUserCreated for UserCreated is registered twice"):
        injector.get(Mediator)


def test_several_notification_handlers_of_one_notification_are_fine() -> None:
    """A notification may have any number of handlers."""
    injector = Injector([MediatorModule([OnUserCreated, AlsoOnUserCreated])])

    assert isinstance(injector.get(Mediator), Mediator)


# -- invalid handler classes ---------------------------------------------------------------------------------------


class NotAHandler:
    async def handle(self, command: CreateUser) -> int:
        return 1


class AbstractHandler(CommandHandler[CreateUser, int]):
    @abstractmethod
    async def handle(self, command: CreateUser) -> int: ...


class MissingHandle(CommandHandler[CreateUser, int]):
    async def run(self, command: CreateUser) -> int:
        return 1


class NoArgument(CommandHandler[CreateUser, int]):
    async def handle(self) -> int:  # type: ignore[override]
        return 1


class TwoArguments(CommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser, other: int) -> int:  # type: ignore[override]
        return 1


class RequiredKeyword(CommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser, *, user: str) -> int:  # type: ignore[override]
        return 1


class StaticHandle(CommandHandler[CreateUser, int]):
    @staticmethod
    async def handle(command: CreateUser) -> int:  # type: ignore[override]
        return 1


class ClassHandle(CommandHandler[CreateUser, int]):
    @classmethod
    async def handle(cls, command: CreateUser) -> int:  # type: ignore[override]
        return 1


class NotACommand(CommandHandler[int, int]):  # type: ignore[type-var]
    async def handle(self, command: int) -> int:
        return 1


class UnboundTypeVariable(CommandHandler[Any, int]):
    async def handle(self, command: Any) -> int:
        return 1


async def handler_function(command: CreateUser) -> int:
    return 1


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        pytest.param(CreateUserHandler(), "a handler is a class", id="instance"),
        pytest.param(handler_function, "a handler is a class", id="function"),
        pytest.param("myapp.CreateUserHandler", "a handler is a class", id="string"),
        pytest.param(NotAHandler, "does not subclass", id="not-a-handler-subclass"),
        pytest.param(AbstractHandler, "abstract", id="abstract"),
        pytest.param(MissingHandle, r"abstract \(missing: handle\)", id="missing-handle"),
        pytest.param(NoArgument, r"handle\(self, message\)", id="no-argument"),
        pytest.param(TwoArguments, r"handle\(self, message\)", id="two-arguments"),
        pytest.param(RequiredKeyword, r"handle\(self, message\)", id="required-keyword"),
        pytest.param(StaticHandle, "plain instance method", id="staticmethod"),
        pytest.param(ClassHandle, "plain instance method", id="classmethod"),
        pytest.param(NotACommand, "must be a Command subclass", id="not-a-command"),
        pytest.param(UnboundTypeVariable, "must be a Command subclass", id="any"),
    ],
)
def test_an_invalid_handler_is_refused_at_registration(candidate: object, reason: str) -> None:
    """MediatorModule(handlers=[...]) raises InvalidHandlerError (a TypeError) that says why."""
    with pytest.raises(InvalidHandlerError, match=reason) as caught:
        MediatorModule([candidate])  # type: ignore[list-item]

    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, MediatorError)
    assert caught.value.handler is candidate
    assert "cannot be registered" in str(caught.value)


def test_an_invalid_handler_error_names_the_class() -> None:
    """The message starts with the class's name."""
    with pytest.raises(InvalidHandlerError, match=r"^StaticHandle cannot be registered"):
        MediatorModule([StaticHandle])


def test_a_handle_with_an_optional_extra_parameter_is_accepted() -> None:
    """Extra parameters with defaults are fine: handle is still callable as handle(message)."""

    class WithDefault(CommandHandler[CreateUser, int]):
        async def handle(self, command: CreateUser, retries: int = 0) -> int:
            return retries

    assert MediatorModule([WithDefault]).handlers[0].handler is WithDefault


# -- invalid behaviors ---------------------------------------------------------------------------------------------


class SyncBehavior(PipelineBehavior):
    def handle(self, message: Any, next: Next) -> Any:  # type: ignore[override]
        return next()


class OneArgumentBehavior(PipelineBehavior):
    async def handle(self, message: Any) -> Any:  # type: ignore[override]
        return None


class AbstractBehavior(PipelineBehavior):
    async def around(self, message: Any, next: Next) -> Any:
        return await next()


class NotificationBehavior(PipelineBehavior[UserCreated]):  # type: ignore[type-var]
    async def handle(self, message: Any, next: Next) -> Any:
        return await next()


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        pytest.param(CreateUserHandler, "PipelineBehavior subclass", id="a-handler"),
        pytest.param(object(), "PipelineBehavior subclass", id="instance"),
        pytest.param(SyncBehavior, "async def", id="sync-handle"),
        pytest.param(OneArgumentBehavior, r"handle\(self, message, next\)", id="one-argument"),
        pytest.param(AbstractBehavior, "abstract", id="abstract"),
        pytest.param(NotificationBehavior, "Command or Query type", id="notification"),
    ],
)
def test_an_invalid_behavior_is_refused_at_registration(candidate: object, reason: str) -> None:
    """MediatorModule(behaviors=[...]) raises InvalidHandlerError for a class that cannot be a behavior."""
    with pytest.raises(InvalidHandlerError, match=reason):
        MediatorModule(behaviors=[candidate])  # type: ignore[list-item]
