"""The store an application gets when it names none: the one place the default is decided.

``SchedulingModule()`` and the ``cqrs-scheduling`` command line share it, so a producer and a worker built from the
same factory always meet in the same store: ``$CQRS_SCHEDULING_STORE``, else the embedded SQLite file
``scheduled-commands.db`` in the working directory. A ``MemoryStore`` is only ever used when asked for.
"""

from __future__ import annotations

import os

from .base import ScheduledCommandStore
from .urls import store_from_url

__all__ = ["DEFAULT_STORE_URL", "STORE_ENV", "default_store", "default_store_url"]

#: The environment variable naming the store URL of every process of an application.
STORE_ENV = "CQRS_SCHEDULING_STORE"
#: The store when neither an explicit URL nor ``$CQRS_SCHEDULING_STORE`` says otherwise: the embedded default.
DEFAULT_STORE_URL = "sqlite:///scheduled-commands.db"


def default_store_url(explicit: str | None = None) -> str:
    """The store URL in force: ``explicit`` (a ``--store`` option), then ``$CQRS_SCHEDULING_STORE``, then
    ``sqlite:///scheduled-commands.db``.

    .. versionadded:: 0.2
    """
    return explicit or os.environ.get(STORE_ENV) or DEFAULT_STORE_URL


def default_store() -> ScheduledCommandStore:
    """The store of ``default_store_url()`` (``SqlStore``, or ``RedisStore`` for a ``redis://`` URL); it opens itself
    on first use.

    Raises:
        ValueError: ``$CQRS_SCHEDULING_STORE`` names a database other than SQLite, PostgreSQL or Redis.

    .. versionadded:: 0.2
    """
    return store_from_url(default_store_url())
