"""An abstract, generic handler base: scanning must skip it."""

from abc import abstractmethod
from typing import Any, Generic, TypeVar

from mediator import Command, CommandHandler

C = TypeVar("C", bound=Command[Any])
R = TypeVar("R")


class AuditedCommandHandler(CommandHandler[C, R], Generic[C, R]):
    """Records every command it handles, then calls ``run``."""

    async def handle(self, command: C) -> R:
        from .messages import EVENTS

        EVENTS.append(f"audit {type(command).__name__}")
        return await self.run(command)

    @abstractmethod
    async def run(self, command: C) -> R:
        """Do the work."""
