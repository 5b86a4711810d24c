"""The dependency part of the store contract (``ScheduleOptions.after``, groups), a base of
``ScheduledCommandStore`` in a module of its own so that ``base.py`` stays one screenful of concepts. A store that
cannot keep dependencies inherits refusals (``supports_dependencies`` False) and empty reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .dependencies import Dependency
from .entries import ScheduledCommandEntry
from .errors import UnsupportedFeatureError

__all__ = ["DependencyStore"]


class DependencyStore:
    """The dependency methods (``stores.testing.DependencyContract``).

    .. versionadded:: 0.7
    """

    #: Whether ``add_dependants`` works (``ScheduleOptions.after`` and groups); the scheduler refuses them, with
    #: ``UnsupportedFeatureError``, before anything is stored on a store that cannot keep them.
    supports_dependencies: bool = False

    @property
    def description(self) -> str:
        return type(self).__name__

    async def add_dependants(
        self, entries: Sequence[ScheduledCommandEntry], after: Mapping[str, Dependency]
    ) -> list[str]:
        """Insert entries, all or none, like ``add`` (no idempotency keys); each entry whose id ``after`` maps to a
        ``Dependency`` waits for its parents (see ``stores/dependencies.py``). A parent is an entry the store holds
        or one of ``entries`` placed before its dependant.

        In the same transaction, each dependant is stored WAITING with ``pending_parents`` = the parents that have
        not met its condition yet; PENDING when none is left; CANCELLED (``completed_at`` = its ``created_at``, the
        reason in ``error_message``) when a parent already ended so that the condition can no longer hold. From then
        on every outcome of a parent (``complete``, ``dead_letter``, ``expire``, ``cancel``, ``cancel_claimed``,
        ``dismiss``, ...) updates its WAITING dependants in the transaction that writes the outcome, cascading to the
        dependants of those it cancels; wakes listeners for entries made PENDING and finish listeners for those
        cancelled.

        Raises:
            UnknownParentError: a parent is neither held nor earlier in ``entries``; nothing is stored.
            ValueError: an id held or repeated, or an entry with an ``idempotency_key``; nothing is stored.
            UnsupportedFeatureError: the store cannot keep dependencies (``supports_dependencies`` is False).

        .. versionadded:: 0.7
        """
        raise UnsupportedFeatureError(
            self.description, "dependencies (ScheduleOptions.after, groups)", "use SqlStore, RedisStore or MemoryStore"
        )

    async def get_parents(self, entry_id: str) -> list[str]:
        """The ids of the entries ``entry_id`` was scheduled after, in the order given (empty when none).

        .. versionadded:: 0.7
        """
        return []

    async def get_dependants(self, entry_id: str) -> list[str]:
        """The ids of the entries scheduled after ``entry_id``, in scheduling order (empty when none).

        .. versionadded:: 0.7
        """
        return []
