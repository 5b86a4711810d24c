"""``Mediator.send()``: one handler per command or query, its result returned, sync handlers off the loop."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from injector import Injector

from mediator import (
    Command,
    CommandHandler,
    HandlerNotFoundError,
    Mediator,
    MediatorError,
    MediatorModule,
    Notification,
    NotificationHandler,
    Query,
    QueryHandler,
)
from mediator.errors import InvalidMessageError


class CreateUser(Command[int]):
    email: str


class Ping(Command):
    pass


class ListNames(Query[list[str]]):
    prefix: str


class Unhandled(Command[int]):
    pass


class Happened(Notification):
    pass


class CreateUserHandler(CommandHandler[CreateUser, int]):
    async def handle(self, command: CreateUser) -> int:
        return len(command.email)


class PingHandler(CommandHandler[Ping, None]):
    async def handle(self, command: Ping) -> None:
        return None


class ListNamesHandler(QueryHandler[ListNames, list[str]]):
    async def handle(self, query: ListNames) -> list[str]:
        return [f"{query.prefix}{i}" for i in range(3)]


def make_mediator(*handlers: type) -> Mediator:
    return Injector([MediatorModule(list(handlers))]).get(Mediator)


async def test_send_returns_the_handlers_result() -> None:
    """send() awaits the one handler of the command's type and returns what it returned."""
    mediator = make_mediator(CreateUserHandler, ListNamesHandler)

    assert await mediator.send(CreateUser(email="a@b.c")) == 5
    assert await mediator.send(ListNames(prefix="n")) == ["n0", "n1", "n2"]


async def test_send_of_a_bare_command_returns_none() -> None:
    """A bare ``Command`` has no result: send() returns None."""
    mediator = make_mediator(PingHandler)

    assert await mediator.send(Ping()) is None


async def test_the_mediator_is_a_singleton_of_the_injector() -> None:
    """injector.get(Mediator) returns the same mediator every time."""
    injector = Injector([MediatorModule([CreateUserHandler])])

    assert injector.get(Mediator) is injector.get(Mediator)


async def test_send_without_handler_raises_handler_not_found_naming_the_type() -> None:
    """send() of a type without handler raises HandlerNotFoundError, a MediatorError that names the type."""
    mediator = make_mediator(CreateUserHandler)

    with pytest.raises(HandlerNotFoundError, match="Unhandled") as caught:
        await mediator.send(Unhandled())

    assert caught.value.message_type is Unhandled
    assert isinstance(caught.value, MediatorError)
    assert f"{Unhandled.__module__}.Unhandled" in str(caught.value)


async def test_a_handler_of_a_base_command_does_not_handle_its_subclass() -> None:
    """A command or query has exactly one handler, looked up by its exact type."""

    class CreateAdmin(CreateUser):
        pass

    mediator = make_mediator(CreateUserHandler)

    with pytest.raises(HandlerNotFoundError, match="CreateAdmin"):
        await mediator.send(CreateAdmin(email="root@x"))


@pytest.mark.parametrize(
    ("message", "name"),
    [
        pytest.param(42, "int", id="not-a-message"),
        pytest.param({"email": "a@b.c"}, "dict", id="dict"),
        pytest.param(Happened(), "Happened", id="notification"),
    ],
)
async def test_send_of_a_non_request_raises_invalid_message_error(message: object, name: str) -> None:
    """send() of anything but a Command or Query raises InvalidMessageError, a TypeError naming the type."""
    mediator = make_mediator(CreateUserHandler)

    with pytest.raises(InvalidMessageError, match=name) as caught:
        await mediator.send(message)  # type: ignore[arg-type]

    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, MediatorError)
    assert caught.value.message is message


@pytest.mark.parametrize("message", [CreateUser(email="a@b.c"), 3.5], ids=["command", "float"])
async def test_publish_of_a_non_notification_raises_invalid_message_error(message: object) -> None:
    """publish() of a Command (or anything but a Notification) raises InvalidMessageError naming the type."""
    mediator = make_mediator(CreateUserHandler)

    with pytest.raises(InvalidMessageError, match=type(message).__name__) as caught:
        await mediator.publish(message)  # type: ignore[arg-type]

    assert isinstance(caught.value, TypeError)


class Blocking(Command[tuple[int, bool]]):
    pass


class BlockingHandler(CommandHandler[Blocking, tuple[int, bool]]):
    """A plain ``def handle``: reports its thread and whether an event loop runs in it."""

    def handle(self, command: Blocking) -> tuple[int, bool]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return threading.get_ident(), False
        return threading.get_ident(), True


async def test_a_sync_handle_runs_in_a_worker_thread() -> None:
    """A plain ``def handle`` runs in a worker thread: another thread, without a running event loop."""
    mediator = make_mediator(BlockingHandler)

    thread_id, loop_running = await mediator.send(Blocking())

    assert thread_id != threading.get_ident()
    assert loop_running is False


class WaitForLoop(Command[bool]):
    pass


class WaitForLoopHandler(CommandHandler[WaitForLoop, bool]):
    released = threading.Event()

    def handle(self, command: WaitForLoop) -> bool:
        return self.released.wait(timeout=5)


async def test_a_sync_handle_does_not_block_the_loop() -> None:
    """While a blocking handler waits, the event loop keeps running (here: it releases the handler)."""
    WaitForLoopHandler.released.clear()
    mediator = make_mediator(WaitForLoopHandler)

    sending = asyncio.create_task(mediator.send(WaitForLoop()))
    await asyncio.sleep(0.01)
    WaitForLoopHandler.released.set()

    assert await asyncio.wait_for(sending, timeout=5) is True


class HeldInThread(Command[str]):
    pass


class HeldInThreadHandler(CommandHandler[HeldInThread, str]):
    entered = threading.Event()
    released = threading.Event()
    returned = threading.Event()

    def handle(self, command: HeldInThread) -> str:
        self.entered.set()
        try:
            self.released.wait(timeout=10)
            return "late"
        finally:
            self.returned.set()


async def test_a_cancelled_sync_send_returns_only_once_its_thread_has() -> None:
    """A thread cannot be interrupted: cancelling send() (twice, even) raises CancelledError only after the
    handler's thread has returned, so the caller never believes the handler stopped while it still runs."""
    for event in (HeldInThreadHandler.entered, HeldInThreadHandler.released, HeldInThreadHandler.returned):
        event.clear()
    mediator = make_mediator(HeldInThreadHandler)
    sending = asyncio.create_task(mediator.send(HeldInThread()))
    await asyncio.to_thread(HeldInThreadHandler.entered.wait, 5)

    sending.cancel()
    await asyncio.sleep(0.05)
    sending.cancel()
    with pytest.raises(TimeoutError):  # still waiting for the thread, whatever the delay given
        await asyncio.wait_for(asyncio.shield(sending), timeout=0.2)
    assert not HeldInThreadHandler.returned.is_set()

    HeldInThreadHandler.released.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(sending, timeout=5)
    assert HeldInThreadHandler.returned.is_set()


class Failing(Command[int]):
    pass


class FailingHandler(CommandHandler[Failing, int]):
    async def handle(self, command: Failing) -> int:
        raise LookupError("no such user")


class FailingSyncHandler(CommandHandler[Ping, None]):
    def handle(self, command: Ping) -> None:
        raise PermissionError("denied")


async def test_a_handler_exception_propagates_unchanged() -> None:
    """send() raises the handler's own exception, async or sync, not a wrapper."""
    mediator = make_mediator(FailingHandler, FailingSyncHandler)

    with pytest.raises(LookupError, match="no such user"):
        await mediator.send(Failing())
    with pytest.raises(PermissionError, match="denied"):
        await mediator.send(Ping())


def logged(method: Callable[..., Any]) -> Callable[..., Any]:
    """A typical decorator: a plain ``def`` wrapper that returns what the wrapped method returns."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return method(*args, **kwargs)

    return wrapper


class Decorated(Command[str]):
    pass


class DecoratedAsyncHandler(CommandHandler[Decorated, str]):
    @logged
    async def handle(self, command: Decorated) -> str:
        asyncio.get_running_loop()  # runs on the loop
        return "awaited"


class DecoratedNotice(Notification):
    pass


NOTICED: list[str] = []


class ReturnsAwaitable(NotificationHandler[DecoratedNotice]):
    def handle(self, notification: DecoratedNotice) -> Awaitable[None]:
        async def later() -> None:
            NOTICED.append("awaited")

        return later()


class SyncReturnsAwaitable(CommandHandler[Blocking, tuple[int, bool]]):
    def handle(self, command: Blocking) -> Awaitable[tuple[int, bool]]:
        async def later() -> tuple[int, bool]:
            return 1, True

        return later()


async def test_a_decorated_async_handle_is_awaited_on_the_loop() -> None:
    """An ``async def handle`` behind a functools.wraps decorator is awaited; send() returns its result."""
    mediator = make_mediator(DecoratedAsyncHandler)

    assert await mediator.send(Decorated()) == "awaited"


async def test_an_awaitable_returned_by_a_plain_handle_is_awaited() -> None:
    """handle is typed ``R | Awaitable[R]``: an awaitable returned by a plain def is awaited, never leaked."""
    NOTICED.clear()
    mediator = make_mediator(SyncReturnsAwaitable, ReturnsAwaitable)

    assert await mediator.send(Blocking()) == (1, True)
    await mediator.publish(DecoratedNotice())
    assert NOTICED == ["awaited"]
