"""An application as a newcomer writes it: ``SchedulingModule()`` names no store, and a start-up hook declares the
recurring schedules, so the same factory serves a producer and ``cqrs-scheduling worker --app first_hour_app:build``.

Each executed command appends a line to the file named by ``FIRST_HOUR_OUT``.
"""

from __future__ import annotations

import os

from injector import Injector

from mediator import Command, CommandHandler, MediatorModule
from scheduling import CommandScheduler, SchedulingModule


class Greet(Command[None]):
    name: str


class GreetHandler(CommandHandler[Greet, None]):
    def handle(self, command: Greet) -> None:  # plain def: runs in a thread, so it may block on the file
        with open(os.environ["FIRST_HOUR_OUT"], "a", encoding="utf-8") as out:
            out.write(f"{command.name}\n")


async def declare_schedules(scheduler: CommandScheduler) -> None:
    """Every worker declares its recurring schedules at start-up; an unchanged declaration changes nothing."""
    await scheduler.schedule_recurring("every-second-greeting", Greet(name="tick"), cron="* * * * * *")


def build() -> Injector:
    return Injector([MediatorModule(handlers=[GreetHandler]), SchedulingModule()])


def build_with_schedules() -> Injector:
    return Injector([MediatorModule(handlers=[GreetHandler]), SchedulingModule(on_start=[declare_schedules])])
