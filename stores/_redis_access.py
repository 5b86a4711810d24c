"""What every part of ``RedisStore`` uses of the store: running a script, the client, key names and the translation
of connection failures. A base of its mixins (``_redis_reads``, ``_redis_queues``...); ``RedisStore`` supplies it.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisAccess"]


class RedisAccess:
    if TYPE_CHECKING:  # supplied by RedisStore

        async def _run(self, script: str, *args: str | int) -> Any:
            """Run one script with the prefix as its first argument."""

        async def _client(self) -> Redis:
            """The client, connecting on first use."""

        def _key(self, suffix: str) -> str:
            """The key ``{prefix}:{suffix}``."""

        def _unavailable(self) -> contextlib.AbstractContextManager[None]:
            """Connection failures become ``StoreUnavailableError``."""

        @property
        def description(self) -> str: ...
