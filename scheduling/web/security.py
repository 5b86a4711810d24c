"""Authentication and CSRF protection for every dashboard route.

Who may in (``require_auth``, a FastAPI dependency on every route but the login form):

- ``Authorization: Bearer <token>`` equal to ``settings.token`` (compared in constant time); another scheme
  (``Basic`` from a proxy's own password, say) is not the dashboard's and is ignored;
- or the session cookie a browser gets by opening any page once with ``?token=<token>`` (it is then redirected to
  the same URL without the token, as Jupyter does) or by posting the token to the ``/login`` form. A valid session
  wins over a stale ``?token=`` in the URL, which is then only removed;
- or, when the mounting application passed ``authenticate=``, that dependency of its own instead of the token: it
  raises ``HTTPException(401/403)`` or returns the user.

Session cookies are signed with a key derived from ``session_secret`` and the token, so a new token ends every
session. Unauthenticated requests get 401: the API with ``WWW-Authenticate: Bearer``, pages (``Accept: text/html``)
the login form, which never contains the token.

Mutations (POST, PUT, PATCH, DELETE) are refused with 403 when the dashboard is read-only, when the browser says the
request is cross-site (``Sec-Fetch-Site: cross-site`` or ``same-site``), when ``Origin`` is neither the request's own
scheme and host nor one of ``settings.allowed_origins``, and, unless the request was authenticated by the dashboard's
own bearer token (which browsers never send by themselves), when ``X-CSRF-Token`` is not ``csrf_token(request)``,
which pages put in ``<meta name="csrf-token">`` and send from JavaScript: an HMAC of the session cookie, or, with
``authenticate=``, of a random per-browser ``cqrs_scheduling_csrf`` cookie the dashboard sets.

Every response carries hardening headers (``SecurityHeaders``): no framing, a same-origin Content Security Policy,
``nosniff`` and a same-origin referrer policy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
from typing import Annotated, Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPBearer
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ._actor import PRINCIPAL_KEY
from .context import DashboardContext, get_context

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "MUTATING_METHODS",
    "SECURITY_HEADERS",
    "SESSION_COOKIE",
    "LoginRequired",
    "SecurityHeaders",
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
#: With ``authenticate=``: the random per-browser cookie the CSRF token is an HMAC of (HttpOnly, SameSite=Strict).
CSRF_COOKIE = "cqrs_scheduling_csrf"
MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: The headers of every dashboard response (a response that sets one of its own keeps it).
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

#: ``request.scope`` keys: how the request was authenticated, and a CSRF cookie to set on the response.
_AUTHENTICATED_BY = "cqrs_scheduling.authenticated_by"
_NEW_CSRF_COOKIE = "cqrs_scheduling.new_csrf_cookie"

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
    if not value or not value.isascii() or value.count(".") != 2:
        return False  # a non-ASCII cookie is forged: never reaches compare_digest, which only takes ASCII str
    body, _, signature = value.rpartition(".")
    if not hmac.compare_digest(signature.encode(), _sign(ctx.secret, "session", body).encode()):
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
    """The CSRF token pages must send as ``X-CSRF-Token`` on mutations, for this browser.

    With the token: an HMAC of the session cookie, stable for the life of the session. With ``authenticate=``: an
    HMAC of the browser's random ``cqrs_scheduling_csrf`` cookie; when the request has none, a new one is made and
    set on the response (by ``SecurityHeaders``), so the page rendered now carries a token that works.
    """
    ctx = get_context(request)
    if ctx.authenticate is None:
        return session_csrf_token(ctx, request.cookies.get(SESSION_COOKIE, ""))
    return session_csrf_token(ctx, _csrf_cookie(request))


def _csrf_cookie(request: Request) -> str:
    """The browser's CSRF cookie, or the new one this response will set."""
    value = request.cookies.get(CSRF_COOKIE, "")
    if len(value) >= 32 and value.isascii():
        return value
    new: str | None = request.scope.get(_NEW_CSRF_COOKIE)
    if new is None:
        new = secrets.token_urlsafe(32)
        request.scope[_NEW_CSRF_COOKIE] = new
    return new


def session_csrf_token(ctx: DashboardContext, session: str) -> str:
    """The CSRF token of the session cookie value ``session`` (``""`` without one)."""
    return _sign(ctx.secret, "csrf", session)


def _token_matches(ctx: DashboardContext, candidate: str) -> bool:
    token = ctx.settings.token
    return token is not None and hmac.compare_digest(
        candidate.encode(errors="surrogateescape"), token.get_secret_value().encode()
    )


def _bearer_credentials(request: Request) -> str | None:
    """The credentials of an ``Authorization: Bearer ...`` header; None without one or with another scheme."""
    scheme, _, credentials = request.headers.get("authorization", "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else None


def _without_token(url: str) -> str:
    """``url`` (a path and query) without any ``token`` query parameter: a token never goes into a page."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    return parts.path + (f"?{urlencode(query)}" if query else "")


def _same_url_without_token(request: Request) -> str:
    """This request's path (percent-encoded, as the browser sent it) and query, minus ``token``."""
    remaining = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    path = "/" + quote(request.url.path, safe="/:@!$&'()*+,;=-._~").lstrip("/")  # never "//host": off the site
    return path + (f"?{urlencode(remaining)}" if remaining else "")


# -- authentication ---------------------------------------------------------------------------------------------


async def authenticate_with_token(
    request: Request,
    ctx: Annotated[DashboardContext, Depends(get_context)],
    bearer: Annotated[Any, Depends(_bearer)] = None,
) -> str:
    """The default authentication: the bearer token, a valid session cookie, or a one-time ``?token=`` login.

    Replaced by the mounting application's ``authenticate=`` dependency when it gives one. Returns how the request
    was authenticated (``"bearer"`` or ``"cookie"``). Only ``Authorization: Bearer`` is the dashboard's: another
    scheme (a proxy's ``Basic``) is ignored and the session cookie decides.

    Raises:
        LoginRequired: no credentials, or wrong ones.
        HTTPException: 303 to the same URL without ``?token=``: after a successful token login (which sets the
            cookie), or when a valid session already authenticates the browser (the stale token is only removed).
    """
    credentials = _bearer_credentials(request)
    if credentials is not None:
        ctx.check_login_throttle(request)
        if _token_matches(ctx, credentials):
            request.scope[_AUTHENTICATED_BY] = "bearer"
            return "bearer"
        ctx.login_failed(request, "bearer token")
        raise LoginRequired("invalid credentials: the bearer token does not match")
    has_session = _valid_session(ctx, request.cookies.get(SESSION_COOKIE))
    query_token = request.query_params.get("token")
    if query_token is not None and request.method in ("GET", "HEAD"):
        if not has_session:
            ctx.check_login_throttle(request)
        logs_in = _token_matches(ctx, query_token)
        if not (logs_in or has_session):
            ctx.login_failed(request, "?token= in the URL")
            raise LoginRequired("invalid token")
        target = _same_url_without_token(request)
        headers = {"Location": target, "Cache-Control": "no-store"}
        if logs_in:
            redirect = RedirectResponse(target, status_code=303)
            _set_session_cookie(redirect, request, ctx)
            headers["Set-Cookie"] = redirect.headers["set-cookie"]
        raise HTTPException(status_code=303, detail="logged in", headers=headers)
    if has_session:
        return "cookie"
    raise LoginRequired()


def _refuse_cross_site(request: Request, ctx: DashboardContext) -> None:
    """403 unless the browser (if it says anything) says the request comes from this very site.

    ``Origin`` must be the request's own scheme and ``Host`` (as the server sees them: behind a proxy, forward
    ``Host`` and let the server trust ``X-Forwarded-Proto``) or one of ``settings.allowed_origins``.
    """
    site = request.headers.get("sec-fetch-site")
    if site in ("cross-site", "same-site"):
        raise HTTPException(status_code=403, detail=f"cross-site request refused (Sec-Fetch-Site: {site})")
    origin = request.headers.get("origin")
    if origin is not None:
        own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}".lower()
        sent = origin.rstrip("/").lower()
        if sent != own and sent not in ctx.settings.allowed_origins:
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
        _refuse_cross_site(request, ctx)
        if request.scope.get(_AUTHENTICATED_BY) != "bearer":
            sent = request.headers.get(CSRF_HEADER, "").encode(errors="surrogateescape")
            expected = _expected_csrf(request, ctx)
            if expected is None or not hmac.compare_digest(sent, expected.encode()):
                raise HTTPException(status_code=403, detail=f"missing or wrong {CSRF_HEADER} header")
    request.scope[PRINCIPAL_KEY] = principal  # who acts, for the audit trail (``request_actor``)
    return principal


def _expected_csrf(request: Request, ctx: DashboardContext) -> str | None:
    """The token a mutation must carry; None when the browser has no session (or CSRF cookie) to tie it to."""
    if ctx.authenticate is None:
        session = request.cookies.get(SESSION_COOKIE, "")
        return session_csrf_token(ctx, session) if session else None
    cookie = request.cookies.get(CSRF_COOKIE, "")
    return session_csrf_token(ctx, cookie) if len(cookie) >= 32 and cookie.isascii() else None


# -- response headers -------------------------------------------------------------------------------------------


class SecurityHeaders:
    """ASGI middleware: ``SECURITY_HEADERS`` on every response, and the new CSRF cookie ``csrf_token`` made."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    if name not in headers:
                        headers[name] = value
                new_cookie = scope.get(_NEW_CSRF_COOKIE)
                if new_cookie is not None:
                    response = Response()
                    response.set_cookie(
                        CSRF_COOKIE,
                        new_cookie,
                        path=str(scope.get("root_path", "")).rstrip("/") + "/",
                        secure=scope.get("scheme") == "https",
                        httponly=True,
                        samesite="strict",
                    )
                    headers.append("set-cookie", response.headers["set-cookie"])
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- login form -------------------------------------------------------------------------------------------------

router = APIRouter(include_in_schema=False)

_LOGIN_STYLE = """
body { font: 16px/1.5 system-ui, sans-serif; color: #1a1a1a; background: #fff; margin: 0; }
main { max-width: 24rem; margin: 4rem auto; padding: 0 1rem; }
label { display: block; font-weight: 600; margin-bottom: .25rem; }
input { width: 100%; box-sizing: border-box; font: inherit; padding: .5rem; border: 1px solid #555; }
button { margin-top: 1rem; font: inherit; padding: .5rem 1rem; background: #0b57d0; color: #fff; border: 0; }
:focus-visible { outline: 3px solid #a33b00; outline-offset: 2px; }
.error { color: #a50e0e; }
"""
#: The login page's CSP: its one inline style allowed by hash (the form cannot load /static before login).
_LOGIN_CSP = (
    SECURITY_HEADERS["Content-Security-Policy"]
    + "; style-src 'sha256-"
    + base64.b64encode(hashlib.sha256(_LOGIN_STYLE.encode()).digest()).decode()
    + "'"
)

_LOGIN_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Log in · {title}</title>
<style>{style}</style>
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
        style=_LOGIN_STYLE,
        title=html.escape(ctx.settings.title),
        message=message,
        action=html.escape(root + "login"),
        next=html.escape(_safe_next(request, next_url)),
    )
    return HTMLResponse(
        page, status_code=401, headers={"Cache-Control": "no-store", "Content-Security-Policy": _LOGIN_CSP}
    )


def _safe_next(request: Request, candidate: str | None) -> str:
    """A redirect target inside this app only (never another site), without any ``token``: else the app's root."""
    root = mount_root(request)
    if candidate and candidate.startswith(root) and not candidate.startswith("//") and "\\" not in candidate:
        target = _without_token(candidate)
        segments = unquote(urlsplit(target).path).split("/")
        if target and "." not in segments and ".." not in segments:  # "/scheduling/../x" would leave the app
            return target
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
    _refuse_cross_site(request, ctx)
    ctx.check_login_throttle(request)
    if not _token_matches(ctx, token):
        ctx.login_failed(request, "login form")
        return login_page(request, error="That token is not right.", next_url=next)
    response = RedirectResponse(_safe_next(request, next), status_code=303)
    _set_session_cookie(response, request, ctx)
    return response


@router.post("/logout")
async def logout(
    request: Request,
    ctx: Annotated[DashboardContext, Depends(get_context)],
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    """Forget the session cookie and go to the login form (client-side: the cookie itself stays valid until it
    expires or the token or secret changes). Cross-site posts are refused (403), and so is a post from a session
    without its CSRF token (the ``csrf`` form field of the pages' Log out button, or ``X-CSRF-Token``)."""
    _refuse_cross_site(request, ctx)
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        sent = (csrf if csrf is not None else request.headers.get(CSRF_HEADER, "")).encode(errors="surrogateescape")
        if not hmac.compare_digest(sent, session_csrf_token(ctx, session).encode()):
            raise HTTPException(status_code=403, detail=f"missing or wrong {CSRF_HEADER} header or csrf field")
    response = RedirectResponse(mount_root(request) + "login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=mount_root(request), httponly=True, samesite="strict")
    return response
