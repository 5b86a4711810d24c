"""Handlers that misbehave: every fault is one failed attempt with a useful error, and the worker goes on.

In process, on a ManualClock, against every store (the SQL stores must be able to record the error text too).
Each test schedules the faulty command and an ordinary one after it; the ordinary one must complete.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import pytest
from scheduling_app import Log, Record, RecordHandler, make_app

from mediator import Command, CommandHandler
from scheduling import ScheduledCommandStatus, ScheduleOptions
from stores import ScheduledCommandStore

S = ScheduledCommandStatus


class Doom(BaseException):
    """A custom BaseException subclass, not an Exception."""


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


class Misbehave(Command[object]):
    how: str


class MisbehaveHandler(CommandHandler[Misbehave, object]):
    async def handle(self, command: Misbehave) -> object:
        how = command.how
        if how == "raise":
            raise ValueError("bad input 42")
        if how == "hang":
            await asyncio.sleep(30)
        if how == "unserializable":
            return object()
        if how == "raise_cancelled":
            raise asyncio.CancelledError
        if how == "cancel_own_task":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)
        if how == "sys_exit":
            raise SystemExit(3)
        if how == "keyboard_interrupt":
            raise KeyboardInterrupt
        if how == "custom_base_exception":
            raise Doom("the end")
        if how == "stop_iteration":
            raise StopIteration
        if how == "own_timeout_error":
            raise TimeoutError("partner did not answer")
        if how == "unprintable":
            raise Unprintable
        if how == "nul_in_message":
            raise ValueError("before\x00after")
        if how == "surrogate_in_message":
            raise ValueError("bad byte \udcff here")
        if how == "huge_message":
            raise ValueError("x" * 1_000_000)
        if how == "block_loop":
            time.sleep(0.2)  # noqa: ASYNC251 - the point: a handler that blocks the event loop
            return "done"
        if how == "block_loop_then_await":
            time.sleep(0.2)  # noqa: ASYNC251
            await asyncio.sleep(0.01)
            return "done"
        raise AssertionError(how)


class HangInThread(Command[None]):
    seconds: float


class HangInThreadHandler(CommandHandler[HangInThread, None]):
    def handle(self, command: HangInThread) -> None:  # type: ignore[override] - a plain def: runs in a thread
        time.sleep(command.seconds)


HANDLERS = [MisbehaveHandler, HangInThreadHandler, RecordHandler]


async def run_fault(
    store: ScheduledCommandStore, command: Command[Any], options: ScheduleOptions, *, bound: float = 10
) -> Any:
    """Schedule the faulty command and a good one after it, run until idle (for at most ``bound`` seconds), and
    return the faulty entry, its attempts, the good entry and how many entries were handled."""
    app = make_app(store=store, handlers=HANDLERS)
    bad_id = await app.scheduler.schedule(command, options)
    good_id = await app.scheduler.schedule(Record(value="after"))
    async with asyncio.timeout(bound):
        handled = await app.service.run_until_idle()
    bad = await app.scheduler.get_status(bad_id)
    good = await app.scheduler.get_status(good_id)
    attempts = await app.scheduler.get_attempts(bad_id)
    assert bad is not None and good is not None
    assert app.injector.get(Log).records == ["after"]
    return bad, attempts, good, handled


FAILS_ONCE = ScheduleOptions(max_retries=0)

# how, options, expected outcome, expected error_message
FAULTS: list[Any] = [
    pytest.param("raise", FAILS_ONCE, "failed", "ValueError: bad input 42", id="raise"),
    pytest.param(
        "hang",
        ScheduleOptions(max_retries=0, timeout=timedelta(milliseconds=50)),
        "timed_out",
        "TimeoutError: attempt exceeded its timeout of 0.05s",
        id="hang-past-timeout",
    ),
    pytest.param("raise_cancelled", FAILS_ONCE, "failed", "CancelledError", id="raise-cancelled-error"),
    pytest.param("sys_exit", FAILS_ONCE, "failed", "SystemExit: 3", id="sys-exit"),
    pytest.param("keyboard_interrupt", FAILS_ONCE, "failed", "KeyboardInterrupt", id="keyboard-interrupt"),
    pytest.param("custom_base_exception", FAILS_ONCE, "failed", "Doom: the end", id="custom-base-exception"),
    pytest.param(
        "stop_iteration", FAILS_ONCE, "failed", "RuntimeError: coroutine raised StopIteration", id="stop-iteration"
    ),
    pytest.param(
        "block_loop_then_await",
        ScheduleOptions(max_retries=0, timeout=timedelta(milliseconds=50)),
        "timed_out",
        "TimeoutError: attempt exceeded its timeout of 0.05s",
        id="block-loop-past-timeout-then-await",
    ),
]


@pytest.mark.parametrize(("how", "options", "outcome", "message"), FAULTS)
async def test_fault_is_one_failed_attempt_and_the_worker_goes_on(
    any_store: ScheduledCommandStore, how: str, options: ScheduleOptions, outcome: str, message: str
) -> None:
    """The faulty command is FAILED after one attempt with this outcome and error; the next command completes."""
    bad, attempts, good, handled = await run_fault(any_store, Misbehave(how=how), options)
    assert handled == 2
    assert (bad.status, bad.retry_count, bad.error_message) == (S.FAILED, 1, message)
    [attempt] = attempts
    assert (attempt.attempt, attempt.outcome, attempt.worker_id) == (1, outcome, "worker-1")
    assert attempt.error is not None
    assert attempt.error.startswith(message + "\n\nTraceback (most recent call last):")
    assert good.status is S.COMPLETED


async def test_handler_error_traceback_points_at_the_handler(any_store: ScheduledCommandStore) -> None:
    """The attempt's error text holds the traceback down to the line of the handler that raised."""
    _, [attempt], _, _ = await run_fault(any_store, Misbehave(how="raise"), FAILS_ONCE)
    assert attempt.error is not None
    assert "test_handler_faults.py" in attempt.error
    assert 'raise ValueError("bad input 42")' in attempt.error


async def test_unserializable_result_is_dead_lettered_without_retries(any_store: ScheduledCommandStore) -> None:
    """A result that is not JSON: FAILED at once (retries left are not used), error naming the result's type."""
    bad, [attempt], good, _ = await run_fault(
        any_store, Misbehave(how="unserializable"), ScheduleOptions(max_retries=3)
    )
    assert bad.status is S.FAILED
    assert bad.error_message is not None
    assert bad.error_message.startswith("_PermanentFailure: the handler's result of type object is not JSON")
    assert attempt.outcome == "failed"
    assert good.status is S.COMPLETED


async def test_huge_error_message_is_truncated(any_store: ScheduledCommandStore) -> None:
    """A 1 MB exception message is cut to 2,000 characters in the entry and about 20 kB in the attempt."""
    bad, [attempt], good, _ = await run_fault(any_store, Misbehave(how="huge_message"), FAILS_ONCE)
    assert bad.error_message is not None
    assert len(bad.error_message) == 2_000
    assert bad.error_message.startswith("ValueError: xxx") and bad.error_message.endswith("…")
    assert attempt.error is not None and len(attempt.error) < 25_000
    assert good.status is S.COMPLETED


async def test_handler_blocking_the_loop_briefly_completes(any_store: ScheduledCommandStore) -> None:
    """An async handler that blocks the loop for 0.2 s delays the others but completes; the worker goes on."""
    bad, [attempt], good, handled = await run_fault(any_store, Misbehave(how="block_loop"), FAILS_ONCE)
    assert handled == 2
    assert (bad.status, bad.result_payload, attempt.outcome) == (S.COMPLETED, '"done"', "completed")
    assert good.status is S.COMPLETED


async def test_blocking_past_the_timeout_without_awaiting_is_not_interrupted(any_store: ScheduledCommandStore) -> None:
    """A timeout cannot preempt code that never yields: a handler that blocks past its timeout and returns without
    awaiting completes. (The timeout takes effect at its first await: see block-loop-past-timeout-then-await.)"""
    options = ScheduleOptions(max_retries=0, timeout=timedelta(milliseconds=50))
    bad, [attempt], good, _ = await run_fault(any_store, Misbehave(how="block_loop"), options)
    assert (bad.status, attempt.outcome) == (S.COMPLETED, "completed")
    assert good.status is S.COMPLETED


async def test_plain_handler_hanging_in_its_thread_times_out(any_store: ScheduledCommandStore) -> None:
    """A plain ``def`` handler runs in a thread; past its timeout the attempt fails as timed_out, recorded once the
    thread (which cannot be stopped) has returned, saying so."""
    options = ScheduleOptions(max_retries=0, timeout=timedelta(milliseconds=50))
    bad, [attempt], good, _ = await run_fault(any_store, HangInThread(seconds=0.3), options)
    assert (bad.status, attempt.outcome) == (S.FAILED, "timed_out")
    assert bad.error_message is not None
    assert bad.error_message.startswith(
        "TimeoutError: attempt exceeded its timeout of 0.05s; its plain def handler could not be interrupted"
    )
    assert good.status is S.COMPLETED


async def test_handler_cancelling_its_own_task_is_a_failed_attempt(any_store: ScheduledCommandStore) -> None:
    """``asyncio.current_task().cancel()`` inside a handler is the handler cancelling itself: a failed attempt."""
    bad, [attempt], good, _ = await run_fault(any_store, Misbehave(how="cancel_own_task"), FAILS_ONCE, bound=1)
    assert (bad.status, bad.error_message, attempt.outcome) == (S.FAILED, "CancelledError", "failed")
    assert good.status is S.COMPLETED


async def test_handlers_own_timeout_error_is_not_reported_as_the_attempt_timeout(
    any_store: ScheduledCommandStore,
) -> None:
    """A handler raising TimeoutError (a partner's timeout) well within its 30 s timeout: an ordinary failure."""
    options = ScheduleOptions(max_retries=0, timeout=timedelta(seconds=30))
    bad, [attempt], good, _ = await run_fault(any_store, Misbehave(how="own_timeout_error"), options)
    assert (bad.error_message, attempt.outcome) == ("TimeoutError: partner did not answer", "failed")
    assert good.status is S.COMPLETED


async def test_exception_that_cannot_be_printed_is_still_a_failed_attempt(any_store: ScheduledCommandStore) -> None:
    """An exception whose ``str()`` raises: the attempt fails with the exception's type as its message."""
    bad, [attempt], good, _ = await run_fault(any_store, Misbehave(how="unprintable"), FAILS_ONCE)
    assert bad.status is S.FAILED
    assert bad.error_message is not None and bad.error_message.startswith("Unprintable")
    assert attempt.outcome == "failed"
    assert good.status is S.COMPLETED


@pytest.mark.parametrize(
    ("how", "prefix"),
    [("nul_in_message", "ValueError: before"), ("surrogate_in_message", "ValueError: bad byte ")],
    ids=["nul", "surrogate"],
)
async def test_error_text_with_nul_or_invalid_unicode_is_recorded(
    any_store: ScheduledCommandStore, how: str, prefix: str, request: pytest.FixtureRequest
) -> None:
    """An exception message holding a NUL or a lone surrogate is recorded (escaped if the store needs it), and
    the command after it completes."""
    bad, [attempt], good, _ = await run_fault(any_store, Misbehave(how=how), FAILS_ONCE)
    assert bad.status is S.FAILED
    assert bad.error_message is not None and bad.error_message.startswith(prefix)
    assert attempt.outcome == "failed"
    assert good.status is S.COMPLETED
