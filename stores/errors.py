"""Store errors.

Hierarchy::

    StoreError
    ├── StoreUnavailableError   the backend cannot be reached right now (transient: retried with backoff)
    ├── SchemaVersionError      the database holds a schema newer than this code knows
    ├── SessionNotSupportedError  schedule(..., session=...) on a store that is not in a SQL database
    ├── UnreadableEntryError    a stored row holds a value that does not convert to an entry
    └── UnsupportedFeatureError  this store cannot do what was asked (for example queues on RedisStore)
"""

from __future__ import annotations

__all__ = [
    "SchemaVersionError",
    "SessionNotSupportedError",
    "StoreError",
    "StoreUnavailableError",
    "UnreadableEntryError",
    "UnsupportedFeatureError",
]


class StoreError(Exception):
    """Base class of store errors."""


class StoreUnavailableError(StoreError):
    """The store's backend cannot be reached; the service retries with backoff. ``__cause__`` is the driver error."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(url, reason)

    def __str__(self) -> str:
        return f"store {self.url} is unavailable: {self.reason}"


class SchemaVersionError(StoreError):
    """The database's schema is newer than this version of cqrs-scheduling; upgrade the package."""

    def __init__(self, url: str, found: int, supported: int) -> None:
        self.url = url
        self.found = found
        self.supported = supported
        super().__init__(url, found, supported)

    def __str__(self) -> str:
        return (
            f"store {self.url} has schema version {self.found}, newer than {self.supported} which this version of "
            "cqrs-scheduling knows; upgrade cqrs-scheduling on this worker"
        )


class SessionNotSupportedError(StoreError, TypeError):
    """Transactional scheduling (``session=``) needs a ``SqlStore`` on the session's own database."""

    def __init__(self, store: str, reason: str = "transactional scheduling needs a SqlStore") -> None:
        self.store = store
        self.reason = reason
        super().__init__(store, reason)

    def __str__(self) -> str:
        return f"{self.store} cannot join this database session: {self.reason}"


class UnreadableEntryError(StoreError):
    """A stored row that does not convert to a ``ScheduledCommandEntry`` (written behind the library's back).

    ``column`` and ``value`` name the first value that does not fit; ``entry_id`` is None when even the id cannot
    be read (``seq`` still names the row). The worker dead-letters such a row; listings report it, one line each.

    .. versionadded:: 0.3
    """

    def __init__(self, seq: object, entry_id: object, column: str, value: object, problem: str) -> None:
        self.seq = seq
        self.entry_id = entry_id if isinstance(entry_id, str) else None
        self.raw_id = entry_id
        self.column = column
        self.value = value
        self.problem = problem
        super().__init__(seq, entry_id, column, value, problem)

    @property
    def description(self) -> str:
        """One line: ``column scheduled_for holds '-infinity' (Input should be a valid datetime)``."""
        return f"column {self.column} holds {_short(self.value)} ({self.problem})"

    def __str__(self) -> str:
        if self.entry_id is not None:
            who = f"entry {self.entry_id}"
        else:
            who = "an entry" if self.raw_id is None else f"an entry with the id {_short(self.raw_id)}"
        return f"{who} (row {self.seq}) cannot be read: {self.description}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 120 else f"{text[:117]}..."


class UnsupportedFeatureError(StoreError, NotImplementedError):
    """The store cannot do what was asked (``feature``); use a store that can (SqlStore, MemoryStore).

    .. versionadded:: 0.5
    """

    def __init__(self, store: str, feature: str, reason: str = "") -> None:
        self.store = store
        self.feature = feature
        self.reason = reason
        super().__init__(store, feature, reason)

    def __str__(self) -> str:
        tail = f" ({self.reason})" if self.reason else ""
        return f"{self.store} does not support {self.feature}{tail}"
