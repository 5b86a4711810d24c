"""``create_dashboard_app``: the dashboard and its admin API as one FastAPI app, to mount or to serve standalone.

The app opens and closes nothing it was given: the caller owns the store's lifecycle (open it before the first
request, close it after the last, for example in the mounting application's lifespan). Every URL it makes is relative
to where it is mounted (``request.scope["root_path"]``), so ``user_app.mount("/scheduling", dashboard)`` just works.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from scheduling.clock import Clock, SystemClock
from stores.base import ScheduledCommandStore
from stores.errors import UnreadableEntryError

from . import _api_history, _entries_page, api, pages, security
from ._throttle import TooManyLogins
from .context import STATE_KEY, TEMPLATES_KEY, DashboardContext, get_context
from .security import LoginRequired, require_auth
from .settings import DashboardSettings

__all__ = ["create_dashboard_app"]

_HERE = Path(__file__).parent
_GAUGES_KEY = "cqrs_scheduling_gauges"


def create_dashboard_app(
    store: ScheduledCommandStore,
    *,
    settings: DashboardSettings | None = None,
    authenticate: Callable[..., Any] | None = None,
    clock: Clock | None = None,
) -> FastAPI:
    """Build the dashboard: HTML pages, the JSON API under ``/api``, ``/metrics`` and ``/openapi.json``.

    Args:
        store: An opened store (the app never opens or closes it).
        settings: Token, read-only mode, refresh period, title. Default: ``DashboardSettings()``.
        authenticate: A FastAPI dependency of the mounting application that authenticates a request (raising
            ``HTTPException(401)`` or ``(403)``, or returning the user); it replaces the token.
        clock: Where "now" comes from. Default: the system clock.

    Raises:
        ValueError: neither ``settings.token`` nor ``authenticate`` is given: the dashboard would be open to anyone.

    .. versionadded:: 0.1
    """
    settings = settings if settings is not None else DashboardSettings()
    if settings.token is None and authenticate is None:
        raise ValueError(
            "the dashboard needs authentication: give DashboardSettings(token=...) or authenticate=<a FastAPI "
            "dependency of your application>"
        )
    if settings.token is not None and not settings.token.get_secret_value():
        raise ValueError("DashboardSettings(token=...) is empty: give a non-empty token")
    secret = (
        settings.session_secret.get_secret_value().encode()
        if settings.session_secret is not None
        else secrets.token_bytes(32)
    )
    if settings.token is not None:  # sessions and CSRF tokens of an older token are refused
        secret = hmac.new(secret, b"token:" + settings.token.get_secret_value().encode(), hashlib.sha256).digest()
    context = DashboardContext(
        store=store,
        settings=settings,
        clock=clock if clock is not None else SystemClock(),
        authenticate=authenticate,
        secret=secret,
    )

    app = FastAPI(
        title=f"{settings.title} admin API",
        summary="Scheduled commands: counts, entries, dead letters, purge and recurring schedules.",
        version=_version(),
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; the OpenAPI document is served below
        redoc_url=None,
        openapi_url=None,
    )
    setattr(app.state, STATE_KEY, context)
    if authenticate is not None:
        app.dependency_overrides[security.authenticate_with_token] = authenticate
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(UnreadableEntryError, _unreadable_entry)
    app.add_exception_handler(TooManyLogins, _too_many_logins)
    app.add_middleware(security.SecurityHeaders)

    authenticated = [Depends(require_auth)]
    app.include_router(security.router)
    app.include_router(api.read_router, dependencies=authenticated)
    app.include_router(api.write_router, dependencies=authenticated, include_in_schema=not settings.read_only)
    app.include_router(_api_history.read_router, dependencies=authenticated)
    app.include_router(_api_history.write_router, dependencies=authenticated, include_in_schema=not settings.read_only)
    app.include_router(_infrastructure_router(app), dependencies=authenticated)
    setattr(app.state, TEMPLATES_KEY, Jinja2Templates(directory=_HERE / "templates"))
    app.include_router(pages.router, dependencies=authenticated)
    app.include_router(_entries_page.router, dependencies=authenticated)
    return app


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cqrs-scheduling")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


async def _login_required(request: Request, exc: Exception) -> Response:
    """401: the login form for browsers, JSON with ``WWW-Authenticate: Bearer`` for programs."""
    assert isinstance(exc, StarletteHTTPException)
    if security.wants_html(request):
        query = request.url.query
        page = security.login_page(request, next_url=request.url.path + (f"?{query}" if query else ""))
        # login_page strips any ``token`` from next_url: a stale token never goes into the form
        page.headers["WWW-Authenticate"] = "Bearer"
        return page
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _too_many_logins(request: Request, exc: Exception) -> Response:
    """429: the login form saying how long to wait, for browsers; JSON for programs; ``Retry-After`` for both."""
    assert isinstance(exc, StarletteHTTPException)
    if security.wants_html(request) or request.url.path.endswith("/login"):
        page = security.login_page(request, error=f"T{str(exc.detail)[1:]}.")
        page.status_code = 429
        page.headers.update(exc.headers or {})
        return page
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def _unreadable_entry(request: Request, exc: Exception) -> Response:
    """422: a stored row that cannot be read (an action's explanation read it), said in one line, never a 500."""
    return JSONResponse({"detail": str(exc)}, status_code=422)


def _infrastructure_router(app: FastAPI) -> APIRouter:
    """``/openapi.json``, ``/static/...`` and ``/metrics``: authenticated like every other route."""
    router = APIRouter(include_in_schema=False)
    static = StaticFiles(directory=_HERE / "static")

    @router.get("/openapi.json")
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/static/{path:path}", name="static")
    async def static_file(path: str, request: Request) -> Response:
        return await static.get_response(path, request.scope)

    @router.get("/metrics")
    async def metrics(request: Request, ctx: Annotated[DashboardContext, Depends(get_context)]) -> Response:
        """Prometheus exposition of the process's default registry (the counters and histograms of a
        ``PrometheusObserver`` in this process) with the store's gauges (``StoreGauges``), refreshed now."""
        from scheduling.metrics import StoreGauges, render

        gauges = getattr(app.state, _GAUGES_KEY, None)
        if not isinstance(gauges, StoreGauges):
            gauges = StoreGauges(ctx.store, clock=ctx.clock)
            setattr(app.state, _GAUGES_KEY, gauges)
        await gauges.refresh()
        body, content_type = render(gauges.registry, accept=request.headers.get("accept"))
        return Response(body, media_type=content_type)

    return router
