"""Outcomes that arrive together go to Redis in one script run (a ``GroupCommit``).

Idle, an outcome is sent at once (no added latency); while one batch is on its way, the outcomes arriving meanwhile
wait for it and then go together, so a busy worker pays one round trip for many commands. The script applies the
requests one after another, each fenced by its own lease token, so their order within a batch is their order of
arrival.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._group_commit import GroupCommit

__all__ = ["MAX_BATCH", "outcome_batcher"]

#: The most requests one script run carries (a run blocks the server while it works).
MAX_BATCH = 500


def outcome_batcher(
    write: Callable[[list[list[Any]]], Awaitable[list[str | None]]],
) -> GroupCommit[list[Any], str | None]:
    """The group commit of ending claims on Redis. A failed script run fails each of its waiters (the script applies
    requests one by one and stops at none of them, so a failure is the server's, not one request's)."""
    return GroupCommit(write, max_batch=MAX_BATCH, fail_together=(Exception,))
