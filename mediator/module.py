"""``MediatorModule``: registers handlers and behaviors with an ``injector.Injector``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from injector import Binder, Injector, Module, inject, singleton

from ._registry import BehaviorRegistration, HandlerRegistration, check_unique, scan_packages
from .mediator import Mediator

__all__ = ["MediatorModule"]


# Multibinding keys: every module's registrations, in module order (the element types are private).
_HandlerRegistrations = list[HandlerRegistration]
_BehaviorRegistrations = list[BehaviorRegistration]


class MediatorModule(Module):
    """Registers handlers and pipeline behaviors, and binds ``Mediator`` as a singleton.

    Args:
        handlers: handler classes, registered in this order.
        packages: dotted names of packages whose concrete handler classes are registered too
            (sub-packages included), after ``handlers``.
        behaviors: ``PipelineBehavior`` classes, outermost first.

    Several ``MediatorModule`` in one ``Injector`` merge: their handlers and behaviors are registered in the
    order the modules are given. Invalid classes raise ``InvalidHandlerError`` here; a handler registered twice,
    or two handlers for one command or query, raise ``DuplicateHandlerError`` here or, across modules, when the
    injector builds the ``Mediator``.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        handlers: Iterable[type] = (),
        *,
        packages: Iterable[str] = (),
        behaviors: Iterable[type] = (),
    ) -> None:
        if isinstance(packages, str):
            packages = [packages]
        classes = [*handlers, *scan_packages(packages)]
        self.handlers: Sequence[HandlerRegistration] = tuple(HandlerRegistration.of(c) for c in classes)
        self.behaviors: Sequence[BehaviorRegistration] = tuple(BehaviorRegistration.of(b) for b in behaviors)
        check_unique(self.handlers)

    def configure(self, binder: Binder) -> None:
        binder.multibind(_HandlerRegistrations, to=list(self.handlers))
        binder.multibind(_BehaviorRegistrations, to=list(self.behaviors))
        binder.bind(Mediator, to=_build_mediator, scope=singleton)


@inject
def _build_mediator(injector: Injector) -> Mediator:
    return Mediator(
        injector,
        injector.get(_HandlerRegistrations),
        injector.get(_BehaviorRegistrations),
    )
