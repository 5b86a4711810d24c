"""Results of scheduled commands: the typed id ``schedule()`` returns, waiting for an entry to finish, and turning a
finished entry into its handler's result (typed by the command's ``R``) or the error that says why there is none.

``CommandScheduler.wait()`` and ``CommandScheduler.result()`` are the public way in; this module holds what they do,
so the scheduler stays about scheduling. Waiting is woken by the store (``add_finish_listener``: an asyncio event in
memory, LISTEN/NOTIFY on PostgreSQL, the commit watcher on SQLite, pub/sub on Redis); the entry is re-read every
``SchedulerSettings.wait_recheck_interval`` as well, only as a safety net against a lost notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import pydantic_core
from pydantic import TypeAdapter, ValidationError

from mediator import Command
from stores.entries import TERMINAL_STATUSES, ScheduledCommandEntry, ScheduledCommandStatus

from .errors import (
    CommandCancelledError,
    CommandExpiredError,
    CommandFailedError,
    CommandNotFinishedError,
    CommandNotFoundError,
    CommandOutcomeError,
)

if TYPE_CHECKING:
    from stores.base import ScheduledCommandStore

__all__ = ["ScheduledCommandId", "decode_result", "result_type_of", "seconds", "wait_until_finished"]

R_co = TypeVar("R_co", covariant=True)

_OUTCOME_ERRORS: dict[ScheduledCommandStatus, type[CommandOutcomeError]] = {
    ScheduledCommandStatus.FAILED: CommandFailedError,
    ScheduledCommandStatus.EXPIRED: CommandExpiredError,
    ScheduledCommandStatus.CANCELLED: CommandCancelledError,
}


class ScheduledCommandId(str, Generic[R_co]):
    """The id ``schedule()`` returns: a plain ``str`` at run time (store it, log it, send it anywhere), which also
    tells type checkers the command's result type, so ``await scheduler.wait(command_id)`` is typed ``R``.

    ``ScheduledCommandId(some_str)`` gives an id typed ``Any`` result; ``wait()`` accepts plain strings too.

    .. versionadded:: 0.5
    """

    __slots__ = ()


def result_type_of(command_class: type[Command[Any]]) -> Any:
    """The ``R`` of ``Command[R]`` that ``command_class`` derives from: ``None`` for a bare ``Command``.

    Read from the first parametrized base in the class's MRO (pydantic keeps ``Command[int]`` as a class of its own,
    with its arguments), so ``class CreateUser(Command[int])`` and subclasses of it give ``int``.
    """
    for klass in command_class.__mro__:
        metadata = getattr(klass, "__pydantic_generic_metadata__", None)
        if not metadata:
            continue
        args: tuple[Any, ...] = tuple(metadata.get("args") or ())
        if metadata.get("origin") is not None and len(args) == 1 and not isinstance(args[0], TypeVar):
            return args[0]
    return None


@functools.cache
def _adapter(result_type: Any) -> TypeAdapter[Any]:
    return TypeAdapter(result_type)


def decode_result(entry: ScheduledCommandEntry, command_class: type[Command[Any]] | None) -> Any:
    """The handler's result from a finished entry, or the error saying why there is none.

    Decoded with the command's result type when ``command_class`` is known (a registered command type), else as
    plain JSON.

    Raises:
        CommandFailedError: the entry is FAILED. CommandExpiredError: EXPIRED. CommandCancelledError: CANCELLED.
        CommandNotFinishedError: PENDING or PROCESSING.
        ValueError: the stored result does not validate as the command's result type (the type changed).
    """
    if entry.status is not ScheduledCommandStatus.COMPLETED:
        error = _OUTCOME_ERRORS.get(entry.status)
        if error is None:
            raise CommandNotFinishedError(entry)
        raise error(entry)
    if entry.result_payload is None:
        return None
    if command_class is None:
        return pydantic_core.from_json(entry.result_payload)
    result_type = result_type_of(command_class)
    try:
        return _adapter(result_type).validate_json(entry.result_payload)
    except ValidationError as exc:
        raise ValueError(
            f"the stored result of {entry.command_type} {entry.id} ({entry.result_payload:.200}) does not validate "
            f"as {getattr(result_type, '__name__', result_type)}: {exc.errors()[0]['msg']}"
        ) from exc


async def wait_until_finished(
    store: ScheduledCommandStore, command_id: str, *, within: float | None, recheck_every: float
) -> ScheduledCommandEntry:
    """The entry once it reaches a terminal status, woken by the store's finish notifications.

    The listener is registered before the entry is read, so a finish between the read and the wait is not missed;
    the entry is re-read every ``recheck_every`` seconds too, as a safety net only.

    Raises:
        CommandNotFoundError: the store does not hold the id (or no longer does).
        TimeoutError: ``within`` seconds passed (real, monotonic time) first.
    """
    woken = asyncio.Event()

    def listener(_: str) -> None:
        woken.set()

    loop = asyncio.get_running_loop()
    deadline = None if within is None else loop.time() + within
    store.add_finish_listener(command_id, listener)
    try:
        while True:
            woken.clear()  # before the read: a finish after it sets the event again
            entry = await store.get(command_id)
            if entry is None:
                raise CommandNotFoundError(command_id, store.description)
            if entry.status in TERMINAL_STATUSES:
                return entry
            pause = recheck_every
            if deadline is not None:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{entry.command_type} {command_id} did not finish within {within:g}s "
                        f"(status {entry.status.value})"
                    )
                pause = min(pause, remaining)
            with contextlib.suppress(TimeoutError):  # the deadline or the safety-net re-read: the loop decides
                await asyncio.wait_for(woken.wait(), pause)
    finally:
        store.remove_finish_listener(command_id, listener)


def seconds(value: timedelta | float | None, name: str) -> float | None:
    """A non-negative number of seconds from a ``timedelta`` or a number (``None`` stays ``None``)."""
    if value is None:
        return None
    result = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not result >= 0:  # also refuses NaN
        raise ValueError(f"{name} must be a non-negative duration, got {value!r}")
    return result
