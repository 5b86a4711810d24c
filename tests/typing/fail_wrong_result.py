"""Type-checked, never run: each line marked ``# E: <code>`` must be reported by mypy with that error code."""

from __future__ import annotations

from mediator import Command, Mediator, Notification, Query
from scheduling import CommandScheduler


class CreateUser(Command[int]):
    email: str


class ListUserNames(Query[list[str]]):
    pass


class UserCreated(Notification):
    user_id: int


async def main(mediator: Mediator) -> None:
    wrong: str = await mediator.send(CreateUser(email="a@b.c"))  # E: arg-type
    names: list[int] = await mediator.send(ListUserNames())  # E: arg-type
    await mediator.send(UserCreated(user_id=1))  # E: arg-type
    await mediator.publish(CreateUser(email="a@b.c"))  # E: arg-type
    user_id = await mediator.send(CreateUser(email="a@b.c"))
    as_text: str = user_id  # E: assignment
    del wrong, names, as_text


async def waiting(scheduler: CommandScheduler) -> None:
    command_id = await scheduler.schedule(CreateUser(email="a@b.c"))
    text: str = await scheduler.wait(command_id)  # E: assignment
    other: list[str] = await scheduler.result(command_id)  # E: assignment
    del text, other
