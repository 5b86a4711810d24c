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
from fastapi import Cookie, Depends, FastAPI, Header, HTTPException
from fastapi.routing import APIRoute

from scheduling import ManualClock
from scheduling.web import DashboardSettings, create_dashboard_app
from scheduling.web.security import CSRF_COOKIE, SESSION_COOKIE
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


def page_csrf_token(page: str) -> str:
    """The CSRF token a page carries in ``<meta name="csrf-token">``."""
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found is not None, page[:300]
    return found.group(1)


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


async def test_a_wrong_token_is_refused_everywhere(store: ScheduledCommandStore, clock: ManualClock) -> None:
    # Every route is tried with a wrong token: more failures than the login throttle lets through by default.
    settings = DashboardSettings(token=TOKEN, login_attempts=10_000)
    dashboard = create_dashboard_app(store, settings=settings, clock=clock)
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


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "elsewhere", "/../evil", "/%2e%2e/evil"]
)
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
        "running": False,
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
        page = await client.get("/", headers={"Accept": "text/html"})  # sets the browser's CSRF cookie
        done = await client.post(path, headers={"X-CSRF-Token": page_csrf_token(page.text)})
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


# -- review findings: credentials, stale tokens, rotation, forged cookies, hardening headers -------------------


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Digest username=x", "Negotiate abc"])
async def test_another_authorization_scheme_leaves_the_session_in_charge(
    browser: httpx.AsyncClient, dashboard: FastAPI, authorization: str
) -> None:
    """A proxy's own ``Authorization`` (nginx ``auth_basic``) is not the dashboard's: the session cookie decides,
    without it the request is unauthenticated; only a wrong ``Bearer`` is refused as wrong credentials."""
    browser.headers["Authorization"] = authorization
    assert (await browser.get("/api/overview")).status_code == 200
    page = await browser.get("/entries")
    assert page.status_code == 200 and 'id="token"' not in page.text
    async with http_client(dashboard, headers={"Authorization": authorization}) as stranger:
        assert (await stranger.get("/api/overview")).status_code == 401
    browser.headers["Authorization"] = "Bearer wrong"
    assert (await browser.get("/api/overview")).status_code == 401


async def test_a_stale_url_token_with_a_valid_session_is_only_removed(browser: httpx.AsyncClient) -> None:
    """A bookmarked ``?token=OLD`` with a valid session: 303 to the URL without it, no new cookie, no login loop."""
    response = await browser.get("/entries", params={"status": "FAILED", "token": "an-old-token"})
    assert response.status_code == 303
    assert response.headers["location"] == "/entries?status=FAILED"
    assert "set-cookie" not in response.headers
    assert (await browser.get(response.headers["location"])).status_code == 200


async def test_a_wrong_url_token_never_reaches_the_login_form(anonymous: httpx.AsyncClient) -> None:
    """Without a session, a wrong ``?token=`` gets the login form, whose ``next`` has no token in it."""
    response = await anonymous.get(
        "/entries", params={"status": "FAILED", "token": "stale-secret-xyz"}, headers={"Accept": "text/html"}
    )
    assert response.status_code == 401
    assert "stale-secret-xyz" not in response.text
    assert 'value="/entries?status=FAILED"' in response.text


@pytest.mark.parametrize(
    ("next_url", "location"),
    [
        ("/entries?token=old&status=FAILED", "/entries?status=FAILED"),
        ("/?token=old", "/"),
        ("/recurring", "/recurring"),
    ],
)
async def test_login_drops_a_token_from_next(anonymous: httpx.AsyncClient, next_url: str, location: str) -> None:
    wrong = await anonymous.post("/login", data={"token": "nope", "next": next_url})
    assert wrong.status_code == 401 and "old" not in re.findall(r'name="next" value="([^"]*)"', wrong.text)[0]
    right = await anonymous.post("/login", data={"token": TOKEN, "next": next_url})
    assert right.status_code == 303 and right.headers["location"] == location


async def test_a_url_token_login_keeps_a_non_latin_path_encoded(anonymous: httpx.AsyncClient) -> None:
    """``GET /entries/%E2%98%83?token=...``: the redirect keeps the path percent-encoded (no 500)."""
    response = await anonymous.get("/entries/%E2%98%83", params={"token": TOKEN, "fragment": "entry"})
    assert response.status_code == 303
    assert response.headers["location"] == "/entries/%E2%98%83?fragment=entry"
    assert (await anonymous.get(response.headers["location"])).status_code == 404  # no such entry: a page, not a 500


async def test_a_new_token_ends_every_session(store: ScheduledCommandStore, clock: ManualClock) -> None:
    """Sessions are signed with session_secret and the token: the same secret with a new token refuses them."""
    secret = "shared-session-secret"
    before = create_dashboard_app(store, settings=DashboardSettings(token=TOKEN, session_secret=secret), clock=clock)
    async with http_client(before) as browser:
        await log_in(browser)
        session = browser.cookies[SESSION_COOKIE]
    same = create_dashboard_app(store, settings=DashboardSettings(token=TOKEN, session_secret=secret), clock=clock)
    rotated = create_dashboard_app(
        store, settings=DashboardSettings(token="a-new-token-987654", session_secret=secret), clock=clock
    )
    async with http_client(same, cookies={SESSION_COOKIE: session}) as browser:
        assert (await browser.get("/api/overview")).status_code == 200  # another process, same settings
    async with http_client(rotated, cookies={SESSION_COOKIE: session}) as browser:
        assert (await browser.get("/api/overview")).status_code == 401


@pytest.mark.parametrize("cookie", ["1.2.\xe9", "\xe9\xe9.x.y", "1.\xff.abc", "\xb2.a.b"])
async def test_a_non_ascii_session_cookie_is_refused_not_a_crash(anonymous: httpx.AsyncClient, cookie: str) -> None:
    header = f"{SESSION_COOKIE}={cookie}".encode("latin-1")
    response = await anonymous.get("/api/overview", headers={"Cookie": header})  # type: ignore[dict-item]
    assert response.status_code == 401
    response = await anonymous.post("/logout", headers={"Cookie": header})  # type: ignore[dict-item]
    assert response.status_code == 403


async def test_a_non_ascii_csrf_header_is_refused_not_a_crash(
    browser: httpx.AsyncClient, populated: dict[str, str]
) -> None:
    response = await browser.post(
        f"/api/entries/{populated['later']}/cancel",
        headers={"X-CSRF-Token": "\xe9".encode("latin-1")},  # type: ignore[dict-item]
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("origin", "status"),
    [("https://dash.example.com", 200), ("https://dash.example.com/", 200), ("https://other.example.com", 403)],
)
async def test_allowed_origins_extend_the_origin_check(
    store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str], origin: str, status: int
) -> None:
    """Behind a proxy that rewrites ``Host``, ``allowed_origins`` names the public origin the pages are served at."""
    settings = DashboardSettings(token=TOKEN, allowed_origins=["https://Dash.Example.com"])
    app = create_dashboard_app(store, settings=settings, clock=clock)
    async with http_client(app, headers={"Origin": origin}) as browser:
        await log_in(browser)
        response = await browser.post(f"/api/entries/{populated['later']}/cancel")
        assert response.status_code == status, response.text
        login = await browser.post("/login", data={"token": TOKEN})
        assert login.status_code == (303 if status == 200 else 403)


@pytest.mark.parametrize("origin", ["dash.example.com", "https://dash.example.com/path", "ftp://dash.example.com"])
def test_allowed_origins_must_be_origins(origin: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        DashboardSettings(token=TOKEN, allowed_origins=[origin])


async def test_every_response_carries_the_hardening_headers(dashboard: FastAPI, browser: httpx.AsyncClient) -> None:
    """No framing, a same-origin CSP, nosniff and a same-origin referrer policy: on pages, the API, static files,
    401s and the login form (whose one inline style is allowed by its hash)."""
    async with http_client(dashboard) as anonymous:
        responses = [
            await browser.get("/"),
            await browser.get("/entries?fragment=entries"),
            await browser.get("/static/dashboard.js"),
            await browser.get("/api/overview"),
            await browser.get("/api/entries/nope"),
            await anonymous.get("/api/overview"),
            await anonymous.get("/login"),
            await anonymous.get("/entries", headers={"Accept": "text/html"}),
        ]
    for response in responses:
        assert response.headers["x-frame-options"] == "DENY", response.url
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # A no-referrer policy would make Chromium send "Origin: null" with the login form's POST, which is refused.
    assert responses[-2].headers["referrer-policy"] == "same-origin" and "no-referrer" not in responses[-2].text
    login_csp = responses[-1].headers["content-security-policy"]
    assert re.search(r"style-src 'sha256-[A-Za-z0-9+/=]+'", login_csp)
    assert "style-src" not in responses[0].headers["content-security-policy"]  # pages use /static only


async def test_pages_log_out_with_a_csrf_protected_form(browser: httpx.AsyncClient) -> None:
    """The header's Log out button posts the page's CSRF token; a post without it is refused."""
    page = (await browser.get("/")).text
    form = re.search(
        r'<form class="logout" method="post" action="([^"]+)">\s*<input type="hidden" name="csrf" '
        r'value="([^"]+)">',
        page,
    )
    assert form is not None and form.group(1) == "/logout"
    token = browser.headers.pop("X-CSRF-Token")
    assert form.group(2) == token
    refused = await browser.post("/logout")
    assert refused.status_code == 403
    assert (await browser.get("/api/overview")).status_code == 200
    done = await browser.post("/logout", data={"csrf": token})
    assert done.status_code == 303 and done.headers["location"] == "/login"
    assert (await browser.get("/api/overview")).status_code == 401


async def cookie_user(sid: Annotated[str | None, Cookie()] = None) -> str:
    """A mounting application's cookie sign-in (module level: FastAPI resolves annotations in module globals)."""
    if sid not in ("alice", "mallory"):
        raise HTTPException(status_code=401, detail="sign in")
    return sid


async def test_with_authenticate_every_browser_gets_its_own_csrf_token(
    store: ScheduledCommandStore, clock: ManualClock, populated: dict[str, str]
) -> None:
    """``authenticate=``: a random ``cqrs_scheduling_csrf`` cookie per browser (HttpOnly, SameSite=Strict, the mount
    path) and its HMAC in the page; another browser's token, none, or a bogus ``Authorization: Bearer`` header are
    refused; no Log out button (the application signs users out)."""
    dashboard = create_dashboard_app(store, authenticate=cookie_user, clock=clock)
    user_app = FastAPI()
    user_app.mount("/scheduling", dashboard)
    tokens = {}
    for who in ("alice", "mallory"):
        async with http_client(user_app, cookies={"sid": who}) as client:
            page = await client.get("/scheduling/", headers={"Accept": "text/html"})
            header = page.headers["set-cookie"]
            assert header.startswith(f"{CSRF_COOKIE}=") and "HttpOnly" in header and "Path=/scheduling/" in header
            assert "samesite=strict" in header.lower()
            assert 'class="logout"' not in page.text
            tokens[who] = page_csrf_token(page.text)
            again = await client.get("/scheduling/recurring", headers={"Accept": "text/html"})
            assert "set-cookie" not in again.headers and page_csrf_token(again.text) == tokens[who]
            path = f"/scheduling/api/entries/{populated['later']}/cancel"
            assert (await client.post(path)).status_code == 403
            assert (await client.post(path, headers={"Authorization": "Bearer whatever"})).status_code == 403
            if who == "mallory":
                assert (await client.post(path, headers={"X-CSRF-Token": tokens["alice"]})).status_code == 403
                done = await client.post(path, headers={"X-CSRF-Token": tokens["mallory"]})
                assert done.status_code == 200 and done.json()["cancelled"] is True
    assert tokens["alice"] != tokens["mallory"]
    async with http_client(user_app, cookies={"sid": "alice"}) as no_cookie:  # a token without its cookie
        path = f"/scheduling/api/entries/{populated['dead']}/requeue"
        assert (await no_cookie.post(path, headers={"X-CSRF-Token": tokens["alice"]})).status_code == 403
