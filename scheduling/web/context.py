"""``DashboardContext``: what every dashboard route needs (store, settings, clock), kept on ``app.state``.

Routes get it with the FastAPI dependency ``get_context``::

    @router.get("/something")
    async def something(ctx: Annotated[DashboardContext, Depends(get_context)]) -> ...:
        await ctx.store.count_by_status()
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.requests import HTTPConnection

from scheduling.clock import Clock
from stores.base import ScheduledCommandStore

from ._throttle import LoginThrottle
from .settings import DashboardSettings

__all__ = ["STATE_KEY", "TEMPLATES_KEY", "DashboardContext", "get_context"]

#: The ``app.state`` attribute holding the context.
STATE_KEY = "cqrs_scheduling_dashboard"
#: The ``app.state`` attribute holding the ``Jinja2Templates`` of the pages.
TEMPLATES_KEY = "cqrs_scheduling_templates"


@dataclass(frozen=True)
class DashboardContext:
    """The dashboard's dependencies. The store is opened and closed by whoever created the app, never by it.

    .. versionadded:: 0.1
    """

    #: The opened store the dashboard reads and changes.
    store: ScheduledCommandStore
    settings: DashboardSettings
    #: Where "now" comes from (overdue lag, throughput window, requeue and cancel times, session expiry).
    clock: Clock
    #: The mounting application's own authentication dependency, or None to use ``settings.token``.
    authenticate: Callable[..., Any] | None = None
    #: The key signing session cookies and CSRF tokens (``settings.session_secret`` or random per app).
    secret: bytes = field(default=b"", repr=False)
    #: Recent failed logins per client address (``settings.login_attempts`` within ``settings.login_window``).
    login_throttle: LoginThrottle = field(default_factory=LoginThrottle, repr=False, compare=False)

    def now(self) -> datetime:
        return self.clock.now()

    def check_login_throttle(self, request: HTTPConnection) -> None:
        """429 when this client failed to log in too often lately (see ``_throttle.py``)."""
        window = self.settings.login_window
        self.login_throttle.check(request, self.now(), attempts=self.settings.login_attempts, window=window)

    def login_failed(self, request: HTTPConnection, how: str) -> None:
        self.login_throttle.failed(request, self.now(), how, window=self.settings.login_window)


def get_context(request: HTTPConnection) -> DashboardContext:
    """FastAPI dependency: the context of the dashboard app serving ``request``.

    Raises:
        RuntimeError: the request is not served by an app made by ``create_dashboard_app``.
    """
    context = getattr(request.app.state, STATE_KEY, None)
    if not isinstance(context, DashboardContext):
        raise RuntimeError("no dashboard context on this app: build it with create_dashboard_app(store, ...)")
    return context
