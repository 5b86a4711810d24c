"""Where scheduled commands live: the store contract and its implementations."""

from .base import ScheduledCommandStore
from .memory import MemoryStore
from .redis import RedisStore
from .sql import SqlStore

__all__ = ["MemoryStore", "RedisStore", "ScheduledCommandStore", "SqlStore"]
