"""Where scheduled commands live: the store contract and its implementations."""

from .base import ScheduledCommandStore
from .memory import MemoryStore
from .sql import SqlStore

__all__ = ["MemoryStore", "ScheduledCommandStore", "SqlStore"]
