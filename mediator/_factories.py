"""Compiled providers: build a class the injector way without going through ``Injector.get`` on every call.

``Injector.get`` takes a lock, looks up the binding and its scope and inspects the constructor on every call (about
26 µs here). The mediator resolves each handler's binding once and keeps a factory: the instance itself for a
singleton, ``cls(**deps)`` with compiled dependency factories for an unscoped class, and ``Injector.get`` for
anything else (custom providers and scopes), so the injector's semantics are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from injector import (
    ClassProvider,
    Injector,
    InstanceProvider,
    NoScope,
    ScopeDecorator,
    SingletonScope,
    get_bindings,
)

__all__ = ["Constant", "compile_factory"]

T = TypeVar("T")

#: Past this depth of unscoped dependencies, fall back to the injector (it also detects cycles).
_MAX_DEPTH = 12


def compile_factory(injector: Injector, interface: type[T], _depth: int = 0) -> Callable[[], T]:
    """A zero-argument callable that returns what ``injector.get(interface)`` would."""
    binding, _ = injector.binder.get_binding(interface)
    scope: Any = binding.scope
    if isinstance(scope, ScopeDecorator):
        scope = scope.scope
    provider = binding.provider
    if isinstance(scope, type) and issubclass(scope, SingletonScope):
        return _constant(injector.get(interface))
    if scope is NoScope and _depth < _MAX_DEPTH:
        if isinstance(provider, InstanceProvider):
            return _constant(provider.get(injector))
        cls = getattr(provider, "_cls", None)
        if type(provider) is ClassProvider and isinstance(cls, type):
            return _compile_class(injector, cls, _depth)
    return lambda: injector.get(interface)


class Constant:
    """The factory of a singleton or bound instance: always the same ``value``."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __call__(self) -> Any:
        return self.value


def _constant(value: T) -> Callable[[], T]:
    return Constant(value)


def _compile_class(injector: Injector, cls: type[T], depth: int) -> Callable[[], T]:
    dependencies = get_bindings(cls.__init__)
    if not dependencies:
        return cls
    factories: list[tuple[str, Callable[[], Any]]] = [
        (name, compile_factory(injector, dep, depth + 1)) for name, dep in dependencies.items()
    ]
    return lambda: cls(**{name: factory() for name, factory in factories})
