"""``MediatorModule``: package scanning and merging several modules in one injector."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from injector import Injector

from mediator import Command, CommandHandler, Mediator, MediatorModule, Notification, NotificationHandler
from mediator.errors import DuplicateHandlerError

SAMPLE = "sample_handlers"


@pytest.fixture
def sample(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Makes the sample application package importable; yields its event log."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from sample_handlers.messages import EVENTS

    EVENTS.clear()
    yield EVENTS
    EVENTS.clear()


def test_scanning_finds_every_concrete_handler_in_the_package_and_sub_packages(sample: list[str]) -> None:
    """packages= registers the concrete handlers of the package and its sub-packages, each once, by module name."""
    from sample_handlers.base import AuditedCommandHandler
    from sample_handlers.listeners import OnUserRegistered
    from sample_handlers.users.queries import CountUsersHandler
    from sample_handlers.users.register import RegisterUserHandler

    module = MediatorModule(packages=[SAMPLE])

    found = [r.handler for r in module.handlers]
    assert found == [OnUserRegistered, CountUsersHandler, RegisterUserHandler]
    assert AuditedCommandHandler not in found  # abstract bases are skipped


def test_a_single_package_name_may_be_given_as_a_string(sample: list[str]) -> None:
    """packages="name" is read as one package, not as a sequence of one-letter names."""
    assert len(MediatorModule(packages=SAMPLE).handlers) == 3


def test_scanning_a_module_scans_only_that_module(sample: list[str]) -> None:
    """A dotted module name (not a package) registers the handlers defined in that module."""
    from sample_handlers.users.queries import CountUsersHandler

    assert [r.handler for r in MediatorModule(packages=[f"{SAMPLE}.users.queries"]).handlers] == [CountUsersHandler]


async def test_scanned_handlers_dispatch(sample: list[str]) -> None:
    """Scanned handlers, including one through a generic abstract base, handle sends and publishes."""
    from sample_handlers.messages import CountUsers, RegisterUser, UserRegistered

    mediator = Injector([MediatorModule(packages=[SAMPLE])]).get(Mediator)

    assert await mediator.send(RegisterUser(email="a@b.c")) == "user:a@b.c"
    assert await mediator.send(CountUsers()) == 7
    await mediator.publish(UserRegistered(email="a@b.c"))

    assert sample == ["audit RegisterUser", "register a@b.c", "welcome a@b.c"]


def test_a_listed_handler_also_found_by_scanning_is_a_duplicate(sample: list[str]) -> None:
    """Listing a handler that the scanned package also contains registers it twice: DuplicateHandlerError."""
    from sample_handlers.users.queries import CountUsersHandler

    with pytest.raises(DuplicateHandlerError, match="CountUsersHandler"):
        MediatorModule([CountUsersHandler], packages=[SAMPLE])


def test_scanning_an_unknown_package_raises_module_not_found() -> None:
    """A misspelt package name fails at MediatorModule(...) construction."""
    with pytest.raises(ModuleNotFoundError):
        MediatorModule(packages=["no_such_package_for_mediator_tests"])


class Ping(Command[str]):
    pass


class PingHandler(CommandHandler[Ping, str]):
    async def handle(self, command: Ping) -> str:
        return "pong"


class Pinged(Notification):
    pass


PINGED: list[str] = []


class FirstListener(NotificationHandler[Pinged]):
    async def handle(self, notification: Pinged) -> None:
        PINGED.append("first")


class SecondListener(NotificationHandler[Notification]):
    async def handle(self, notification: Notification) -> None:
        PINGED.append("second")


async def test_several_modules_merge_their_handlers_in_module_order(sample: list[str]) -> None:
    """Handlers from several MediatorModules in one Injector are all registered, in module order."""
    from sample_handlers.messages import RegisterUser, UserRegistered

    PINGED.clear()
    injector = Injector(
        [
            MediatorModule([SecondListener]),
            MediatorModule([PingHandler, FirstListener]),
            MediatorModule(packages=[SAMPLE]),
        ]
    )
    mediator = injector.get(Mediator)

    assert await mediator.send(Ping()) == "pong"
    assert await mediator.send(RegisterUser(email="x@y.z")) == "user:x@y.z"
    await mediator.publish(Pinged())
    await mediator.publish(UserRegistered(email="x@y.z"))

    assert PINGED == ["second", "first", "second"]
    assert sample[-1] == "welcome x@y.z"
    assert set(mediator.request_types) >= {Ping, RegisterUser}
    assert mediator.handler_for(Ping) is PingHandler
    assert mediator.handler_for(Pinged) is None


def test_an_empty_module_gives_a_mediator_without_handlers() -> None:
    """MediatorModule() alone binds a Mediator that handles nothing yet."""
    mediator = Injector([MediatorModule()]).get(Mediator)

    assert mediator.request_types == ()
