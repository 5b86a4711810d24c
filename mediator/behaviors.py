"""Pipeline behaviors: middleware around ``Mediator.send()``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Generic

from typing_extensions import TypeVar

from .messages import Request

__all__ = ["Next", "PipelineBehavior"]

M = TypeVar("M", bound=Request[Any], default=Request[Any])

#: Calls the rest of the pipeline (the next behavior, or the handler) and returns its result.
Next = Callable[[], Awaitable[Any]]


class PipelineBehavior(ABC, Generic[M]):
    """Wraps the handling of every command and query of type ``M`` (and subclasses).

    Behaviors run outermost first, in registration order. ``PipelineBehavior`` or
    ``PipelineBehavior[Request]`` wraps every send; ``PipelineBehavior[CreateUser]`` only ``CreateUser`` and its
    subclasses. Behaviors are built by the injector, like handlers.

    .. versionadded:: 0.1
    """

    @classmethod
    def applies_to(cls, message_type: type[M]) -> bool:
        """Whether this behavior takes part in dispatching ``message_type``.

        Asked once per message type, when the mediator builds (and caches) that type's pipeline; a behavior that
        answers ``False`` costs nothing at dispatch. Call ``Mediator.clear_cache()`` when the answer changes.
        """
        return True

    @abstractmethod
    async def handle(self, message: M, next: Next) -> Any:
        """Do something around ``await next()`` and return its result (or another one)."""
