"""Registration: validates handler and behavior classes once, when they are registered.

Everything the mediator needs to know about a class (which message it handles, whether ``handle`` is async) is
worked out here, so dispatch does no reflection.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar, get_args, get_origin

from .behaviors import PipelineBehavior
from .errors import DuplicateHandlerError, InvalidHandlerError
from .handlers import CommandHandler, NotificationHandler, QueryHandler
from .messages import Command, Message, Notification, Query, Request

__all__ = ["BehaviorRegistration", "HandlerKind", "HandlerRegistration", "scan_packages"]


class HandlerKind(StrEnum):
    COMMAND = "command"
    QUERY = "query"
    NOTIFICATION = "notification"


_HANDLER_BASES: dict[type, tuple[HandlerKind, type[Message]]] = {
    CommandHandler: (HandlerKind.COMMAND, Command),
    QueryHandler: (HandlerKind.QUERY, Query),
    NotificationHandler: (HandlerKind.NOTIFICATION, Notification),
}


@dataclass(frozen=True, slots=True)
class HandlerRegistration:
    """One handler class and what it handles."""

    handler: type
    kind: HandlerKind
    message_type: type[Message]
    is_async: bool

    @classmethod
    def of(cls, handler: object) -> HandlerRegistration:
        if not isinstance(handler, type):
            raise InvalidHandlerError(handler, "a handler is a class, not an instance or a function")
        base = next((b for b in _HANDLER_BASES if issubclass(handler, b)), None)
        if base is None:
            raise InvalidHandlerError(
                handler, "it does not subclass CommandHandler, QueryHandler or NotificationHandler"
            )
        kind, expected = _HANDLER_BASES[base]
        message_type = _generic_argument(handler, base)
        if not (isinstance(message_type, type) and issubclass(message_type, expected)):
            raise InvalidHandlerError(
                handler,
                f"its {base.__name__}[...] argument must be a {expected.__name__} subclass, got {message_type!r}",
            )
        return cls(handler, kind, message_type, _check_handle(handler))


@dataclass(frozen=True, slots=True)
class BehaviorRegistration:
    """One pipeline behavior class and the message types it wraps."""

    behavior: type[PipelineBehavior[Any]]
    message_type: type[Message]

    @classmethod
    def of(cls, behavior: object) -> BehaviorRegistration:
        if not (isinstance(behavior, type) and issubclass(behavior, PipelineBehavior)):
            raise InvalidHandlerError(behavior, "a behavior is a PipelineBehavior subclass")
        if inspect.isabstract(behavior):
            missing = ", ".join(sorted(getattr(behavior, "__abstractmethods__", ())))
            raise InvalidHandlerError(behavior, f"it is abstract (missing: {missing})")
        message_type = _generic_argument(behavior, PipelineBehavior)
        if message_type is None or isinstance(message_type, TypeVar):
            message_type = Request
        if not (isinstance(message_type, type) and issubclass(message_type, Request)):
            raise InvalidHandlerError(
                behavior, f"its PipelineBehavior[...] argument must be a Command or Query type, got {message_type!r}"
            )
        if not inspect.iscoroutinefunction(behavior.handle):
            raise InvalidHandlerError(behavior, "handle(message, next) must be 'async def'")
        _check_arity(behavior, behavior.handle, 2, "handle(self, message, next)")
        return cls(behavior, message_type)


def _check_handle(handler: type) -> bool:
    if inspect.isabstract(handler):
        missing = ", ".join(sorted(getattr(handler, "__abstractmethods__", ())))
        raise InvalidHandlerError(handler, f"it is abstract (missing: {missing})")
    handle = inspect.getattr_static(handler, "handle", None)
    if isinstance(handle, (staticmethod, classmethod)) or not inspect.isfunction(handle):
        raise InvalidHandlerError(handler, "handle must be a plain instance method")
    _check_arity(handler, handle, 1, "handle(self, message)")
    # A decorated ``async def handle`` (functools.wraps around a coroutine function) is awaited on the loop too.
    return inspect.iscoroutinefunction(handle) or inspect.iscoroutinefunction(inspect.unwrap(handle))


def _check_arity(owner: type, function: Any, expected: int, shape: str) -> None:
    try:
        parameters = list(inspect.signature(function).parameters.values())[1:]  # drop self
    except (TypeError, ValueError) as exc:  # pragma: no cover - builtins without a signature
        raise InvalidHandlerError(owner, f"cannot read the signature of handle: {exc}") from exc
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required_other = [p for p in parameters if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    required_positional = [p for p in positional if p.default is p.empty]
    takes_varargs = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    if required_other or len(required_positional) > expected or (len(positional) < expected and not takes_varargs):
        raise InvalidHandlerError(owner, f"its signature must be {shape}, got handle{inspect.signature(function)}")


def _generic_argument(cls: type, base: type) -> Any:
    """The first type argument ``cls`` gives to the generic ``base``, resolving type variables on the way."""
    return _search_bases(cls, base, {})


def _search_bases(cls: type, base: type, bindings: dict[Any, Any]) -> Any:
    for orig in getattr(cls, "__orig_bases__", ()):
        origin = get_origin(orig) or orig
        args = tuple(bindings.get(a, a) if isinstance(a, TypeVar) else a for a in get_args(orig))
        if origin is base:
            return args[0] if args else None
        if isinstance(origin, type) and issubclass(origin, base):
            params = getattr(origin, "__parameters__", ())
            found = _search_bases(origin, base, dict(zip(params, args, strict=False)))
            if found is not None:
                return found
    return None


def scan_packages(packages: Iterable[str]) -> Iterator[type]:
    """Every concrete handler class defined in the given packages and their sub-packages, in a stable order.

    Behaviors are not scanned: their order matters, so they are listed explicitly.
    """
    for package_name in packages:
        package = importlib.import_module(package_name)
        modules = [package]
        if hasattr(package, "__path__"):
            found = sorted(pkgutil.walk_packages(package.__path__, package.__name__ + "."), key=lambda i: i.name)
            modules.extend(importlib.import_module(info.name) for info in found)
        for module in modules:
            for obj in list(vars(module).values()):
                if (
                    isinstance(obj, type)
                    and obj.__module__ == module.__name__
                    and issubclass(obj, tuple(_HANDLER_BASES))
                    and not inspect.isabstract(obj)
                ):
                    yield obj


def check_unique(registrations: Iterable[HandlerRegistration]) -> None:
    """Raise ``DuplicateHandlerError`` for one handler twice, or two handlers of one command/query."""
    seen_handlers: dict[type, HandlerRegistration] = {}
    by_request: dict[type, HandlerRegistration] = {}
    for registration in registrations:
        previous = seen_handlers.get(registration.handler)
        if previous is not None:
            raise DuplicateHandlerError(registration.message_type, previous.handler, registration.handler)
        seen_handlers[registration.handler] = registration
        if registration.kind is not HandlerKind.NOTIFICATION:
            owner = by_request.get(registration.message_type)
            if owner is not None:
                raise DuplicateHandlerError(registration.message_type, owner.handler, registration.handler)
            by_request[registration.message_type] = registration
