"""``CommandScheduler.wait()`` and ``result()`` on every store in ``STORE_FACTORIES``: each outcome, and the wake-up.

The service runs in the test's own loop (``run_until_idle`` with a ``ManualClock``); ``wait()`` runs as a task beside
it. The safety-net re-read is set to 60 s, so a ``wait()`` that returns within a second was woken by the store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import pytest
from scheduling_app import Add, App, Fail, Record, make_app

from scheduling import ScheduleOptions
from scheduling.errors import (
    CommandCancelledError,
    CommandExpiredError,
    CommandFailedError,
    CommandNotFinishedError,
    CommandNotFoundError,
)
from scheduling.results import ScheduledCommandId
from stores import ScheduledCommandStore

#: Longer than any test here: a wait() that returns was woken by a notification, not by the safety net.
SAFETY_NET = timedelta(seconds=60)


@pytest.fixture
def app(store: ScheduledCommandStore) -> App:
    return make_app(store, wait_recheck_interval=SAFETY_NET)


async def _woken_by(work: Awaitable[Any], waiting: asyncio.Task[Any]) -> Any:
    """Run ``work`` while ``waiting`` waits; return what the wait returned, asserting it returned within 1 s of the
    work's end (the safety net would take 60 s)."""
    await asyncio.sleep(0.05)  # the wait has read the entry and is waiting
    assert not waiting.done()
    await work
    loop = asyncio.get_running_loop()
    done_at = loop.time()
    async with asyncio.timeout(5):
        result = await asyncio.shield(waiting)
    assert loop.time() - done_at < 1.0
    return result


async def test_wait_returns_the_typed_result_as_soon_as_the_command_completes(app: App) -> None:
    """The handler's ``int`` comes back as an ``int``, the moment the entry completes."""
    command_id = await app.scheduler.schedule(Add(a=2, b=3))
    waiting = asyncio.create_task(app.scheduler.wait(command_id, timeout=30))
    result = await _woken_by(app.service.run_until_idle(), waiting)
    assert result == 5
    assert type(result) is int
    assert await app.scheduler.result(command_id) == 5


async def test_wait_returns_none_for_a_command_without_result(app: App) -> None:
    command_id = await app.scheduler.schedule(Record(value="x"))
    await app.service.run_until_idle()
    assert await app.scheduler.wait(command_id, timeout=timedelta(seconds=5)) is None


async def test_wait_raises_command_failed_with_the_stored_error(app: App) -> None:
    """A dead-lettered command raises ``CommandFailedError`` naming the id and carrying the stored error."""
    command_id = await app.scheduler.schedule(Fail(key="f"), ScheduleOptions(max_retries=0))
    waiting = asyncio.create_task(app.scheduler.wait(command_id, timeout=30))
    await asyncio.sleep(0.05)
    await app.service.run_until_idle()
    with pytest.raises(CommandFailedError) as raised:
        async with asyncio.timeout(5):
            await waiting
    assert raised.value.command_id == command_id
    assert raised.value.error_message == "ValueError: failure 1 of f"
    assert command_id in str(raised.value)
    assert "ValueError: failure 1 of f" in str(raised.value)
    with pytest.raises(CommandFailedError):
        await app.scheduler.result(command_id)


async def test_wait_keeps_waiting_through_retries(app: App) -> None:
    """A failed attempt with retries left is not an outcome: wait() returns once the retry completes."""
    command_id = await app.scheduler.schedule(Fail(key="r", times=1), ScheduleOptions(max_retries=1))
    waiting = asyncio.create_task(app.scheduler.wait(command_id, timeout=30))
    await asyncio.sleep(0.05)
    await app.service.run_until_idle()  # the first attempt fails; the retry is due later
    await asyncio.sleep(0.1)
    assert not waiting.done()
    app.clock.advance(timedelta(hours=2))
    assert await _woken_by(app.service.run_until_idle(), waiting) is None


async def test_wait_raises_command_expired(app: App) -> None:
    command_id = await app.scheduler.schedule(Record(value="late"), ScheduleOptions(expires_after=timedelta(seconds=1)))
    app.clock.advance(timedelta(seconds=2))
    waiting = asyncio.create_task(app.scheduler.wait(command_id, timeout=30))
    await asyncio.sleep(0.05)
    await app.service.run_until_idle()
    with pytest.raises(CommandExpiredError) as raised:
        async with asyncio.timeout(5):
            await waiting
    assert raised.value.command_id == command_id
    assert "expired" in str(raised.value)


async def test_wait_raises_command_cancelled_when_cancelled_meanwhile(app: App) -> None:
    command_id = await app.scheduler.schedule(Record(value="x"), ScheduleOptions(delay=timedelta(hours=1)))
    waiting = asyncio.create_task(app.scheduler.wait(command_id, timeout=30))
    with pytest.raises(CommandCancelledError) as raised:
        await _woken_by(app.scheduler.cancel(command_id), waiting)
    assert raised.value.command_id == command_id
    assert raised.value.entry.command_type.endswith("Record")


async def test_wait_times_out_naming_the_id_and_the_timeout(app: App) -> None:
    """The builtin ``TimeoutError``, with the id, the timeout and the status in its message; nothing changes."""
    command_id = await app.scheduler.schedule(Record(value="x"), ScheduleOptions(delay=timedelta(hours=1)))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError) as raised:
        await app.scheduler.wait(command_id, timeout=0.2)
    assert 0.2 <= loop.time() - started < 5
    assert command_id in str(raised.value)
    assert "0.2s" in str(raised.value)
    assert "PENDING" in str(raised.value)
    with pytest.raises(CommandNotFinishedError, match="PENDING"):
        await app.scheduler.result(command_id)


async def test_wait_and_result_of_an_unknown_id_raise_command_not_found(app: App) -> None:
    with pytest.raises(CommandNotFoundError, match="no-such-id") as raised:
        await app.scheduler.wait("no-such-id", timeout=1)
    assert isinstance(raised.value, LookupError)
    with pytest.raises(CommandNotFoundError, match="no-such-id"):
        await app.scheduler.result("no-such-id")


async def test_wait_accepts_a_plain_string_id(app: App) -> None:
    """The id may come back from anywhere (a database column, a URL) as a plain ``str``."""
    command_id = await app.scheduler.schedule(Add(a=1, b=1))
    await app.service.run_until_idle()
    assert await app.scheduler.wait(str(command_id), timeout=5) == 2


async def test_the_returned_id_is_a_plain_string_at_run_time(app: App) -> None:
    """``ScheduledCommandId`` is a ``str``: equal to, hashing like and serialized like the plain id."""
    command_id = await app.scheduler.schedule(Add(a=1, b=1))
    assert isinstance(command_id, ScheduledCommandId)
    assert isinstance(command_id, str)
    plain = str(command_id)
    assert command_id == plain
    assert {command_id: 1}[plain] == 1
    assert json.dumps(command_id) == json.dumps(plain)
    entry = await app.scheduler.get_status(command_id)
    assert entry is not None
    assert entry.id == plain


@pytest.mark.parametrize("timeout", [-1, float("nan"), timedelta(seconds=-1)])
async def test_a_negative_timeout_is_refused(app: App, timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        await app.scheduler.wait("any", timeout=timeout)
