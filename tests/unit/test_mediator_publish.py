"""``Mediator.publish()``: every handler of the class and its bases, in order, all run, failures grouped."""

from __future__ import annotations

import asyncio
import threading
from typing import ClassVar

import pytest
from injector import Injector

from mediator import Mediator, MediatorModule, Notification, NotificationHandler
from mediator.errors import InvalidMessageError


class UserEvent(Notification):
    user_id: int


class UserCreated(UserEvent):
    pass


class UserDeleted(UserEvent):
    pass


class Unrelated(Notification):
    pass


CALLS: list[str] = []


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLS.clear()


class AuditAll(NotificationHandler[Notification]):
    async def handle(self, notification: Notification) -> None:
        CALLS.append(f"audit {type(notification).__name__}")


class OnUserEvent(NotificationHandler[UserEvent]):
    async def handle(self, notification: UserEvent) -> None:
        CALLS.append(f"user-event {type(notification).__name__}")


class OnUserCreated(NotificationHandler[UserCreated]):
    def handle(self, notification: UserCreated) -> None:
        CALLS.append(f"created {notification.user_id}")


class FailsWithValueError(NotificationHandler[UserCreated]):
    async def handle(self, notification: UserCreated) -> None:
        CALLS.append("fails-value")
        raise ValueError("bad user")


class FailsWithKeyError(NotificationHandler[UserEvent]):
    def handle(self, notification: UserEvent) -> None:
        CALLS.append("fails-key")
        raise KeyError("missing")


def make_mediator(*handlers: type) -> Mediator:
    return Injector([MediatorModule(list(handlers))]).get(Mediator)


async def test_publish_reaches_handlers_of_the_class_and_every_base_in_registration_order() -> None:
    """Handlers of the notification's class and of its bases all run, in the order they were registered."""
    mediator = make_mediator(OnUserCreated, AuditAll, OnUserEvent)

    await mediator.publish(UserCreated(user_id=7))

    assert CALLS == ["created 7", "audit UserCreated", "user-event UserCreated"]


async def test_a_handler_of_notification_gets_every_notification() -> None:
    """NotificationHandler[Notification] receives every notification; others only their own classes."""
    mediator = make_mediator(AuditAll, OnUserCreated)

    await mediator.publish(Unrelated())
    await mediator.publish(UserDeleted(user_id=1))
    await mediator.publish(UserCreated(user_id=2))

    assert CALLS == ["audit Unrelated", "audit UserDeleted", "audit UserCreated", "created 2"]


async def test_a_handler_of_a_subclass_does_not_get_the_base() -> None:
    """A handler of UserCreated is not called for a plain UserEvent or a sibling class."""
    mediator = make_mediator(OnUserCreated)

    await mediator.publish(UserEvent(user_id=1))
    await mediator.publish(UserDeleted(user_id=1))

    assert CALLS == []


async def test_publish_without_handlers_is_fine() -> None:
    """Publishing a notification nobody handles does nothing and raises nothing."""
    mediator = make_mediator()

    await mediator.publish(Unrelated())

    assert CALLS == []


async def test_every_handler_runs_and_failures_are_raised_as_one_exception_group() -> None:
    """Every handler runs even when some fail; all failures come back in one ExceptionGroup, in order."""
    mediator = make_mediator(FailsWithValueError, AuditAll, FailsWithKeyError, OnUserCreated)

    with pytest.raises(ExceptionGroup) as caught:
        await mediator.publish(UserCreated(user_id=3))

    assert CALLS == ["fails-value", "audit UserCreated", "fails-key", "created 3"]
    group = caught.value
    assert [type(e) for e in group.exceptions] == [ValueError, KeyError]
    assert str(group.exceptions[0]) == "bad user"
    assert "2 of 4 handler(s) of UserCreated failed" in str(group)


async def test_a_single_failure_is_raised_as_a_group_too() -> None:
    """One failing handler still raises an ExceptionGroup, so callers handle one shape."""
    mediator = make_mediator(AuditAll, FailsWithValueError)

    with pytest.raises(ExceptionGroup) as caught:
        await mediator.publish(UserCreated(user_id=3))

    assert caught.value.subgroup(ValueError) is not None
    assert len(caught.value.exceptions) == 1


class RecordsThread(NotificationHandler[Unrelated]):
    seen: ClassVar[list[tuple[int, bool]]] = []

    def handle(self, notification: Unrelated) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self.seen.append((threading.get_ident(), False))
        else:
            self.seen.append((threading.get_ident(), True))


async def test_a_sync_notification_handler_runs_in_a_worker_thread() -> None:
    """A plain ``def handle`` of a notification handler runs off the event loop thread."""
    RecordsThread.seen.clear()
    mediator = make_mediator(RecordsThread)

    await mediator.publish(Unrelated())

    assert len(RecordsThread.seen) == 1
    thread_id, loop_running = RecordsThread.seen[0]
    assert thread_id != threading.get_ident()
    assert loop_running is False


async def test_publish_of_a_non_notification_raises_invalid_message_error() -> None:
    """publish() of a non-notification raises InvalidMessageError naming its type."""
    mediator = make_mediator(AuditAll)

    with pytest.raises(InvalidMessageError, match="str"):
        await mediator.publish("UserCreated")  # type: ignore[arg-type]


def test_has_subscribers_reflects_handlers_of_the_type_and_its_bases() -> None:
    """has_subscribers is True when publish() would call a handler of the type or of a base class."""
    only_created = Injector([MediatorModule([OnUserCreated])]).get(Mediator)
    assert only_created.has_subscribers(UserCreated) is True
    assert only_created.has_subscribers(UserDeleted) is False
    assert only_created.has_subscribers(Unrelated) is False
    audit = Injector([MediatorModule([AuditAll])]).get(Mediator)
    assert audit.has_subscribers(Unrelated) is True
