"""Announcing the dependants a store cancelled because a parent ended otherwise than their condition needs (and the
cascade below them) exactly like an operator's cancel: the observers' ``on_cancelled`` (metrics), an INFO log line
and a ``ScheduledCommandCancelled`` whose ``reason`` names the parent.

The store reports them through its ``DependantsCancelledListener`` once the transaction that cancelled them has
committed, from whichever path ended the parent (a worker's outcome, batched or not, lease recovery's lost
attempt, an operator or correlation cancel, a recurring schedule's cancelled occurrences). The listener is
synchronous (it runs where the store commits, inside a group commit for instance); publishing awaits subscribers,
so it runs in a task that ``settle()`` waits for (``run_until_idle()``, ``stop()`` and ``cancel()`` do).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from mediator import Mediator
from stores.base import ScheduledCommandStore

from ._publish import publish_safely
from .clock import Clock
from .entries import ScheduledCommandEntry
from .notifications import ScheduledCommandCancelled
from .observer import SchedulingObservers

__all__ = ["listen_for_cancelled_dependants", "settle"]

logger = logging.getLogger("scheduling.scheduler")

#: Publishing tasks not finished yet, in this process, each with the task in which the store reported the entries
#: (a task removes itself when done).
_publishing: dict[asyncio.Task[None], asyncio.Task[object] | None] = {}


def listen_for_cancelled_dependants(
    store: ScheduledCommandStore, mediator: Mediator, clock: Clock, observers: SchedulingObservers
) -> None:
    """Announce through ``mediator`` and ``observers`` the dependants ``store`` cancels. One listener per (mediator,
    observers): the schedulers of one application (an async one, a ``SyncScheduler``'s planner) announce once."""

    def announce(entries: Sequence[ScheduledCommandEntry]) -> None:
        if observers:
            observers.on_cancelled(entries)
        for entry in entries:
            logger.info(
                "cancelled %s %s: %s",
                entry.command_type,
                entry.id,
                entry.error_message,
                extra={"action": "cancel", "command_id": entry.id, "command_type": entry.command_type},
            )
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: nothing async can publish (the observers and the log were told)
            return
        task = loop.create_task(_publish(mediator, clock, list(entries)), name="announce-cancelled-dependants")
        _publishing[task] = asyncio.current_task(loop)
        task.add_done_callback(_forget)

    store.set_dependants_cancelled_listener((id(mediator), id(observers)), announce)


async def _publish(mediator: Mediator, clock: Clock, entries: list[ScheduledCommandEntry]) -> None:
    for entry in entries:
        occurred_at = entry.completed_at or clock.now()
        notification = ScheduledCommandCancelled.of(entry, occurred_at, reason=entry.error_message)
        await publish_safely(mediator, notification)


def _forget(task: asyncio.Task[None]) -> None:
    _publishing.pop(task, None)


async def settle(*, mine_only: bool = False) -> None:
    """Wait until the announcements started on this loop were published: every one (a service that stops or
    ran until idle), or ``mine_only`` those that a store call of the current task started (``cancel()``: a
    subscriber that cancels something waits for its own announcements only, never for another subscriber's)."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task(loop)

    def waited() -> list[asyncio.Task[None]]:
        return [
            task
            for task, trigger in _publishing.items()
            if task.get_loop() is loop and task is not me and (trigger is me or not mine_only)
        ]

    while pending := waited():
        await asyncio.gather(*pending, return_exceptions=True)
