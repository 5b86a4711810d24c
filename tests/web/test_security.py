"""Who may in, and which changes are refused: authentication on every route, CSRF and cross-site refusals on every
mutation, read-only mode, the mounting application's own authentication, and mounting under a path."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any

import httpx
import pytest
from dashboard_support import BASE_URL, TOKEN, http_client, log_in
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.routing import APIRoute

from scheduling import ManualClock
from scheduling.web import DashboardSettings, create_dashboard_app
from scheduling.web.context import STATE_KEY
from scheduling.web.security import SESSION_COOKIE, session_csrf_token
from stores import ScheduledCommandStore

MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
#: Routes open to anyone: the login form itself and logging out.
PUBLIC = {"/login", "/logout"}


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every route, included routers unfolded (FastAPI keeps them as included-router objects)."""
    found: list[APIRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found += api_routes(included.routes)
        else:
            assert isinstance(route, APIRoute), route  # no plain Starlette route escapes the dependencies
            found.append(route)
    return found


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) of every route of the app, path parameters filled in."""
    routes = []
    for route in api_routes(app.routes):
        path = re.sub(r"\{path:path\}", "dashboard.css", route.path)
        path = re.sub(r"\{[^}]+\}", "some-id", path)
        routes += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return routes


def protected_routes(app: FastAPI) -> list[tuple[str, str]]:
    return [(method, path) for method, path in every_route(app) if path not in PUBLIC]


def mutations(app: FastAPI) -> list[tuple[str, str]]:
    return [(method, path) for method, path in protected_routes(app) if method in MUTATING]


def assert_set_cookie(response: httpx.Response, *, path: str, secure: bool) -> str:
    header = response.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower(): part.strip() for part in header.split(";")}
    assert header.startswith(f"{SESSION_COOKIE}=")
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "samesite=strict"
    assert attributes["path"] == f"Path={path}"
    assert ("secure" in attributes) is secure
    return header


# -- authentication ---------------------------------------------------------------------------------------------


async def test_every_route_but_login_needs_authentication(dashboard: FastAPI, anonymous: httpx.AsyncClient) -> None:
    """Unauthenticated: 401 with ``WWW-Authenticate: Bearer`` on every route, /metrics, /openapi.json and the
    static files included."""
    routes = protected_routes(dashboard)
    paths = {path for _, path in routes}
    assert {"/metrics", "/openapi.json", "/static/dashboard.css", "/api/overview", "/"} <= paths
    for method, path in routes:
        response = await anonymous.request(method, path)
        assert response.status_code == 401, (method, path, response.status_code)
        assert response.headers["www-authenticate"] == "Bearer", (method, path)


async def test_a_wrong_token_is_refused_everywhere(dashboard: FastAPI) -> None:
    async with http_client(dashboard, headers={"Authorization": "Bearer not-the-token"}) as wrong:
        for method, path in protected_routes(dashboard):
            assert (await wrong.request(method, path)).status_code == 401, (method, path)
    async with http_client(dashboard, headers={"Authorization": f"Basic {TOKEN}"}) as basic:
        assert (await basic.get("/api/overview")).status_code == 401
    async with http_client(dashboard) as anonymous:
        assert (await anonymous.get("/api/overview", params={"token": "not-the-token"})).status_code == 401


async def test_pages_answer_unauthenticated_browsers_with_the_login_form(anonymous: httpx.AsyncClient) -> None:
    """A browser (Accept: text/html) gets the login form, status 401: a label, a password input and a button."""
    response = await anonymous.get("/entries", params={"status": "FAILED"}, headers={"Accept": "text/html"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert '<label for="token">' in page and 'id="token"' in page and 'type="password"' in page
    assert '<button type="submit">' in page
    assert 'action="/login"' in page and 'value="/entries?status=FAILED"' in page  # back there after login


async def test_token_in_the_url_logs_a_browser_in_and_is_removed(anonymous: httpx.AsyncClient) -> None:
    """``GET <page>?token=...``: a session cookie (HttpOnly, SameSite=Strict, path /) and a redirect to the same
    URL without the token; the cookie then authenticates."""
    response = await anonymous.get("/entries", params={"status": "FAILED", "token": TOKEN})
    assert response.status_code == 303
    assert response.headers["location"] == "/entries?status=FAILED"
    assert_set_cookie(response, path="/", secure=False)
    assert TOKEN not in response.headers["set-cookie"]
    assert (await anonymous.get("/api/overview")).status_code == 200


async def test_the_cookie_is_secure_over_https(dashboard: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=dashboard), base_url="https://testserver") as tls:
        response = await tls.get("/", params={"token": TOKEN})
        assert_set_cookie(response, path="/", secure=True)


async def test_login_form_sets_the_session_and_goes_to_next(anonymous: httpx.AsyncClient) -> None:
    """POST /login with the right token: cookie and 303 to ``next``; wrong token: the form again, 401, an alert."""
    wrong = await anonymous.post("/login", data={"token": "nope", "next": "/entries"}, headers={"Origin": BASE_URL})
    assert wrong.status_code == 401 and 'role="alert"' in wrong.text
    assert SESSION_COOKIE not in anonymous.cookies

    right = await anonymous.post("/login", data={"token": TOKEN, "next": "/entries"}, headers={"Origin": BASE_URL})
    assert right.status_code == 303 and right.headers["location"] == "/entries"
    assert_set_cookie(right, path="/", secure=False)
    assert (await anonymous.get("/api/overview")).status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "elsewhere"])
async def test_login_never_redirects_off_the_dashboard(anonymous: httpx.AsyncClient, target: str) -> None:
    response = await anonymous.post("/login", data={"token": TOKEN, "next": target})
    assert response.status_code == 303 and response.headers["location"] == "/"


@pytest.mark.parametrize(
    "headers", [{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}]
)
async def test_a_cross_site_login_post_is_refused(anonymous: httpx.AsyncClient, headers: dict[str, str]) -> None:
    """Login CSRF (logging a victim into the attacker's session) is refused like every cross-site POST."""
    response = await anonymous.post("/login", data={"token": TOKEN}, headers=headers)
    assert response.status_code == 403
    assert SESSION_COOKIE not in anonymous.cookies


async def test_a_session_expires_and_a_forged_one_is_refused(
    dashboard: FastAPI, browser: httpx.AsyncClient, clock: ManualClock
) -> None:
    """The cookie is signed and ages out after ``session_lifetime`` (12 h by default)."""
    assert (await browser.get("/api/overview")).status_code == 200
    session = browser.cookies[SESSION_COOKIE]
    issued, nonce, signature = session.split(".")
    async with http_client(dashboard) as forger:
        forger.cookies.set(SESSION_COOKIE, f"{int(issued) + 1}.{nonce}.{signature}")
        assert (await forger.get("/api/overview")).status_code == 401
        forger.cookies.set(SESSION_COOKIE, "garbage")
        assert (await forger.get("/api/overview")).status_code == 401
    clock.advance(timedelta(hours=11))
    assert (await browser.get("/api/overview")).status_code == 200
    clock.advance(timedelta(hours=2))
    assert (await browser.get("/api/overview")).status_code == 401


async def test_logout_forgets_the_session(browser: httpx.AsyncClient) -> None:
    response = await browser.post("/logout")
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert (await browser.get("/api/overview")).status_code == 401


# -- cross-site requests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver.evil.example"},
        {"Origin": "https://testserver"},  # another scheme is another origin
        {"Origin": "null"},
    ],
)
async def test_cross_site_mutations_with_a_valid_session_are_refused(
    dashboard: FastAPI,
    browser: httpx.AsyncClient,
    store: ScheduledCommandStore,
    populated: dict[str, str],
    headers: dict[str, str],
) -> None:
    """A valid cookie and CSRF token do not help a request the browser marks as cross-site: 403, nothing changes."""
    for method, path in mutations(dashboard):
        response = await browser.request(method, path, headers=headers)
        assert response.status_code == 403, (method, path, headers)
    response = await browser.post(f"/api/entries/{populated['later']}/cancel", headers=headers)
    assert response.status_code == 403
    assert "cross-" in response.json()["detail"]
    entry = await store.get(populated["later"])
    assert entry is not None and entry.status.value == "PENDING"


async def test_cookie_mutations_need_the_csrf_token(
    browser: httpx.AsyncClient, store: ScheduledCommandStore, populated: dict[str, str]
) -> None:
    """A cookie-authenticated POST without ``X-CSRF-Token`` or with a wrong one is refused (403); with the
    session's token (what pages send) it is done."""
    token = browser.headers.pop("X-CSRF-Token")
    path = f"/api/entries/{populated['later']}/cancel"
    missing = await browser.post(path)
    assert missing.status_code == 403 and "X-CSRF-Token" in missing.json()["detail"]
    assert (await browser.post(path, headers={"X-CSRF-Token": "0" * 64})).status_code == 403
    assert (await browser.post(path, headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "same-origin"})).json() == {
        "id": populated["later"],
        "cancelled": True,
    }


async def test_another_sessions_csrf_token_is_refused(dashboard: FastAPI, populated: dict[str, str]) -> None:
    async with http_client(dashboard) as alice, http_client(dashboard) as mallory:
        await log_in(alice)
        mallory_token = await log_in(mallory)
        alice.headers["X-CSRF-Token"] = mallory_token
        assert (await alice.post(f"/api/entries/{populated['later']}/cancel")).status_code == 403


async def test_bearer_mutations_skip_the_csrf_token_but_not_the_origin_check(
    client: httpx.AsyncClient, populated: dict[str, str]
) -> None:
    refused = await client.post("/api/dead-letters/requeue", headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    refused = await client.post("/api/dead-letters/requeue", headers={"Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403
    done = await client.post("/api/dead-letters/requeue", headers={"Origin": BASE_URL})
    assert done.status_code == 200 and len(done.json()["requeued"]) == 2


# -- read-only mode ---------------------------------------------------------------------------------------------


@pytest.fixture
async def read_only(
    store: ScheduledCommandStore, clock: ManualClock
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_dashboard_app(store, settings=DashboardSettings(token=TOKEN, read_only=True), clock=clock)
    async with http_client(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield app, client


async def test_read_only_refuses_every_mutation(
    read_only: tuple[FastAPI, httpx.AsyncClient], store: ScheduledCommandStore, populated: dict[str, str]
) -> None:
    """read_only=True: every mutating route answers 403 "read-only" (bearer or cookie), reads still work."""
    app, client = read_only
    routes = mutations(app)
    assert len(routes) >= 6
    for method, path in routes:
        response = await client.request(method, path, json={"older_than": "1s"})
        assert response.status_code == 403, (method, path)
        assert "read-only" in response.json()["detail"]
    async with http_client(app, headers={"Origin": BASE_URL}) as browser:
        await log_in(browser)
        refused = await browser.post(f"/api/entries/{populated['later']}/cancel")
        assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
    assert (await client.post(f"/api/entries/{populated['dead']}/requeue")).status_code == 403
    entry = await store.get(populated["dead"])
    assert entry is not None and entry.status.value == "FAILED"
    assert (await client.get("/api/overview")).status_code == 200


async def test_read_only_leaves_mutations_out_of_openapi(read_only: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = read_only
    document = (await client.get("/openapi.json")).json()
    methods = {method.upper() for operations in document["paths"].values() for method in operations}
    assert methods == {"GET"}
    assert "/api/overview" in document["paths"] and "/api/purge" not in document["paths"]


# -- the mounting application's own authentication -------------------------------------------------------------


async def current_user(x_user: Annotated[str | None, Header()] = None) -> str:
    """A mounting application's dependency: the user named by a header its proxy sets, admins only."""
    if x_user is None:
        raise HTTPException(status_code=401, detail="who are you?")
    if x_user != "admin":
        raise HTTPException(status_code=403, detail=f"{x_user} is not an admin")
    return x_user


async def test_an_application_dependency_replaces_the_token(
    store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """``authenticate=``: the application's dependency decides, on every route; the token means nothing."""
    app = create_dashboard_app(store, authenticate=current_user, clock=clock)
    async with http_client(app) as client:
        for method, path in protected_routes(app):
            assert (await client.request(method, path)).status_code == 401, (method, path)
        assert (await client.get("/api/overview", headers={"X-User": "guest"})).status_code == 403
        assert (await client.get("/api/overview", headers={"Authorization": f"Bearer {TOKEN}"})).status_code == 401
        assert (await client.get("/api/overview", params={"token": TOKEN})).status_code == 401
        assert (await client.get("/api/overview", headers={"X-User": "admin"})).status_code == 200
        assert (await client.get("/metrics", headers={"X-User": "admin"})).status_code == 200

        client.headers["X-User"] = "admin"
        path = f"/api/entries/{populated['later']}/cancel"
        assert (await client.post(path)).status_code == 403  # no CSRF token: the user may be a cookie session
        assert (await client.post(path, headers={"Origin": "https://evil.example"})).status_code == 403
        context = getattr(app.state, STATE_KEY)
        done = await client.post(path, headers={"X-CSRF-Token": session_csrf_token(context, "")})
        assert done.status_code == 200 and done.json()["cancelled"] is True


async def api_key(x_api_key: Annotated[str | None, Header()] = None) -> str | None:
    return x_api_key


async def service_account(key: Annotated[str | None, Depends(api_key)]) -> str:
    """A dependency with a dependency of its own (module level: FastAPI resolves annotations in module globals)."""
    if key != "k":
        raise HTTPException(status_code=401, detail="bad key")
    return "service"


async def test_the_dependency_can_use_dependencies_of_its_own(store: ScheduledCommandStore) -> None:
    app = create_dashboard_app(store, authenticate=service_account)
    async with http_client(app) as client:
        assert (await client.get("/api/overview", headers={"X-Api-Key": "x"})).status_code == 401
        assert (await client.get("/api/overview", headers={"X-Api-Key": "k"})).status_code == 200


@pytest.mark.parametrize("settings", [None, DashboardSettings(), DashboardSettings(read_only=True)])
def test_no_token_and_no_dependency_is_refused(
    store: ScheduledCommandStore, settings: DashboardSettings | None
) -> None:
    with pytest.raises(ValueError, match="the dashboard needs authentication"):
        create_dashboard_app(store, settings=settings)


def test_an_empty_token_is_refused(store: ScheduledCommandStore) -> None:
    with pytest.raises(ValueError, match="empty"):
        create_dashboard_app(store, settings=DashboardSettings(token=""))


# -- mounted under a path ---------------------------------------------------------------------------------------


async def test_mounted_under_a_path(dashboard: FastAPI, populated: dict[str, str]) -> None:
    """Under ``/scheduling`` of a user's app: routes, login redirect and cookie path follow the mount; the user's
    own routes are untouched."""
    user_app = FastAPI()

    @user_app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    user_app.mount("/scheduling", dashboard)
    async with http_client(user_app) as client:
        assert (await client.get("/hello")).json() == {"hello": "world"}
        assert (await client.get("/scheduling/api/overview")).status_code == 401
        login_form = await client.get("/scheduling/entries", headers={"Accept": "text/html"})
        assert login_form.status_code == 401
        assert 'action="/scheduling/login"' in login_form.text and 'value="/scheduling/entries"' in login_form.text

        response = await client.get("/scheduling/entries", params={"token": TOKEN, "status": "FAILED"})
        assert response.status_code == 303
        assert response.headers["location"] == "/scheduling/entries?status=FAILED"
        assert_set_cookie(response, path="/scheduling/", secure=False)
        assert (await client.get("/scheduling/api/overview")).status_code == 200

        client.headers["Origin"] = BASE_URL
        await log_in(client, "/scheduling/", dashboard=dashboard)
        cancelled = await client.post(f"/scheduling/api/entries/{populated['later']}/cancel")
        assert cancelled.status_code == 200
        logout = await client.post("/scheduling/logout")
        assert logout.headers["location"] == "/scheduling/login"
        assert "Path=/scheduling/" in logout.headers["set-cookie"]

    async with http_client(user_app, headers={"Authorization": f"Bearer {TOKEN}"}) as api:
        assert (await api.get("/scheduling/api/entries/nope")).status_code == 404
        assert (await api.get("/scheduling/openapi.json")).status_code == 200
