"""What ``RedisStore`` does with the server besides its scripts: the checks on opening (the key layout version, the
server's persistence) and the subscription to wake-ups and finishes, which resubscribes after the connection drops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, cast

from . import _redis_scripts as scripts
from ._redis_codec import from_micros
from ._redis_layout import UPGRADES
from .errors import SchemaVersionError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["check_layout", "listen", "subscribe", "warn_without_persistence"]

logger = logging.getLogger("stores.redis")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


async def check_layout(client: Redis, meta_key: str, description: str) -> None:
    """Record the layout version under the prefix, upgrade an older one step by step (``_redis_layout``), or refuse a
    newer one (``SchemaVersionError``)."""
    await client.hsetnx(meta_key, "layout", str(scripts.LAYOUT_VERSION))
    found = int(await cast(Awaitable[str], client.hget(meta_key, "layout")))
    if found > scripts.LAYOUT_VERSION:
        raise SchemaVersionError(description, found, scripts.LAYOUT_VERSION)
    prefix = meta_key.removesuffix(":meta")
    for version in range(found, scripts.LAYOUT_VERSION):
        moved = await cast(Awaitable[int], client.eval(UPGRADES[version], 0, prefix))
        logger.warning(
            "upgraded the Redis key layout under %r from version %d to %d (%d pending entries moved)",
            prefix,
            version,
            version + 1,
            moved,
            extra={"action": "upgrade_layout", "store": description},
        )


async def warn_without_persistence(client: Redis, url: str, description: str) -> None:
    """Log a WARNING when the server persists nothing: its restart would lose every entry."""
    from redis.exceptions import ResponseError

    try:
        appendonly = (await client.config_get("appendonly")).get("appendonly")
        save = (await client.config_get("save")).get("save")
    except ResponseError:  # CONFIG is disabled on many managed servers: they persist by their own policy
        return
    if appendonly == "no" and not save:
        logger.warning(
            "Redis at %s persists nothing (appendonly no, no save points): a restart of the server loses "
            "every scheduled command; enable AOF (appendonly yes, appendfsync everysec or always)",
            url,
            extra={"action": "open", "store": description},
        )


async def subscribe(client: Redis, *channels: str) -> PubSub:
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(*channels)
    except BaseException:
        await pubsub.aclose()
        raise
    return pubsub


async def listen(
    client: Callable[[], Redis | None],
    channels: tuple[str, str],
    subscribed: PubSub,
    hooks: tuple[Callable[[datetime], None], Callable[[list[str]], None], Callable[[], None]],
    url: str,
) -> None:
    """Read the wake-up channel, calling ``notify(due)``, and the finish channel (a JSON list of entry ids per
    message), calling ``finished(ids)`` (``hooks`` is ``(notify, finished, recheck)``); subscribe again with backoff
    after the connection drops, then wake every listener and ``recheck()`` the waiters (anything may have happened
    meanwhile).
    """
    wakeup_channel, finished_channel = channels
    notify, finished, recheck = hooks
    pubsub: PubSub | None = subscribed
    failures = 0
    while True:
        try:
            if pubsub is None:
                await asyncio.sleep(min(0.1 * 2**failures, 5.0))
                current = client()
                if current is None:
                    return  # the store was closed meanwhile
                pubsub = await subscribe(current, wakeup_channel, finished_channel)
                logger.info("wake-up listener subscribed again on %s", url, extra={"action": "listen"})
                failures = 0
                notify(_EPOCH)  # anything may have been scheduled meanwhile: wake the listeners to look
                recheck()
            async for message in pubsub.listen():
                if message["type"] != "message":
                    continue
                if message["channel"] == finished_channel:
                    finished(_finished_ids(message["data"]))
                else:
                    notify(from_micros(message["data"]))
            raise ConnectionError("the subscription ended")
        except asyncio.CancelledError:
            if pubsub is not None:
                await pubsub.aclose()
            raise
        except Exception as exc:  # noqa: BLE001 - the server may be away: subscribe again
            if pubsub is not None:
                await pubsub.aclose()
                pubsub = None
            failures += 1
            if failures == 1:
                logger.warning("wake-up listener lost %s: %s; subscribing again", url, exc, extra={"action": "listen"})


def _finished_ids(data: str) -> list[str]:
    """The ids of a finish message: a JSON list, or one bare id (as published before the ids were batched)."""
    if data.startswith("["):
        with contextlib.suppress(ValueError):
            ids = json.loads(data)
            if isinstance(ids, list):
                return [str(entry_id) for entry_id in ids]
    return [data]
