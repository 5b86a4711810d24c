"""Where scheduled commands live: the store contract and its implementations.

``base.py`` is the contract, ``ScheduledCommandStore``, built from one base class per family of methods (the
``_*_contract.py`` modules); ``_transitions.py`` states the state machine's rules once for every store. The stores:
``memory.py`` (with its ``_memory_*`` mixins), ``sql/`` (SQLite and PostgreSQL), ``redis.py`` (with ``_redis_*``).
``testing/`` is the contract suite shipped for custom stores (``stores.testing``).
"""

from .base import ScheduledCommandStore
from .memory import MemoryStore
from .redis import RedisStore
from .sql import SqlStore

__all__ = ["MemoryStore", "RedisStore", "ScheduledCommandStore", "SqlStore"]
