"""Type-checked, never run: documented mediator usage must pass ``mypy --strict`` with the inferred types."""

from __future__ import annotations

from typing import Any, assert_type

from injector import Injector, inject

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
from scheduling import CommandScheduler
from scheduling.results import ScheduledCommandId


class UserRepository:
    def add(self, email: str) -> int:
        return 1

    def names(self) -> list[str]:
        return []


class CreateUser(Command[int]):
    email: str


class Ping(Command):
    pass


class ListUserNames(Query[list[str]]):
    prefix: str = ""


class UserCreated(Notification):
    user_id: int


class CreateUserHandler(CommandHandler[CreateUser, int]):
    @inject
    def __init__(self, repo: UserRepository) -> None:
        self.repo = repo

    async def handle(self, command: CreateUser) -> int:
        return self.repo.add(command.email)


class PingHandler(CommandHandler[Ping, None]):
    def handle(self, command: Ping) -> None:  # a sync handler
        return None


class ListUserNamesHandler(QueryHandler[ListUserNames, list[str]]):
    @inject
    def __init__(self, repo: UserRepository) -> None:
        self.repo = repo

    def handle(self, query: ListUserNames) -> list[str]:
        return [n for n in self.repo.names() if n.startswith(query.prefix)]


class AuditAll(NotificationHandler[Notification]):
    async def handle(self, notification: Notification) -> None:
        return None


class TimingBehavior(PipelineBehavior):
    async def handle(self, message: Any, next: Next) -> Any:
        return await next()


class CreateUserOnly(PipelineBehavior[CreateUser]):
    @classmethod
    def applies_to(cls, message_type: type[CreateUser]) -> bool:
        return True

    async def handle(self, message: CreateUser, next: Next) -> Any:
        assert_type(message.email, str)
        return await next()


async def main() -> None:
    injector = Injector(
        [
            MediatorModule(
                handlers=[CreateUserHandler, PingHandler, ListUserNamesHandler, AuditAll],
                behaviors=[TimingBehavior, CreateUserOnly],
            ),
            MediatorModule(packages=["myapp.handlers"]),
        ]
    )
    mediator = injector.get(Mediator)
    assert_type(mediator, Mediator)

    user_id = await mediator.send(CreateUser(email="a@b.c"))
    assert_type(user_id, int)
    assert_type(await mediator.send(CreateUser(email="a@b.c")), int)
    assert_type(await mediator.send(Ping()), None)
    assert_type(await mediator.send(ListUserNames(prefix="a")), list[str])
    assert_type(await mediator.publish(UserCreated(user_id=user_id)), None)

    typed: int = await mediator.send(CreateUser(email="a@b.c"))
    names: list[str] = await mediator.send(ListUserNames())
    del typed, names
    mediator.clear_cache()


async def waiting(scheduler: CommandScheduler, stored_id: str) -> None:
    """``schedule()`` returns an id typed with the command's result, which ``wait()`` and ``result()`` return."""
    command_id = await scheduler.schedule(CreateUser(email="a@b.c"))
    assert_type(command_id, ScheduledCommandId[int])
    assert_type(await scheduler.wait(command_id, timeout=30), int)
    assert_type(await scheduler.wait(await scheduler.schedule(Ping())), None)
    assert_type(await scheduler.result(command_id), int)
    as_text: str = command_id  # still a str for every existing caller
    user_id: int = await scheduler.wait(command_id)
    assert_type(await scheduler.wait(stored_id), object)  # a plain str id: the command type is not known
    del as_text, user_id


async def workflows(scheduler: CommandScheduler) -> None:
    """A group's callback id is typed with the callback's result; a parent's result is typed by ``result_as``."""
    from scheduling import ScheduledGroup, ScheduleOptions

    first = await scheduler.schedule(CreateUser(email="a@b.c"))
    second = await scheduler.schedule(CreateUser(email="d@e.f"), ScheduleOptions(after=first))
    assert_type(second, ScheduledCommandId[int])
    group = await scheduler.schedule_group([Ping(), Ping()], then=CreateUser(email="g@h.i"))
    assert_type(group, ScheduledGroup[int])
    assert_type(await scheduler.wait(group.callback_id), int)
    (parent,) = await scheduler.parent_outcomes(second)
    assert_type(parent.result_as(int), int)
