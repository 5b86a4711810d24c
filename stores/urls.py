"""``store_from_url``: the one place a store URL (``--store``, ``$CQRS_SCHEDULING_STORE``) becomes a store."""

from __future__ import annotations

from .base import ScheduledCommandStore

__all__ = ["REDIS_SCHEMES", "store_from_url"]

#: URL schemes served by ``RedisStore``; every other URL goes to ``SqlStore`` (which names the ones it supports).
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def store_from_url(url: str) -> ScheduledCommandStore:
    """An unopened store for ``url``: ``RedisStore`` for ``redis://``, ``rediss://`` and ``unix://``, else
    ``SqlStore`` (``sqlite:///path``, ``postgresql+psycopg://...``).

    Raises:
        ValueError: the URL names no store this package has.
    """
    if url.startswith(REDIS_SCHEMES):
        from .redis import RedisStore

        return RedisStore(url)
    from .sql import SqlStore

    return SqlStore(url)
