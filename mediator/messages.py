"""Message bases: commands change state, queries read it, notifications tell that something happened.

Messages are frozen pydantic v2 models, so they validate at construction and can be serialized for scheduling.
``Command[R]`` and ``Query[R]`` carry their result type ``R``, which ``Mediator.send()`` returns; a bare
``Command`` has the result type ``None``.
"""

from __future__ import annotations

from typing import Generic

from pydantic import BaseModel, ConfigDict
from typing_extensions import TypeVar

__all__ = ["Command", "Message", "Notification", "Query", "Request"]

#: The result type of a command or query; ``None`` when the message is not parametrized.
R = TypeVar("R", default=None, covariant=True)


class Message(BaseModel):
    """Base of every message: a frozen pydantic model.

    .. versionadded:: 0.1
    """

    model_config = ConfigDict(frozen=True)


class Request(Message, Generic[R]):
    """A message with exactly one handler and a result of type ``R`` (a command or a query)."""


class Command(Request[R], Generic[R]):
    """A request to change state, handled by exactly one ``CommandHandler``.

    ``class CreateUser(Command[int])`` returns an ``int``; ``Command`` or ``Command[None]`` returns nothing.

    .. versionadded:: 0.1
    """


class Query(Request[R], Generic[R]):
    """A request to read state, handled by exactly one ``QueryHandler``.

    .. versionadded:: 0.1
    """


class Notification(Message):
    """Something that happened; published to every handler of its class or of a base class.

    .. versionadded:: 0.1
    """
