"""Handlers are built by the injector at dispatch: constructor injection, scopes and providers work as usual."""

from __future__ import annotations

from typing import Any

import pytest
from injector import Binder, Inject, Injector, Module, inject, provider, singleton

import mediator.mediator as mediator_module
from mediator import Command, CommandHandler, Mediator, MediatorModule, Notification, NotificationHandler


class UserRepository:
    def __init__(self) -> None:
        self.users: list[str] = []

    def add(self, email: str) -> int:
        self.users.append(email)
        return len(self.users)


class InMemoryUserRepository(UserRepository):
    pass


class CreateUser(Command[int]):
    email: str


class CreateUserHandler(CommandHandler[CreateUser, int]):
    @inject
    def __init__(self, repo: UserRepository) -> None:
        self.repo = repo

    async def handle(self, command: CreateUser) -> int:
        return self.repo.add(command.email)


class WhoHandles(Command[int]):
    """Returns the id() of the handler instance that handled it."""


class WhoHandlesHandler(CommandHandler[WhoHandles, int]):
    async def handle(self, command: WhoHandles) -> int:
        return id(self)


class Counter:
    instances = 0

    def __init__(self) -> None:
        type(self).instances += 1


class UsesCounter(Command[int]):
    pass


class UsesCounterHandler(CommandHandler[UsesCounter, int]):
    @inject
    def __init__(self, counter: Counter) -> None:
        self.counter = counter

    async def handle(self, command: UsesCounter) -> int:
        return id(self.counter)


async def test_constructor_dependencies_come_from_the_injector() -> None:
    """An @inject __init__ gets the implementation bound in the user's module."""
    repo = InMemoryUserRepository()

    class Bindings(Module):
        def configure(self, binder: Binder) -> None:
            binder.bind(UserRepository, to=repo)

    mediator = Injector([Bindings(), MediatorModule([CreateUserHandler])]).get(Mediator)

    assert await mediator.send(CreateUser(email="a@b.c")) == 1
    assert await mediator.send(CreateUser(email="d@e.f")) == 2
    assert repo.users == ["a@b.c", "d@e.f"]


async def test_a_dependency_bound_to_a_class_in_singleton_scope_is_shared() -> None:
    """binder.bind(Interface, to=Implementation, scope=singleton) gives every handler the same instance."""

    class Bindings(Module):
        def configure(self, binder: Binder) -> None:
            binder.bind(UserRepository, to=InMemoryUserRepository, scope=singleton)

    injector = Injector([Bindings(), MediatorModule([CreateUserHandler])])
    mediator = injector.get(Mediator)

    await mediator.send(CreateUser(email="a@b.c"))
    assert await mediator.send(CreateUser(email="d@e.f")) == 2
    repo = injector.get(UserRepository)
    assert isinstance(repo, InMemoryUserRepository)
    assert repo.users == ["a@b.c", "d@e.f"]


async def test_an_unscoped_dependency_is_built_fresh_with_each_handler() -> None:
    """Without a scope, the dependency is a new instance per dispatch, as injector.get would give."""
    mediator = Injector([MediatorModule([CreateUserHandler])]).get(Mediator)

    assert await mediator.send(CreateUser(email="a@b.c")) == 1
    assert await mediator.send(CreateUser(email="a@b.c")) == 1


async def test_an_unscoped_handler_is_built_fresh_per_send() -> None:
    """A handler without scope is a new instance for every dispatch."""
    handlers: list[CommandHandler[WhoHandles, int]] = []

    class KeepsInstances(CommandHandler[WhoHandles, int]):  # kept alive, so no id is reused
        async def handle(self, command: WhoHandles) -> int:
            handlers.append(self)
            return id(self)

    mediator = Injector([MediatorModule([KeepsInstances])]).get(Mediator)

    ids = [await mediator.send(WhoHandles()) for _ in range(3)]

    assert len(set(ids)) == 3
    assert [id(h) for h in handlers] == ids


async def test_an_explicit_singleton_binding_of_a_handler_is_honoured() -> None:
    """binder.bind(Handler, scope=singleton): every send goes to the one instance the injector holds."""

    class Bindings(Module):
        def configure(self, binder: Binder) -> None:
            binder.bind(WhoHandlesHandler, scope=singleton)

    injector = Injector([Bindings(), MediatorModule([WhoHandlesHandler])])
    mediator = injector.get(Mediator)

    ids = {await mediator.send(WhoHandles()) for _ in range(3)}

    assert ids == {id(injector.get(WhoHandlesHandler))}


async def test_a_singleton_decorated_handler_class_is_one_instance() -> None:
    """A handler class decorated with @singleton is built once."""

    @singleton
    class OnceHandler(CommandHandler[WhoHandles, int]):
        async def handle(self, command: WhoHandles) -> int:
            return id(self)

    injector = Injector([MediatorModule([OnceHandler])])
    mediator = injector.get(Mediator)

    ids = {await mediator.send(WhoHandles()) for _ in range(3)}

    assert ids == {id(injector.get(OnceHandler))}


async def test_a_dependency_from_a_provider_method_is_provided_per_dispatch() -> None:
    """A @provider method of a Module supplies the dependency; unscoped, it is called for each dispatch."""
    Counter.instances = 0

    class Providers(Module):
        @provider
        def counter(self) -> Counter:
            return Counter()

    mediator = Injector([Providers(), MediatorModule([UsesCounterHandler])]).get(Mediator)

    for _ in range(3):
        await mediator.send(UsesCounter())

    assert Counter.instances == 3


async def test_a_singleton_provider_method_is_called_once() -> None:
    """A @singleton @provider method is called once; every handler gets its value."""
    Counter.instances = 0

    class Providers(Module):
        @singleton
        @provider
        def counter(self) -> Counter:
            return Counter()

    injector = Injector([Providers(), MediatorModule([UsesCounterHandler])])
    mediator = injector.get(Mediator)

    ids = {await mediator.send(UsesCounter()) for _ in range(3)}

    assert Counter.instances == 1
    assert ids == {id(injector.get(Counter))}


async def test_a_handler_built_by_a_provider_method_is_used() -> None:
    """A handler bound through a @provider method is built by that provider at every dispatch."""
    built: list[CreateUserHandler] = []

    class Providers(Module):
        @provider
        def handler(self) -> CreateUserHandler:
            handler = CreateUserHandler(InMemoryUserRepository())
            built.append(handler)
            return handler

    mediator = Injector([Providers(), MediatorModule([CreateUserHandler])]).get(Mediator)

    await mediator.send(CreateUser(email="a@b.c"))
    await mediator.send(CreateUser(email="a@b.c"))

    assert len(built) == 2
    assert all(isinstance(h.repo, InMemoryUserRepository) for h in built)


class Settings:
    def __init__(self, greeting: str = "hello") -> None:
        self.greeting = greeting


class Greeter:
    @inject
    def __init__(self, settings: Settings) -> None:
        self.settings = settings


class Greet(Command[str]):
    name: str


class GreetHandler(CommandHandler[Greet, str]):
    def __init__(self, greeter: Inject[Greeter]) -> None:
        self.greeter = greeter

    def handle(self, command: Greet) -> str:
        return f"{self.greeter.settings.greeting} {command.name}"


async def test_nested_dependencies_and_inject_annotations_are_resolved() -> None:
    """Dependencies of dependencies are injected too, with Inject[...] annotations as well as @inject."""

    class Bindings(Module):
        def configure(self, binder: Binder) -> None:
            binder.bind(Settings, to=Settings("bonjour"))

    mediator = Injector([Bindings(), MediatorModule([GreetHandler])]).get(Mediator)

    assert await mediator.send(Greet(name="Ada")) == "bonjour Ada"


class Seen(Notification):
    pass


class RecordsRepository(NotificationHandler[Seen]):
    @inject
    def __init__(self, repo: UserRepository) -> None:
        self.repo = repo

    async def handle(self, notification: Seen) -> None:
        self.repo.add("seen")


async def test_notification_handlers_are_built_by_the_injector_too() -> None:
    """A notification handler's constructor dependencies come from the injector."""
    repo = UserRepository()

    class Bindings(Module):
        def configure(self, binder: Binder) -> None:
            binder.bind(UserRepository, to=repo)

    mediator = Injector([Bindings(), MediatorModule([RecordsRepository])]).get(Mediator)

    await mediator.publish(Seen())
    await mediator.publish(Seen())

    assert repo.users == ["seen", "seen"]


# -- dispatch is cached per message type ------------------------------------------------------------------------


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> list[type]:
    """Records every class the mediator compiles a factory for (handlers and behaviors)."""
    calls: list[type] = []
    original = mediator_module.compile_factory

    def counting(injector: Injector, interface: type[Any]) -> Any:
        calls.append(interface)
        return original(injector, interface)

    monkeypatch.setattr(mediator_module, "compile_factory", counting)
    return calls


async def test_a_send_plan_is_built_once_per_message_type(compiled: list[type]) -> None:
    """Resolving the handler happens at the first send of a type only; later sends reuse the cached plan."""
    mediator = Injector([MediatorModule([WhoHandlesHandler, CreateUserHandler])]).get(Mediator)

    for _ in range(5):
        await mediator.send(WhoHandles())
    await mediator.send(CreateUser(email="a@b.c"))
    await mediator.send(CreateUser(email="a@b.c"))

    assert compiled == [WhoHandlesHandler, CreateUserHandler]


async def test_a_publish_plan_is_built_once_per_notification_type(compiled: list[type]) -> None:
    """The handlers of a notification type are worked out at its first publish only."""
    mediator = Injector([MediatorModule([RecordsRepository])]).get(Mediator)

    for _ in range(3):
        await mediator.publish(Seen())

    assert compiled == [RecordsRepository]


async def test_clear_cache_rebuilds_plans(compiled: list[type]) -> None:
    """After Mediator.clear_cache() the next dispatch of a type builds its plan again."""
    mediator = Injector([MediatorModule([WhoHandlesHandler])]).get(Mediator)

    await mediator.send(WhoHandles())
    mediator.clear_cache()
    await mediator.send(WhoHandles())
    await mediator.send(WhoHandles())

    assert compiled == [WhoHandlesHandler, WhoHandlesHandler]


async def test_clear_cache_picks_up_a_binding_added_after_the_first_dispatch() -> None:
    """Bindings are read when a type's plan is built; clear_cache() makes a later binding count."""
    injector = Injector([MediatorModule([WhoHandlesHandler])])
    mediator = injector.get(Mediator)
    await mediator.send(WhoHandles())

    injector.binder.bind(WhoHandlesHandler, scope=singleton)
    mediator.clear_cache()
    ids = {await mediator.send(WhoHandles()) for _ in range(3)}
    assert ids == {id(injector.get(WhoHandlesHandler))}
