"""The mediator: sends commands and queries to their one handler, publishes notifications to all of theirs."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from injector import Injector

from ._factories import Constant, compile_factory
from ._registry import BehaviorRegistration, HandlerKind, HandlerRegistration, check_unique
from .errors import HandlerNotFoundError, InvalidMessageError
from .messages import Command, Notification, Query, Request

__all__ = ["Mediator"]

logger = logging.getLogger(__name__)

R = TypeVar("R")

_SendPlan = Callable[[Any], Awaitable[Any]]
_PublishPlan = tuple[tuple[Callable[[], Any], bool], ...]


class Mediator:
    """Dispatches messages to handlers built by the injector.

    Get it from an injector configured with one or more ``MediatorModule``: ``injector.get(Mediator)``.
    The first ``send()``/``publish()`` of a message type works out its handlers and pipeline and caches them, so
    later dispatches of that type do no lookup beyond one dictionary access.

    .. versionadded:: 0.1
    """

    def __init__(
        self,
        injector: Injector,
        handlers: Sequence[HandlerRegistration],
        behaviors: Sequence[BehaviorRegistration] = (),
    ) -> None:
        check_unique(handlers)
        self._injector = injector
        self._handlers = tuple(handlers)
        self._behaviors = tuple(behaviors)
        self._request_handlers: dict[type, HandlerRegistration] = {
            r.message_type: r for r in self._handlers if r.kind is not HandlerKind.NOTIFICATION
        }
        self._send_plans: dict[type, _SendPlan] = {}
        self._publish_plans: dict[type, _PublishPlan] = {}

    @property
    def request_types(self) -> tuple[type[Request[Any]], ...]:
        """Every command and query type that has a handler, in registration order."""
        return tuple(cast("type[Request[Any]]", t) for t in self._request_handlers)

    def handler_for(self, message_type: type) -> type | None:
        """The handler class registered for a command or query type, or ``None``."""
        registration = self._request_handlers.get(message_type)
        return registration.handler if registration else None

    async def send(self, message: Request[R]) -> R:
        """Handle a command or query with its one handler, through the pipeline behaviors; return its result.

        Raises:
            HandlerNotFoundError: no handler is registered for ``type(message)``.
            InvalidMessageError: ``message`` is not a ``Command`` or ``Query``.
        """
        try:
            plan = self._send_plans[type(message)]
        except KeyError:
            plan = self._build_send_plan(message)
        return cast(R, await plan(message))

    async def publish(self, notification: Notification) -> None:
        """Call every handler of the notification's class and base classes, in registration order.

        Every handler runs even when one fails; failures are raised together afterwards as one
        ``ExceptionGroup``. A notification without handlers is not an error.
        """
        try:
            plan = self._publish_plans[type(notification)]
        except KeyError:
            plan = self._build_publish_plan(notification)
        errors: list[Exception] | None = None
        for factory, is_async in plan:
            try:
                if is_async:
                    await factory().handle(notification)
                else:
                    await _in_thread(factory().handle, notification)
            except Exception as exc:  # noqa: BLE001 - collected and re-raised as a group
                if errors is None:
                    errors = []
                errors.append(exc)
        if errors:
            raise ExceptionGroup(
                f"{len(errors)} of {len(plan)} handler(s) of {type(notification).__qualname__} failed", errors
            )

    def clear_cache(self) -> None:
        """Forget every cached dispatch plan (for example after a behavior's ``applies_to`` answer changed)."""
        self._send_plans.clear()
        self._publish_plans.clear()

    # -- building plans (once per message type) -------------------------------------------------------------

    def _build_send_plan(self, message: object) -> _SendPlan:
        message_type = type(message)
        if not isinstance(message, (Command, Query)):
            raise InvalidMessageError(message, "a Command or Query instance (use publish() for notifications)")
        registration = self._request_handlers.get(message_type)
        if registration is None:
            raise HandlerNotFoundError(message_type)
        handler_factory: Callable[[], Any] = compile_factory(self._injector, registration.handler)
        plan: _SendPlan
        if registration.is_async:
            plan = _async_handler_call(handler_factory)
        else:
            plan = _threaded_handler_call(handler_factory)
        behaviors = [
            b.behavior
            for b in self._behaviors
            if issubclass(message_type, b.message_type) and b.behavior.applies_to(message_type)
        ]
        for behavior in reversed(behaviors):
            plan = _wrap(compile_factory(self._injector, behavior), plan)
        self._send_plans[message_type] = plan
        return plan

    def has_subscribers(self, notification_type: type[Notification]) -> bool:
        """Whether ``publish()`` of this notification type would call any handler (cached per type).

        Lets a publisher skip building a notification that nobody receives.
        """
        plan = self._publish_plans.get(notification_type)
        if plan is None:
            plan = self._build_publish_plan_for(notification_type)
        return bool(plan)

    def _build_publish_plan(self, notification: object) -> _PublishPlan:
        if not isinstance(notification, Notification):
            raise InvalidMessageError(notification, "a Notification instance (use send() for commands and queries)")
        return self._build_publish_plan_for(type(notification))

    def _build_publish_plan_for(self, message_type: type[Notification]) -> _PublishPlan:
        plan: _PublishPlan = tuple(
            (compile_factory(self._injector, r.handler), r.is_async)
            for r in self._handlers
            if r.kind is HandlerKind.NOTIFICATION and issubclass(message_type, r.message_type)
        )
        self._publish_plans[message_type] = plan
        return plan


def _async_handler_call(factory: Callable[[], Any]) -> _SendPlan:
    if isinstance(factory, Constant):
        # A singleton handler: the plan is its bound method, so a send costs one dict lookup and one await.
        return cast(_SendPlan, factory.value.handle)

    async def call(message: Any) -> Any:
        return await factory().handle(message)

    return call


def _threaded_handler_call(factory: Callable[[], Any]) -> _SendPlan:
    async def call(message: Any) -> Any:
        return await _in_thread(factory().handle, message)

    return call


async def _in_thread(handle: Callable[[Any], Any], message: Any) -> Any:
    """Run a plain ``def handle`` in a worker thread, never on the loop, in a copy of the caller's context.

    A thread cannot be interrupted, so a cancelled call (a timeout, a shutdown) does not return while the thread
    still runs: it waits for the thread to return, through further cancellations too, then raises the
    ``CancelledError`` and drops the thread's outcome. Whoever cancelled it therefore knows, when the cancellation
    arrives, that the handler is no longer running (a retry cannot start beside it).

    ``handle`` is typed ``R | Awaitable[R]``, so a plain ``def`` may return an awaitable (a decorator returning the
    wrapped coroutine, say): it is awaited here, on the loop, rather than handed to the caller un-awaited.
    """
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    running = loop.run_in_executor(None, functools.partial(context.run, handle, message))
    try:
        result = await asyncio.shield(running)
    except asyncio.CancelledError:
        await _until_returned(running)
        raise
    if inspect.isawaitable(result):
        result = await result
    return result


async def _until_returned(running: asyncio.Future[Any]) -> None:
    """Wait until a handler's thread has returned, whatever cancellations arrive meanwhile; drop its outcome."""
    while not running.done():
        try:
            await asyncio.wait((running,))
        except asyncio.CancelledError:  # raised to the caller once the thread is back
            continue
    if running.cancelled() or running.exception() is not None:  # retrieved: never "exception was never retrieved"
        return
    result = running.result()
    if inspect.iscoroutine(result):  # never awaited, and never "coroutine was never awaited"
        result.close()


def _wrap(behavior_factory: Callable[[], Any], inner: _SendPlan) -> _SendPlan:
    async def call(message: Any) -> Any:
        return await behavior_factory().handle(message, lambda: inner(message))

    return call
