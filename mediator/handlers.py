"""Handler bases. A handler's ``handle`` may be ``async def`` or a plain ``def`` (run in a worker thread)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any, Generic

from typing_extensions import TypeVar

from .messages import Command, Notification, Query

__all__ = ["CommandHandler", "NotificationHandler", "QueryHandler"]

C = TypeVar("C", bound=Command[Any])
Q = TypeVar("Q", bound=Query[Any])
N = TypeVar("N", bound=Notification)
R = TypeVar("R")


class CommandHandler(ABC, Generic[C, R]):
    """Handles one command type: ``class CreateUserHandler(CommandHandler[CreateUser, int])``.

    Built by the injector at dispatch, so ``@inject`` constructor dependencies work as usual.

    .. versionadded:: 0.1
    """

    @abstractmethod
    def handle(self, command: C) -> R | Awaitable[R]:
        """Handle the command and return its result (``async def`` or plain ``def``)."""


class QueryHandler(ABC, Generic[Q, R]):
    """Handles one query type: ``class GetUserHandler(QueryHandler[GetUser, User])``.

    .. versionadded:: 0.1
    """

    @abstractmethod
    def handle(self, query: Q) -> R | Awaitable[R]:
        """Answer the query (``async def`` or plain ``def``)."""


class NotificationHandler(ABC, Generic[N]):
    """Handles a notification class and every subclass of it.

    ``NotificationHandler[Notification]`` receives every notification published.

    .. versionadded:: 0.1
    """

    @abstractmethod
    def handle(self, notification: N) -> Awaitable[None] | None:
        """React to the notification (``async def`` or plain ``def``)."""
