"""The Entries page: search (status, type, correlation id, id prefix, error text, created/due/finished ranges), how
many match, page jump, and bulk actions on a selection or on the whole filter result.

Bulk actions run in the browser (``static/entries.js``) against ``POST /api/entries/bulk``: a dry run for the count,
a confirmation stating it, then one batch per request with a progress bar; the page carries the filter as the API
names it (``data-filter``). Time fields are ``datetime-local`` inputs labelled UTC: their values have no offset and
are read as UTC.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from scheduling import admin
from scheduling.bulk import BATCH, MAX_BULK, MAX_SELECTION
from scheduling.search import TIME_FIELDS, parse_filter
from stores.entries import ScheduledCommandStatus
from stores.errors import UnsupportedFeatureError
from stores.filters import EntryFilter

from . import pages
from .context import DashboardContext, get_context

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

Context = Annotated[DashboardContext, Depends(get_context)]

#: The labels of the time range fields, in the order of ``TIME_FIELDS``.
_TIME_LABELS = ("Created from", "Created before", "Due from", "Due before", "Finished from", "Finished before")


def _form_time(moment: datetime | None) -> str:
    """A ``datetime-local`` input's value: UTC, no offset, to the second."""
    return "" if moment is None else moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds")


def _api_filter(where: EntryFilter) -> dict[str, str]:
    """The filter as ``POST /api/entries/bulk`` names it (times ISO 8601 with offset)."""
    named: dict[str, str] = {}
    for name, value in where:
        if value is None:
            continue
        key = "error" if name == "error_contains" else name
        named[key] = value.isoformat() if isinstance(value, datetime) else str(getattr(value, "value", value))
    return named


@router.get("/entries", response_class=HTMLResponse, name="entries")
async def entries_page(
    request: Request,
    ctx: Context,
    limit: pages.Limit = None,
    offset: pages.Offset = 0,
    page: Annotated[int | None, Query(ge=1, le=2**40)] = None,
    fragment: pages.Fragment = None,
) -> Response:
    """Entries, newest first, filtered and searched, with the number matching, a page at a time."""
    try:
        where = parse_filter(request.query_params, naive_is_utc=True)
    except ValueError as exc:
        return pages._message(request, ctx, title="Bad filter", message=str(exc), status_code=422)
    size = limit if limit is not None else ctx.settings.page_size
    if page is not None:  # "go to page": the page number wins over an offset
        offset = (page - 1) * size
    try:
        listing = await admin.list_page(ctx.store, where=where, limit=size, offset=offset)
    except UnsupportedFeatureError as exc:
        return pages._message(request, ctx, title="Search not supported", message=str(exc), status_code=501)
    total = listing.total or 0
    last_page = max(1, math.ceil(total / size)) if listing.total_exact else None
    filters = {
        "status": where.status.value if where.status is not None else None,
        "command_type": where.command_type,
        "correlation_id": where.correlation_id,
        "id_prefix": where.id_prefix,
        "error": where.error_contains,
        "limit": size,
    }
    times = [
        {"name": name, "label": label, "value": _form_time(getattr(where, name))}
        for name, label in zip(TIME_FIELDS, _TIME_LABELS, strict=True)
    ]
    described = where.describe()
    caption = "Entries, newest first" + ("" if described == "every entry" else f", with {described}")
    jump_fields = {k: v for k, v in request.query_params.items() if k not in ("offset", "page", "fragment", "token")}
    return pages._render(
        request,
        ctx,
        "entries",
        title="Entries",
        values={
            "page": listing,
            "caption": caption,
            "filters": filters,
            "times": times,
            "statuses": [s.value for s in ScheduledCommandStatus],
            "page_sizes": sorted({*pages.PAGE_SIZES, ctx.settings.page_size, size}),
            "page_number": offset // size + 1,
            "last_page": last_page,
            "jump_fields": jump_fields,
            "bulk": {
                "filter": _api_filter(where),
                "described": described,
                "batch": BATCH,
                "max_bulk": MAX_BULK,
                "max_selection": MAX_SELECTION,
            },
            **_pager(request, listing, size),
        },
        fragment=fragment,
        nav_path="/entries",
    )


def _pager(request: Request, listing: admin.EntryPage, size: int) -> dict[str, str | None]:
    """Previous and next links by offset; a ``page`` (from the page jump) is dropped, as it would win over them."""
    previous = (
        None
        if listing.offset == 0
        else pages._url_with(request, offset=max(0, listing.offset - size), page=None, fragment=None)
    )
    following = (
        None
        if listing.next_offset is None
        else pages._url_with(request, offset=listing.next_offset, page=None, fragment=None)
    )
    return {"previous_url": previous, "next_url": following}
