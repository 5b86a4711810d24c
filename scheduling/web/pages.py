"""The dashboard's HTML pages: overview, entries, entry detail, dead letters, recurring schedules, queues, workers.

Every page is rendered on the server with Jinja2 and has one live region. The same URL with ``?fragment=<region>``
answers only that region, rendered by the same partial template as the full page; ``static/dashboard.js`` re-fetches
it every ``settings.refresh_seconds`` and swaps it in, so the page updates without a reload. Buttons POST to the JSON
API (``api.py``); they are not rendered at all when the dashboard is read-only.

The pages run no store queries of their own: every number comes from ``scheduling.admin``, the same functions
that answer the CLI and the JSON API. Every URL a page contains starts with the path the app is mounted at
(``request.scope["root_path"]``), so the pages work under ``user_app.mount("/scheduling", dashboard)``.
"""

from __future__ import annotations

import asyncio
import html
import json
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates

from scheduling import admin
from scheduling.audit import audit_trail
from scheduling.workers import Fleet
from stores.entries import ScheduledCommandStatus
from stores.errors import UnreadableEntryError, UnsupportedFeatureError

from ._charts import outcome_chart
from .context import TEMPLATES_KEY, DashboardContext, get_context
from .security import SESSION_COOKIE, csrf_token

__all__ = ["format_count", "format_duration", "format_time", "router"]

router = APIRouter(include_in_schema=False)

Context = Annotated[DashboardContext, Depends(get_context)]

#: Page sizes offered by the entries filter form (the settings' page size is added to them).
PAGE_SIZES = (20, 50, 100, 200)
#: The most operator actions the entry page lists (newest first).
ENTRY_AUDIT_LIMIT = 50

#: Section links of the header: label and path below the mount root.
_NAV = (
    ("Overview", "/"),
    ("Entries", "/entries"),
    ("Dead letters", "/dead-letters"),
    ("Recurring", "/recurring"),
    ("Queues", "/queues"),
    ("Workers", "/workers"),
    ("Audit", "/audit"),
)

_NO_STORE = {"Cache-Control": "no-store"}


# -- formatting -------------------------------------------------------------------------------------------------


def format_time(value: datetime) -> str:
    """A UTC ISO 8601 timestamp to the second, ``Z``-suffixed: ``2026-03-01T12:00:00Z``."""
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def format_duration(seconds: float) -> str:
    """A short human duration: ``45 s``, ``2 min 5 s``, ``3 h 10 min``, ``2 d 4 h``."""
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def format_count(value: int) -> str:
    """A count with thousands separators: ``1,234,567``."""
    return f"{value:,}"


def format_run_time(seconds: float) -> str:
    """How long an attempt ran: ``12 ms`` under a second, else as ``format_duration``."""
    return f"{max(0, round(seconds * 1000))} ms" if seconds < 1 else format_duration(seconds)


def _pretty_json(text: str) -> str:
    """Indented JSON, or the text as it is when it is not JSON."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _pretty_object(value: object) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


# -- rendering ------------------------------------------------------------------------------------------------


def _templates(request: Request) -> Jinja2Templates:
    templates = getattr(request.app.state, TEMPLATES_KEY, None)
    if not isinstance(templates, Jinja2Templates):
        raise RuntimeError("no page templates on this app: build it with create_dashboard_app(store, ...)")
    return templates


def _root(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _url_with(request: Request, **changes: str | int | None) -> str:
    """This page's URL (under the mount root) with query parameters changed; ``None`` removes one."""
    params = {k: v for k, v in request.query_params.items() if k != "token"}
    for key, value in changes.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    return quote(request.url.path, safe="/:@!$&'()*+,;=-._~") + (f"?{query}" if query else "")


def _render(
    request: Request,
    ctx: DashboardContext,
    page: str,
    *,
    title: str,
    values: dict[str, Any],
    fragment: str | None = None,
    status_code: int = 200,
    nav_path: str | None = None,
) -> Response:
    """The full page ``{page}.html``, or only its live region ``partials/{page}.html`` when ``fragment`` names it."""
    root = _root(request)
    context: dict[str, Any] = {
        "settings": ctx.settings,
        "csrf": csrf_token(request),
        # Log out ends a token session; the mounting application's own sign-in has its own way out.
        "logout_url": root + "/logout" if ctx.authenticate is None and SESSION_COOKIE in request.cookies else None,
        "page_title": title,
        "url": lambda path: root + path,
        "pq": lambda name: quote(str(name), safe=""),
        "iso": format_time,
        "duration": format_duration,
        "n": format_count,
        "run_time": format_run_time,
        "pretty": _pretty_json,
        "pretty_obj": _pretty_object,
        "nav": [{"label": label, "href": root + path, "current": path == nav_path} for label, path in _NAV],
        "fragment_url": _url_with(request, fragment=page),
        **values,
    }
    templates = _templates(request)
    if fragment is not None:
        if fragment != page:
            message = html.escape(f"no region {fragment!r} on this page; this page has {page!r}", quote=False)
            return HTMLResponse(message, status_code=404, headers=_NO_STORE)
        return templates.TemplateResponse(
            request, f"partials/{page}.html", context, status_code=status_code, headers=_NO_STORE
        )
    return templates.TemplateResponse(request, f"{page}.html", context, status_code=status_code, headers=_NO_STORE)


def _message(request: Request, ctx: DashboardContext, *, title: str, message: str, status_code: int) -> Response:
    return _render(
        request, ctx, "not_found", title=title, values={"message": message}, status_code=status_code, nav_path=None
    )


# -- pages ----------------------------------------------------------------------------------------------------

Fragment = Annotated[str | None, Query(description="Render only this live region of the page.")]
Offset = Annotated[int, Query(ge=0, le=2**62)]
Limit = Annotated[int | None, Query(ge=1, le=500)]


@router.get("/", response_class=HTMLResponse, name="overview")
async def overview_page(
    request: Request,
    ctx: Context,
    range: str = "1h",
    fragment: Fragment = None,
) -> Response:
    """Counts per status, outcomes over 1 h, 24 h or 7 d, failures per type, next due, oldest overdue lag."""
    if range not in admin.OUTCOME_RANGES:
        allowed = ", ".join(admin.OUTCOME_RANGES)
        return _message(
            request, ctx, title="Bad range", message=f"unknown range {range!r}; use {allowed}", status_code=422
        )
    now = ctx.now()
    # Independent reads: on a store with a connection pool they run at once, on their own connections.
    data, history = await asyncio.gather(admin.overview(ctx.store, now), admin.outcome_history(ctx.store, now, range))
    ranges = [
        {"name": name, "href": _url_with(request, range=name, fragment=None), "current": name == range}
        for name in admin.OUTCOME_RANGES
    ]
    return _render(
        request,
        ctx,
        "overview",
        title="Overview",
        values={"overview": data, "history": history, "chart": outcome_chart(history), "ranges": ranges},
        fragment=fragment,
        nav_path="/",
    )


# The Entries list page is in ``_entries_page.py`` (search, counts, page jump, bulk actions).


def _pager(request: Request, page: admin.EntryPage, size: int) -> dict[str, str | None]:
    previous = None if page.offset == 0 else _url_with(request, offset=max(0, page.offset - size), fragment=None)
    following = None if page.next_offset is None else _url_with(request, offset=page.next_offset, fragment=None)
    return {"previous_url": previous, "next_url": following}


@router.get("/entries/{entry_id}", response_class=HTMLResponse, name="entry")
async def entry_page(request: Request, ctx: Context, entry_id: str, fragment: Fragment = None) -> Response:
    """One entry: payload, result, error, attempts, timestamps; 404 when there is no such entry."""
    try:
        detail = await admin.entry_detail(ctx.store, entry_id, ctx.now())
    except UnreadableEntryError as exc:  # a corrupt row: said in one line, which column and what value
        return _message(request, ctx, title="Corrupt entry", message=str(exc), status_code=422)
    if detail is None:
        return _message(
            request,
            ctx,
            title="Entry not found",
            message=f"There is no entry with id {entry_id!r} in {ctx.store.description}.",
            status_code=404,
        )
    actions = await ctx.store.list_audit_records(entry_id=detail.entry.id, limit=ENTRY_AUDIT_LIMIT)
    values = {"detail": detail, "actions": actions}
    return _render(request, ctx, "entry", title=f"Entry {entry_id}", values=values, fragment=fragment)


@router.get("/dead-letters", response_class=HTMLResponse, name="dead_letters")
async def dead_letters_page(
    request: Request, ctx: Context, limit: Limit = None, offset: Offset = 0, fragment: Fragment = None
) -> Response:
    """Failed entries, with Requeue per entry and "requeue all failed of this type" per command type."""
    size = limit if limit is not None else ctx.settings.page_size
    summary = await admin.overview(ctx.store, ctx.now())
    page = await admin.list_page(ctx.store, status=ScheduledCommandStatus.FAILED, limit=size, offset=offset)
    by_type = [{"command_type": name, "count": count} for name, count in summary.dead_letters_by_type.items()]
    failed = summary.counts.get("FAILED", 0)
    return _render(
        request,
        ctx,
        "dead_letters",
        title="Dead letters",
        values={
            "page": page,
            "by_type": by_type,
            "caption": f"Failed entries, newest first ({_about(summary, 'FAILED')}{failed} in all)",
            **_pager(request, page, size),
        },
        fragment=fragment,
        nav_path="/dead-letters",
    )


@router.get("/recurring", response_class=HTMLResponse, name="recurring")
async def recurring_page(request: Request, ctx: Context, fragment: Fragment = None) -> Response:
    """Recurring schedules: timing, time zone, state, next and last run, with Pause and Resume."""
    schedules = await admin.recurring_list(ctx.store)
    return _render(
        request,
        ctx,
        "recurring",
        title="Recurring schedules",
        values={"schedules": schedules.schedules},
        fragment=fragment,
        nav_path="/recurring",
    )


@router.get("/recurring/{name:path}", response_class=HTMLResponse, name="recurring_schedule")
async def recurring_schedule_page(request: Request, ctx: Context, name: str, fragment: Fragment = None) -> Response:
    """One schedule: its timing, state and last outcome, its latest occurrences, with Run now, Pause and Resume."""
    found = await admin.schedule_occurrences(ctx.store, name)
    if found is None:
        message = f"There is no recurring schedule named {name!r} in {ctx.store.description}."
        return _message(request, ctx, title="Schedule not found", message=message, status_code=404)
    return _render(
        request,
        ctx,
        "recurring_schedule",
        title=f"Schedule {name}",
        values={"found": found},
        fragment=fragment,
        nav_path="/recurring",
    )


@router.get("/queues", response_class=HTMLResponse, name="queues")
async def queues_page(request: Request, ctx: Context, fragment: Fragment = None) -> Response:
    """Queues: depth, running, paused, limits, with Pause and Resume; a one-line notice on a store without queues."""
    try:
        values: dict[str, Any] = {"queues": (await admin.queue_list(ctx.store)).queues, "unsupported": None}
    except UnsupportedFeatureError as exc:
        values = {"queues": [], "unsupported": str(exc)}
    return _render(request, ctx, "queues", title="Queues", values=values, fragment=fragment, nav_path="/queues")


@router.get("/workers", response_class=HTMLResponse, name="workers")
async def workers_page(request: Request, ctx: Context, fragment: Fragment = None) -> Response:
    """Registered workers: host, pid, state, entries held, queues, command types, last heartbeat; stuck entries."""
    fleet = await Fleet.read(ctx.store, ctx.now())
    return _render(
        request, ctx, "workers", title="Workers", values={"fleet": fleet}, fragment=fragment, nav_path="/workers"
    )


@router.get("/audit", response_class=HTMLResponse, name="audit")
async def audit_page(
    request: Request, ctx: Context, before: datetime | None = None, limit: Limit = None, fragment: Fragment = None
) -> Response:
    """Operator actions, newest first: when, what, who, from where, the entries or the filter acted on."""
    if before is not None and before.tzinfo is None:
        before = before.replace(tzinfo=UTC)
    trail = await audit_trail(ctx.store, before=before, limit=limit if limit is not None else ctx.settings.page_size)
    older = None if trail.next_before is None else _url_with(request, before=trail.next_before.isoformat())
    return _render(
        request,
        ctx,
        "audit",
        title="Audit",
        values={"trail": trail, "older_url": older},
        fragment=fragment,
        nav_path="/audit",
    )


def _about(summary: admin.StoreOverview, status: str) -> str:
    """ "about " before a count the store estimated."""
    return "" if summary.counts_exact.get(status, True) else "about "
