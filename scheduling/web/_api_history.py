"""The admin JSON API's routes for history: outcomes over time, and a recurring schedule's occurrences and run now.

=========================================  ===========================================  ==========================
Route                                      Body                                         CLI
=========================================  ===========================================  ==========================
GET  /api/outcomes?range=1h|24h|7d         ``OutcomeHistory`` (422 bad range)           ``outcomes --json``
GET  /api/recurring/{name}/occurrences     ``ScheduleOccurrences`` (404)                ``recurring occurrences``
POST /api/recurring/{name}/run-now         ``RunNowResult`` (404, 422 cannot load)      ``recurring run-now``
=========================================  ===========================================  ==========================

Mounted beside ``api.py``'s routers, with the same authentication, read-only and CSRF rules; run now leaves a
``run-now`` record in the audit trail naming the schedule and the occurrence.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel

from scheduling import admin
from scheduling.audit import record_action

from ._actor import request_actor
from .context import DashboardContext, get_context

__all__ = ["read_router", "write_router"]

Context = Annotated[DashboardContext, Depends(get_context)]
ScheduleName = Annotated[str, Path(description="The schedule's name.")]


class _Error(BaseModel):
    detail: str


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": _Error} for code in codes}


read_router = APIRouter(prefix="/api", tags=["read"], responses=_errors(401))
write_router = APIRouter(prefix="/api", tags=["change"], responses=_errors(401, 403))


@read_router.get("/outcomes", responses=_errors(422))
async def get_outcomes(
    ctx: Context,
    range: Annotated[str, Query(description="1h, 24h or 7d.")] = "1h",
) -> admin.OutcomeHistory:
    """Completed, retried, failed and expired per bar of the range, and failures per command type."""
    if range not in admin.OUTCOME_RANGES:
        raise HTTPException(status_code=422, detail=f"unknown range {range!r}; use one of 1h, 24h, 7d")
    return await admin.outcome_history(ctx.store, ctx.now(), range)


def _unknown(ctx: DashboardContext, name: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no recurring schedule named {name!r} in {ctx.store.description}")


@read_router.get("/recurring/{name:path}/occurrences", responses=_errors(404))
async def get_occurrences(
    ctx: Context,
    name: ScheduleName,
    limit: Annotated[int, Query(ge=1, le=500, description="How many, newest first.")] = admin.OCCURRENCES_SHOWN,
) -> admin.ScheduleOccurrences:
    """A schedule with its last outcome and its latest occurrences (entries), newest first, every status."""
    found = await admin.schedule_occurrences(ctx.store, name, limit=limit)
    if found is None:
        raise _unknown(ctx, name)
    return found


@write_router.post("/recurring/{name:path}/run-now", responses=_errors(404, 422))
async def run_now(request: Request, ctx: Context, name: ScheduleName) -> admin.RunNowResult:
    """Add one occurrence due now, for any worker of the fleet; the regular occurrences stay as they are."""
    now = ctx.now()
    try:
        result = await admin.run_schedule_now(ctx.store, name, now)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=f"cannot run {name!r}: {exc}") from None
    if result is None:
        raise _unknown(ctx, name)
    if result.created:
        await record_action(ctx.store, request_actor(request), "run-now", now=now, entry_ids=[result.id], target=name)
    return result
