"""Authentication and CSRF protection for every dashboard route.

Who may in (``require_auth``, a FastAPI dependency on every route but the login form):

- ``Authorization: Bearer <token>`` equal to ``settings.token`` (compared in constant time);
- or the session cookie a browser gets by opening any page once with ``?token=<token>`` (it is then redirected to
  the same URL without the token, as Jupyter does) or by posting the token to the ``/login`` form;
- or, when the mounting application passed ``authenticate=``, that dependency of its own instead of the token: it
  raises ``HTTPException(401/403)`` or returns the user.

Unauthenticated requests get 401: the API with ``WWW-Authenticate: Bearer``, pages (``Accept: text/html``) the
login form.

Mutations (POST, PUT, PATCH, DELETE) are refused with 403 when the dashboard is read-only, when the browser says the
request is cross-site (``Sec-Fetch-Site: cross-site`` or ``same-site``), when ``Origin`` is not the request's own
scheme and host, and, unless the request carries its own ``Authorization: Bearer`` header (which browsers never add by
themselves), when ``X-CSRF-Token`` is not ``csrf_token(request)``: an HMAC of the session under the app's secret,
which pages put in ``<meta name="csrf-token">`` and send from JavaScript.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPBearer

from .context import DashboardContext, get_context

__all__ = [
    "CSRF_HEADER",
    "MUTATING_METHODS",
    "SESSION_COOKIE",
    "LoginRequired",
    "authenticate_with_token",
    "csrf_token",
    "login_page",
    "mount_root",
    "require_auth",
    "router",
    "session_csrf_token",
    "wants_html",
]

#: The cookie holding a browser's session (HttpOnly, SameSite=Strict, path = the app's mount root).
SESSION_COOKIE = "cqrs_scheduling_session"
#: The header carrying the CSRF token on cookie-authenticated mutations.
CSRF_HEADER = "X-CSRF-Token"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_bearer = HTTPBearer(auto_error=False, description="The dashboard token (settings.token).")


class LoginRequired(HTTPException):
    """401: no valid credentials. Pages answer it with the login form, the API with ``WWW-Authenticate: Bearer``."""

    def __init__(self, detail: str = "authentication required: send Authorization: Bearer <token>") -> None:
        super().__init__(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def mount_root(request: Request) -> str:
    """The path the app is mounted at, with a trailing slash (``/`` standalone, ``/scheduling/`` when mounted)."""
    return str(request.scope.get("root_path", "")).rstrip("/") + "/"


def wants_html(request: Request) -> bool:
    """Whether the client is a browser asking for a page rather than a program asking for JSON."""
    return "text/html" in request.headers.get("accept", "")


# -- sessions -------------------------------------------------------------------------------------------------


def _sign(secret: bytes, purpose: str, value: str) -> str:
    return hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def _new_session(ctx: DashboardContext) -> str:
    issued = int(ctx.now().timestamp())
    body = f"{issued}.{secrets.token_urlsafe(16)}"
    return f"{body}.{_sign(ctx.secret, 'session', body)}"


def _valid_session(ctx: DashboardContext, value: str | None) -> bool:
    if not value or value.count(".") != 2:
        return False
    body, _, signature = value.rpartition(".")
    if not hmac.compare_digest(signature, _sign(ctx.secret, "session", body)):
        return False
    issued = int(body.split(".", 1)[0]) if body.split(".", 1)[0].isdigit() else -1
    age = ctx.now().timestamp() - issued
    return 0 <= age <= ctx.settings.session_lifetime.total_seconds()


def _set_session_cookie(response: Response, request: Request, ctx: DashboardContext) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        _new_session(ctx),
        max_age=int(ctx.settings.session_lifetime.total_seconds()),
        path=mount_root(request),
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def csrf_token(request: Request) -> str:
    """The CSRF token pages must send as ``X-CSRF-Token`` on mutations: an HMAC of this browser's session.

    Stable for the life of the session; without a session cookie (bearer token or the mounting application's own
    authentication) it is tied to the app's secret alone.
    """
    return session_csrf_token(get_context(request), request.cookies.get(SESSION_COOKIE, ""))


def session_csrf_token(ctx: DashboardContext, session: str) -> str:
    """The CSRF token of the session cookie value ``session`` (``""`` without one)."""
    return _sign(ctx.secret, "csrf", session)


def _token_matches(ctx: DashboardContext, candidate: str) -> bool:
    token = ctx.settings.token
    return token is not None and hmac.compare_digest(candidate.encode(), token.get_secret_value().encode())


# -- authentication ---------------------------------------------------------------------------------------------


async def authenticate_with_token(
    request: Request,
    ctx: Annotated[DashboardContext, Depends(get_context)],
    bearer: Annotated[Any, Depends(_bearer)] = None,
) -> str:
    """The default authentication: the bearer token, a valid session cookie, or a one-time ``?token=`` login.

    Replaced by the mounting application's ``authenticate=`` dependency when it gives one. Returns how the request
    was authenticated (``"bearer"`` or ``"cookie"``).

    Raises:
        LoginRequired: no credentials, or wrong ones.
        HTTPException: 303 to the same URL without ``?token=`` after a successful token login (sets the cookie).
    """
    authorization = request.headers.get("authorization")
    if authorization is not None:
        if bearer is not None and _token_matches(ctx, bearer.credentials):
            return "bearer"
        raise LoginRequired("invalid credentials: the bearer token does not match")
    query_token = request.query_params.get("token")
    if query_token is not None and request.method in ("GET", "HEAD"):
        if not _token_matches(ctx, query_token):
            raise LoginRequired("invalid token")
        remaining = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        path = "/" + request.url.path.lstrip("/")  # never "//host": that would leave the site
        target = path + (f"?{urlencode(remaining)}" if remaining else "")
        redirect = RedirectResponse(target, status_code=303)
        _set_session_cookie(redirect, request, ctx)
        raise HTTPException(
            status_code=303,
            detail="logged in",
            headers={"Location": target, "Set-Cookie": redirect.headers["set-cookie"], "Cache-Control": "no-store"},
        )
    if _valid_session(ctx, request.cookies.get(SESSION_COOKIE)):
        return "cookie"
    raise LoginRequired()


def _refuse_cross_site(request: Request) -> None:
    """403 unless the browser (if it says anything) says the request comes from this very site."""
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        raise HTTPException(status_code=403, detail=f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        if origin.rstrip("/").lower() != own.lower():
            raise HTTPException(
                status_code=403, detail=f"cross-origin request refused (Origin {origin!r} is not {own})"
            )


def _refuse_read_only(ctx: DashboardContext) -> None:
    if ctx.settings.read_only:
        raise HTTPException(status_code=403, detail="the dashboard is read-only: changes are disabled")


async def require_auth(
    request: Request,
    ctx: Annotated[DashboardContext, Depends(get_context)],
    principal: Annotated[Any, Depends(authenticate_with_token)],
) -> Any:
    """FastAPI dependency on every dashboard route: authenticate, and guard mutations (read-only mode, CSRF).

    Returns the principal: ``"bearer"`` or ``"cookie"`` with the token, else whatever the mounting application's
    ``authenticate=`` dependency returned.

    Raises:
        LoginRequired: 401, not authenticated.
        HTTPException: 403, a mutation refused (read-only, cross-site, or missing/wrong ``X-CSRF-Token``).
    """
    if request.method in MUTATING_METHODS:
        _refuse_read_only(ctx)
        _refuse_cross_site(request)
        if not request.headers.get("authorization", "").lower().startswith("bearer "):
            sent = request.headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(sent.encode(), csrf_token(request).encode()):
                raise HTTPException(status_code=403, detail=f"missing or wrong {CSRF_HEADER} header")
    return principal


# -- login form -------------------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)

_LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Log in · {title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; color: #1a1a1a; background: #fff; margin: 0; }}
main {{ max-width: 24rem; margin: 4rem auto; padding: 0 1rem; }}
label {{ display: block; font-weight: 600; margin-bottom: .25rem; }}
input {{ width: 100%; box-sizing: border-box; font: inherit; padding: .5rem; border: 1px solid #555; }}
button {{ margin-top: 1rem; font: inherit; padding: .5rem 1rem; background: #0b57d0; color: #fff; border: 0; }}
:focus-visible {{ outline: 3px solid #a33b00; outline-offset: 2px; }}
.error {{ color: #a50e0e; }}
</style>
</head>
<body>
<main>
<h1>{title}</h1>
{message}
<form method="post" action="{action}">
<input type="hidden" name="next" value="{next}">
<label for="token">Dashboard token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Log in</button>
</form>
</main>
</body>
</html>
"""


def login_page(request: Request, *, error: str | None = None, next_url: str | None = None) -> HTMLResponse:
    """The login form (status 401), posting the token to ``/login`` and then going to ``next_url``."""
    ctx = get_context(request)
    root = mount_root(request)
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    if ctx.authenticate is not None:
        message += "<p>This dashboard uses the application's own sign-in.</p>"
    page = _LOGIN_PAGE.format(
        title=html.escape(ctx.settings.title),
        message=message,
        action=html.escape(root + "login"),
        next=html.escape(_safe_next(request, next_url)),
    )
    return HTMLResponse(page, status_code=401, headers={"Cache-Control": "no-store"})


def _safe_next(request: Request, candidate: str | None) -> str:
    """A redirect target inside this app only (never another site): else the app's root."""
    root = mount_root(request)
    if candidate and candidate.startswith(root) and not candidate.startswith("//") and "\\" not in candidate:
        return candidate
    return root


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> HTMLResponse:
    return login_page(request, next_url=next)


@router.post("/login")
async def login(
    request: Request,
    ctx: Annotated[DashboardContext, Depends(get_context)],
    token: Annotated[str, Form()] = "",
    next: Annotated[str | None, Form()] = None,
) -> Response:
    """Check the posted token; set the session cookie and go to ``next``. Cross-site posts are refused (403)."""
    _refuse_cross_site(request)
    if not _token_matches(ctx, token):
        return login_page(request, error="That token is not right.", next_url=next)
    response = RedirectResponse(_safe_next(request, next), status_code=303)
    _set_session_cookie(response, request, ctx)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Forget the session cookie and go to the login form."""
    _refuse_cross_site(request)
    response = RedirectResponse(mount_root(request) + "login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=mount_root(request), httponly=True, samesite="strict")
    return response
