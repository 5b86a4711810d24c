"""Store errors.

Hierarchy::

    StoreError
    ├── StoreUnavailableError   the backend cannot be reached right now (transient: retried with backoff)
    ├── SchemaVersionError      the database holds a schema newer than this code knows
    └── SessionNotSupportedError  schedule(..., session=...) on a store that is not in a SQL database
"""

from __future__ import annotations

__all__ = ["SchemaVersionError", "SessionNotSupportedError", "StoreError", "StoreUnavailableError"]


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
