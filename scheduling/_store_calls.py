"""Calling the store from the worker: transient failures retried with backoff, and failures the worker survives
logged once, readably.

Records go to the ``scheduling.service`` logger, the name operators configure for the worker.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_delay, wait_exponential

from stores.errors import StoreUnavailableError

from .entries import ScheduledCommandEntry

__all__ = ["TRANSIENT_STORE_ERRORS", "entry_extra", "log_failure", "run_guarded", "store_backoff", "store_call"]

logger = logging.getLogger("scheduling.service")

T = TypeVar("T")

#: Errors worth retrying a store call for: the backend is away for a moment.
TRANSIENT_STORE_ERRORS: tuple[type[BaseException], ...] = (StoreUnavailableError, ConnectionError, TimeoutError)

#: Backoff between attempts at a failing store call: 0.05 s, 0.1 s, 0.2 s, ... up to 2 s.
_STORE_RETRY_WAIT = wait_exponential(multiplier=0.05, max=2)


async def store_call(lease_duration: timedelta, method: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    """Call a store method, retrying transient errors with backoff for up to one lease duration."""
    try:  # the common case, without building a retry controller (it costs more than a memory store call)
        return await method(*args, **kwargs)
    except TRANSIENT_STORE_ERRORS as exc:
        _log_store_failure(exc)
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(TRANSIENT_STORE_ERRORS),
        wait=_STORE_RETRY_WAIT,
        stop=stop_after_delay(lease_duration.total_seconds()),
        before_sleep=_log_store_retry,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await method(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover


def store_backoff(failures: int, *, cap: float) -> float:
    """Seconds to wait after ``failures`` consecutive failed claims (tenacity's exponential wait, capped)."""
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = failures
    return min(_STORE_RETRY_WAIT(state), cap)


def log_failure(
    exc: BaseException, message: str, *args: object, extra: dict[str, Any], level: int = logging.WARNING
) -> None:
    """Log a failure the service survives. The store being away for a moment is one line an operator can read, at
    ``level`` (the traceback, with the driver's SQL, only at DEBUG); anything else is an ERROR with its traceback,
    since it is a bug to report."""
    if isinstance(exc, TRANSIENT_STORE_ERRORS):
        logger.log(level, message + ": %s", *args, exc, extra=extra)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("traceback of the failure above", exc_info=exc, extra=extra)
    else:
        logger.error(message, *args, exc_info=exc, extra=extra)


async def run_guarded(step: Callable[[], Awaitable[Any]]) -> None:
    """Run a periodic step (renewing leases, recovery); a failure is logged and the next period tries again."""
    try:
        await step()
    except Exception as exc:  # noqa: BLE001 - logged by log_failure; the service keeps going
        log_failure(exc, "%s failed; continuing", step.__name__.lstrip("_"), extra={"action": "step_failed"})


def entry_extra(action: str, entry: ScheduledCommandEntry) -> dict[str, Any]:
    """The structured fields of a log record about one entry."""
    return {"action": action, "command_id": entry.id, "command_type": entry.command_type}


def _log_store_failure(exc: BaseException) -> None:
    logger.warning("store call failed, retrying with backoff: %s", exc, extra={"action": "store_retry"})


def _log_store_retry(state: Any) -> None:
    outcome = state.outcome
    logger.warning(
        "store call failed (attempt %d), retrying: %s",
        state.attempt_number,
        outcome.exception() if outcome is not None else "?",
        extra={"action": "store_retry"},
    )
