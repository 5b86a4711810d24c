"""Publishing a lifecycle notification so that no subscriber can change an outcome or stop the service."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from mediator import Mediator

__all__ = ["publish_safely"]

logger = logging.getLogger("scheduling.scheduler")


async def publish_safely(mediator: Mediator, notification: Any) -> None:
    """Publish a lifecycle notification; a failing subscriber is logged and never changes the outcome."""
    try:
        await mediator.publish(notification)
    except asyncio.CancelledError:
        raise
    except BaseException:  # not even sys.exit in a subscriber may stop the service
        logger.exception(
            "a subscriber of %s failed",
            type(notification).__name__,
            extra={
                "action": "notify",
                "command_id": getattr(notification, "command_id", None),
                "command_type": getattr(notification, "command_type", None),
            },
        )
