"""Failed logins: logged, and throttled per client address (``LoginThrottle``).

Each wrong token (``Authorization: Bearer``, ``?token=``, the login form) is logged at WARNING on the
``scheduling.web`` logger with the client address and how it was sent, never the token. A client with
``settings.login_attempts`` failures within ``settings.login_window`` is refused with 429 and ``Retry-After`` until
its oldest failure in the window leaves it, whatever token it sends, so guessing is slowed to that rate. Only
requests that present a token are counted or refused: a browser with a valid session is never throttled.

The counts are per process, in memory, and bounded: at most ``MAX_CLIENTS`` addresses are tracked (the one seen
longest ago is dropped first).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict, deque
from datetime import datetime, timedelta
from threading import Lock

from fastapi import HTTPException
from starlette.requests import HTTPConnection

__all__ = ["MAX_CLIENTS", "LoginThrottle", "TooManyLogins", "client_address"]

logger = logging.getLogger("scheduling.web")

#: The most client addresses whose failures are remembered at once.
MAX_CLIENTS = 10_000


class TooManyLogins(HTTPException):
    """429: this client failed to log in too often lately; ``Retry-After`` says when it may try again."""


def client_address(request: HTTPConnection) -> str:
    return request.client.host if request.client is not None else "unknown"


class LoginThrottle:
    """Recent failed logins per client address."""

    def __init__(self) -> None:
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()
        self._lock = Lock()

    def _recent(self, client: str, now: datetime, window: timedelta) -> deque[datetime]:
        failures = self._failures.get(client)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - window:
            failures.popleft()
        if not failures:
            del self._failures[client]
        return failures

    def check(self, request: HTTPConnection, now: datetime, *, attempts: int, window: timedelta) -> None:
        """Raise 429 when this client has ``attempts`` failures within ``window`` before ``now``."""
        client = client_address(request)
        with self._lock:
            failures = self._recent(client, now, window)
            if len(failures) < attempts:
                return
            wait = max(1, math.ceil((failures[0] + window - now).total_seconds()))
        raise TooManyLogins(
            status_code=429,
            detail=f"too many failed logins from {client}: {len(failures)} in {_seconds(window)}; "
            f"try again in {wait} s",
            headers={"Retry-After": str(wait), "Cache-Control": "no-store"},
        )

    def failed(self, request: HTTPConnection, now: datetime, how: str, *, window: timedelta) -> None:
        """Count and log one failed login of this client (``how``: the way the token was sent)."""
        client = client_address(request)
        with self._lock:
            failures = self._recent(client, now, window)
            failures.append(now)
            self._failures[client] = failures
            self._failures.move_to_end(client)
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)
            count = len(failures)
        logger.warning(
            "failed dashboard login from %s (%s): %d in the last %s",
            client,
            how,
            count,
            _seconds(window),
            extra={"action": "login_failed", "client": client, "credentials": how, "failures": count},
        )


def _seconds(window: timedelta) -> str:
    return f"{window.total_seconds():g} s"
