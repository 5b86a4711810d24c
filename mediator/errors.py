"""Errors raised by the mediator.

Hierarchy::

    MediatorError
    ├── HandlerNotFoundError      send() of a type nobody handles
    ├── DuplicateHandlerError     two handlers for one command/query, or one handler twice
    ├── InvalidHandlerError       a handler class that cannot be registered (also a TypeError)
    └── InvalidMessageError       send()/publish() of something that is not a message (also a TypeError)
"""

from __future__ import annotations

__all__ = [
    "DuplicateHandlerError",
    "HandlerNotFoundError",
    "InvalidHandlerError",
    "InvalidMessageError",
    "MediatorError",
]


def _name(tp: object) -> str:
    return tp.__qualname__ if isinstance(tp, type) else repr(tp)


class MediatorError(Exception):
    """Base class of every error the mediator raises."""


class HandlerNotFoundError(MediatorError):
    """No handler is registered for a command or query type.

    Raised by ``Mediator.send()`` (and by ``CommandScheduler.schedule()``). Fix it by listing the handler in
    ``MediatorModule(handlers=[...])`` or by scanning its package with ``MediatorModule(packages=[...])``.
    """

    def __init__(self, message_type: type) -> None:
        self.message_type = message_type
        super().__init__(message_type)

    def __str__(self) -> str:
        return (
            f"no handler is registered for {_name(self.message_type)} "
            f"({self.message_type.__module__}.{self.message_type.__qualname__}); "
            "register one with MediatorModule(handlers=[...]) or MediatorModule(packages=[...])"
        )


class DuplicateHandlerError(MediatorError):
    """A command or query type has two handlers, or one handler class is registered twice.

    A command or query has exactly one handler; remove one of the two registrations named in the message.
    """

    def __init__(self, message_type: type, first: type, second: type) -> None:
        self.message_type = message_type
        self.first = first
        self.second = second
        super().__init__(message_type, first, second)

    def __str__(self) -> str:
        if self.first is self.second:
            return f"handler {_name(self.first)} for {_name(self.message_type)} is registered twice"
        return (
            f"{_name(self.message_type)} has two handlers: {_name(self.first)} and {_name(self.second)}; "
            "a command or query has exactly one"
        )


class InvalidHandlerError(MediatorError, TypeError):
    """A class given as a handler or behavior cannot be used; the message says why.

    Raised at registration (``MediatorModule(...)``), never at first dispatch.
    """

    def __init__(self, handler: object, reason: str) -> None:
        self.handler = handler
        self.reason = reason
        super().__init__(handler, reason)

    def __str__(self) -> str:
        return f"{_name(self.handler)} cannot be registered: {self.reason}"


class InvalidMessageError(MediatorError, TypeError):
    """``send()`` or ``publish()`` was given an object of the wrong kind."""

    def __init__(self, message: object, expected: str) -> None:
        self.message = message
        self.expected = expected
        super().__init__(message, expected)

    def __str__(self) -> str:
        return f"expected {self.expected}, got {type(self.message).__qualname__}: {self.message!r:.200}"
