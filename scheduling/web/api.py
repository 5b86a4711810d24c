"""The admin JSON API under ``/api``: the CLI's operator commands over HTTP, with the CLI's ``--json`` shapes.

Every route answers from ``scheduling.admin``, as the CLI does, so a body here equals the CLI's ``--json``
output for the same question. Reads are in ``read_router``; mutations (all POST) in ``write_router``, which
``create_dashboard_app`` leaves out of the OpenAPI document in read-only mode (where they answer 403).

=========================================  ===========================================  ======================
Route                                      Body                                         CLI
=========================================  ===========================================  ======================
GET  /api/overview                         ``StoreOverview``                            ``status --json``
GET  /api/entries                          ``EntryPage``                                ``list --json``
GET  /api/entries/{id}                     ``EntryDetail`` (404 unknown)                ``show --json``
POST /api/entries/{id}/cancel              ``CancelResult`` (404 unknown, 409)          ``cancel --json``
POST /api/entries/{id}/requeue             ``RequeueResult`` (404 unknown, 409)         ``requeue ID --json``
POST /api/entries/bulk                     ``BulkResult`` (409 count, 422, 501)         ``bulk ACTION``
POST /api/dead-letters/requeue             ``RequeueResult``                            ``requeue --all-failed``
POST /api/purge                            ``PurgeResult`` (422 bad duration/status)    ``purge --json``
GET  /api/recurring                        ``RecurringList``                            ``recurring list``
GET  /api/workers                          ``Fleet``                                    ``workers --json``
POST /api/recurring/{name}/pause|resume    ``PauseResult`` / ``ResumeResult`` (404)     ``recurring pause``
GET  /api/audit                            ``AuditTrail``                               ``audit --json``
GET  /api/queues                           ``QueueList`` (501: a store without queues)  ``queue list --json``
POST /api/queues/{name}/pause|resume       ``QueueInfo`` (422 bad name)                 ``queue pause|resume``
POST /api/queues/{name}/limits             ``QueueInfo`` (422 bad name or limits)       ``queue limit``
=========================================  ===========================================  ======================

``POST /api/entries/{id}/cancel?running=true`` (``cancel ID --running``) also cancels a PROCESSING entry's attempt.

Every change (cancel, requeue, requeue of dead letters, purge, pause, resume, a queue's pause, resume or limits)
leaves one record in the audit trail (``scheduling.audit``): the actor (``token`` for the bearer token, ``session``
for a dashboard browser, or the ``authenticate=`` principal), the client address, and the entries, the filter or the
queue it acted on.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from scheduling import admin
from scheduling.admin import (
    CancelResult,
    EntryDetail,
    EntryPage,
    PauseResult,
    PurgeResult,
    QueueList,
    RecurringList,
    RequeueResult,
    ResumeResult,
    StoreOverview,
)
from scheduling.audit import AuditTrail, audit_trail, record_action
from scheduling.bulk import MAX_SELECTION, BulkAction, BulkCountError, BulkResult, bulk_by_filter, bulk_by_ids
from scheduling.search import FILTER_FIELDS, parse_filter
from scheduling.workers import Fleet
from stores.entries import TERMINAL_STATUSES, ScheduledCommandStatus
from stores.errors import UnreadableEntryError, UnsupportedFeatureError
from stores.queues import QueueInfo, QueueLimits

from ._actor import request_actor
from .context import DashboardContext, get_context

__all__ = ["ApiError", "BulkRequest", "PurgeRequest", "RequeueFailedRequest", "read_router", "write_router"]

#: The most entries one page of ``GET /api/entries`` returns.
MAX_PAGE = 500
#: The largest ``offset`` accepted (a larger one is a 422, not an integer overflow in the database).
MAX_OFFSET = 2**62

Context = Annotated[DashboardContext, Depends(get_context)]


class ApiError(BaseModel):
    """An error: what went wrong, naming the offending value."""

    detail: str


class RequeueFailedRequest(BaseModel):
    """``POST /api/dead-letters/requeue``: every FAILED entry, or only those of one command type."""

    #: Only this command type (``module.Name``); every type when absent.
    command_type: str | None = None


class PurgeRequest(BaseModel):
    """``POST /api/purge``: delete finished entries, as ``cqrs-scheduling purge`` does."""

    #: Finished longer ago than this: ``7d``, ``12h``, ``1d12h``, ``90m``, ``30s`` or ISO 8601 (``P7D``).
    older_than: str = Field(examples=["7d"])
    #: Only these terminal statuses; all terminal ones when absent.
    statuses: list[ScheduledCommandStatus] | None = None
    #: Count what would be deleted; delete nothing.
    dry_run: bool = False


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ApiError} for code in codes}


read_router = APIRouter(prefix="/api", tags=["read"], responses=_errors(401))
write_router = APIRouter(prefix="/api", tags=["change"], responses=_errors(401, 403))


@read_router.get("/overview")
async def get_overview(ctx: Context) -> StoreOverview:
    """Counts per status, next due, oldest overdue and its lag, dead letters per type, throughput per minute."""
    return await admin.overview(ctx.store, ctx.now())


def _text_param(description: str) -> Any:
    return Query(description=description, max_length=500)


@read_router.get("/entries", responses=_errors(422, 501))
async def get_entries(
    ctx: Context,
    status: Annotated[ScheduledCommandStatus | None, Query(description="Only entries in this status.")] = None,
    command_type: Annotated[str | None, Query(description="Only this command type (module.Name).")] = None,
    correlation_id: Annotated[str | None, Query(description="Only entries of this correlation id.")] = None,
    id_prefix: Annotated[str | None, _text_param("Only ids starting with this (a short id).")] = None,
    error: Annotated[str | None, _text_param("Only entries whose last error contains this, ignoring case.")] = None,
    created_after: Annotated[str | None, _text_param("Created at or after (ISO 8601 with offset).")] = None,
    created_before: Annotated[str | None, _text_param("Created before (ISO 8601 with offset).")] = None,
    due_after: Annotated[str | None, _text_param("Due at or after (ISO 8601 with offset).")] = None,
    due_before: Annotated[str | None, _text_param("Due before (ISO 8601 with offset).")] = None,
    finished_after: Annotated[str | None, _text_param("Finished at or after (ISO 8601 with offset).")] = None,
    finished_before: Annotated[str | None, _text_param("Finished before (ISO 8601 with offset).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Entries per page.")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="Skip this many (the next page's is next_offset).")
    ] = 0,
) -> EntryPage:
    """Entries, newest first, with filters, paging and how many match (``total``, exact unless ``total_exact``
    is false: then more than ``total`` match). 501 for a search the store cannot do (RedisStore: id prefix, error
    text, time ranges)."""
    fields = {
        "command_type": command_type,
        "correlation_id": correlation_id,
        "id_prefix": id_prefix,
        "error": error,
        "created_after": created_after,
        "created_before": created_before,
        "due_after": due_after,
        "due_before": due_before,
        "finished_after": finished_after,
        "finished_before": finished_before,
    }
    try:
        where = parse_filter(fields).model_copy(update={"status": status})
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    try:
        return await admin.list_page(ctx.store, where=where, limit=limit, offset=offset)
    except UnsupportedFeatureError as exc:
        raise HTTPException(status_code=501, detail=str(exc)) from None


@read_router.get("/entries/{entry_id}", responses=_errors(404, 422))
async def get_entry(ctx: Context, entry_id: Annotated[str, Path(description="The entry's id.")]) -> EntryDetail:
    """One entry with its attempts (their errors included)."""
    try:
        detail = await admin.entry_detail(ctx.store, entry_id, ctx.now())
    except UnreadableEntryError as exc:  # a corrupt row: said in one line, which column and what value
        raise HTTPException(status_code=422, detail=str(exc)) from None
    if detail is None:
        raise HTTPException(status_code=404, detail=f"no entry with id {entry_id!r} in {ctx.store.description}")
    return detail


@read_router.get("/workers")
async def get_workers(ctx: Context) -> Fleet:
    """Registered workers (running, stopping, gone) with the entries each holds, and the stuck entries."""
    return await Fleet.read(ctx.store, ctx.now())


@read_router.get("/recurring")
async def get_recurring(ctx: Context) -> RecurringList:
    """Every recurring schedule: its timing, state and next occurrence."""
    return await admin.recurring_list(ctx.store)


@read_router.get("/audit", responses=_errors(422))
async def get_audit(
    ctx: Context,
    entry_id: Annotated[str | None, Query(description="Only the actions on this entry.")] = None,
    before: Annotated[datetime | None, Query(description="Only actions before this time (the next page).")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Records per page.")] = 100,
) -> AuditTrail:
    """Operator actions (who, what, which entries, when, from where), newest first."""
    if before is not None and before.tzinfo is None:
        raise HTTPException(status_code=422, detail=f"before {before.isoformat()!r} needs a UTC offset")
    return await audit_trail(ctx.store, entry_id=entry_id, before=before, limit=limit)


async def _refuse(
    ctx: DashboardContext,
    action: str,
    entry_id: str,
    needed: ScheduledCommandStatus | Sequence[ScheduledCommandStatus],
) -> HTTPException:
    """404 for an unknown entry, 409 for one in another status than ``needed``, with the CLI's explanation."""
    refusal = await admin.explain_refusal(ctx.store, action, entry_id, needed)
    return HTTPException(status_code=404 if refusal.status is None else 409, detail=refusal.message)


@write_router.post("/entries/{entry_id}/cancel", responses=_errors(404, 409))
async def cancel_entry(
    request: Request,
    ctx: Context,
    entry_id: Annotated[str, Path(description="The entry's id.")],
    running: Annotated[bool, Query(description="Also cancel a PROCESSING entry's attempt.")] = False,
) -> CancelResult:
    """Cancel a PENDING entry, or dismiss a dead letter (FAILED): it becomes CANCELLED, keeping its error and
    attempts. ``running=true``: a PROCESSING entry's worker cancels its attempt (``running`` in the answer).
    409 for an entry in another status."""
    result = await admin.cancel_entry(ctx.store, entry_id, ctx.now(), running=running)
    if not result.cancelled:
        raise await _refuse(ctx, "cancel", entry_id, admin.CANCELLABLE_RUNNING if running else admin.CANCELLABLE)
    await record_action(ctx.store, request_actor(request), "cancel", now=ctx.now(), entry_ids=[entry_id])
    return result


@write_router.post("/entries/{entry_id}/requeue", responses=_errors(404, 409))
async def requeue_entry(
    request: Request, ctx: Context, entry_id: Annotated[str, Path(description="The entry's id.")]
) -> RequeueResult:
    """Run a dead letter again: FAILED -> PENDING, due now, retry count 0."""
    result = await admin.requeue_entry(ctx.store, entry_id, ctx.now())
    if not result.requeued:
        raise await _refuse(ctx, "requeue", entry_id, ScheduledCommandStatus.FAILED)
    await record_action(ctx.store, request_actor(request), "requeue", now=ctx.now(), entry_ids=[entry_id])
    return result


class BulkRequest(BaseModel):
    """``POST /api/entries/bulk``: requeue, cancel or dismiss the entries of a selection or of a filter result."""

    action: BulkAction
    #: The selection: these ids (at most 1,000). Give either ids or filter.
    ids: list[str] | None = Field(default=None, max_length=MAX_SELECTION)
    #: The filter result: the same fields as ``GET /api/entries`` (times ISO 8601 with offset).
    filter: dict[str, str | None] | None = None
    #: Required to act on a filter: the ``matched`` of a dry run. More entries matching by now is a 409.
    expected_count: int | None = Field(default=None, ge=0)
    #: Act on at most this many in this request (one batch, for progress); every one when absent.
    limit: int | None = Field(default=None, ge=1)
    #: Only count what the action would take (``matched``); change nothing.
    dry_run: bool = False


@write_router.post("/entries/bulk", responses=_errors(409, 422, 501))
async def bulk_action(http: Request, ctx: Context, request: BulkRequest) -> BulkResult:
    """A bulk action, in batches, each batch one audit record. Requeue and dismiss take FAILED entries, cancel
    PENDING ones; others are left alone (``refused``). On a filter: first ``dry_run`` to learn ``matched``, then
    act with ``expected_count`` set to it (409, nothing done, when more entries match by then)."""
    if (request.ids is None) == (request.filter is None):
        raise HTTPException(status_code=422, detail="give either ids (a selection) or filter (a filter result)")
    actor = request_actor(http)
    try:
        if request.ids is not None:
            if request.dry_run:
                return BulkResult(action=request.action, target="selection", matched=len(request.ids), dry_run=True)
            return await bulk_by_ids(ctx.store, request.action, request.ids, clock=ctx.now, actor=actor)
        unknown = sorted(set(request.filter or {}) - set(FILTER_FIELDS))
        if unknown:
            raise ValueError(f"unknown filter field {unknown[0]!r}; use {', '.join(FILTER_FIELDS)}")
        return await bulk_by_filter(
            ctx.store,
            request.action,
            parse_filter(request.filter or {}),
            clock=ctx.now,
            actor=actor,
            expected=request.expected_count,
            limit=request.limit,
            dry_run=request.dry_run,
        )
    except BulkCountError as exc:
        raise HTTPException(status_code=409, detail=str(exc)) from None
    except UnsupportedFeatureError as exc:
        raise HTTPException(status_code=501, detail=str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None


@write_router.post("/dead-letters/requeue")
async def requeue_dead_letters(
    http: Request, ctx: Context, request: Annotated[RequeueFailedRequest | None, Body()] = None
) -> RequeueResult:
    """Requeue every FAILED entry, or those of one command type; the ids requeued (maybe none)."""
    command_type = request.command_type if request is not None else None
    result = await admin.requeue_failed(ctx.store, ctx.now(), command_type)
    await record_action(
        ctx.store,
        request_actor(http),
        "requeue_failed",
        now=ctx.now(),
        target=requeue_failed_target(command_type),
        count=len(result.requeued),
    )
    return result


def requeue_failed_target(command_type: str | None) -> str:
    """The filter of a requeue of dead letters, as the audit trail names it."""
    return "status=FAILED" + (f" type={command_type}" if command_type is not None else "")


@write_router.post("/purge", responses=_errors(422))
async def purge(http: Request, ctx: Context, request: PurgeRequest) -> PurgeResult:
    """Delete finished entries (and their attempts) older than ``older_than``; never PENDING or PROCESSING."""
    try:
        age = admin.parse_duration(request.older_than)
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    statuses = list(request.statuses) if request.statuses else sorted(TERMINAL_STATUSES)
    refused = [s.value for s in statuses if s not in TERMINAL_STATUSES]
    if refused:
        raise HTTPException(
            status_code=422, detail=f"statuses {', '.join(refused)} cannot be purged: only finished entries are"
        )
    try:
        cutoff = ctx.now() - age
    except OverflowError:
        raise HTTPException(status_code=422, detail=f"older_than {request.older_than!r} is too long") from None
    result = await admin.purge(ctx.store, older_than=cutoff, statuses=statuses, dry_run=request.dry_run)
    if not request.dry_run:
        target = f"older_than={request.older_than} statuses={','.join(s.value for s in statuses)}"
        await record_action(ctx.store, request_actor(http), "purge", now=ctx.now(), target=target, count=result.count)
    return result


def _unknown_schedule(ctx: DashboardContext, name: str) -> HTTPException:
    return HTTPException(status_code=404, detail=f"no recurring schedule named {name!r} in {ctx.store.description}")


# ``{name:path}``: a name may contain "/" (sent as %2F, which the server decodes before routing).
@write_router.post("/recurring/{name:path}/pause", responses=_errors(404))
async def pause_schedule(
    request: Request, ctx: Context, name: Annotated[str, Path(description="The schedule's name.")]
) -> PauseResult:
    """Pause a schedule: its pending occurrence is cancelled and no new one is created until resumed."""
    result = await admin.pause_schedule(ctx.store, name, ctx.now())
    if result is None:
        raise _unknown_schedule(ctx, name)
    await record_action(ctx.store, request_actor(request), "pause", now=ctx.now(), target=name, count=1)
    return result


@write_router.post("/recurring/{name:path}/resume", responses=_errors(404))
async def resume_schedule(
    request: Request, ctx: Context, name: Annotated[str, Path(description="The schedule's name.")]
) -> ResumeResult:
    """Resume a paused schedule at its next future occurrence (missed ones are not run)."""
    result = await admin.resume_schedule(ctx.store, name, ctx.now())
    if result is None:
        raise _unknown_schedule(ctx, name)
    await record_action(ctx.store, request_actor(request), "resume", now=ctx.now(), target=name, count=1)
    return result


# -- queues (fleet-wide; docs/queues.md) -------------------------------------------------------------------------


def _no_queues(exc: UnsupportedFeatureError) -> HTTPException:
    return HTTPException(status_code=501, detail=str(exc))


@read_router.get("/queues", responses=_errors(501))
async def get_queues(ctx: Context) -> QueueList:
    """Every queue with waiting or running entries, or paused or limited: depth, running, paused, limits."""
    try:
        return await admin.queue_list(ctx.store)
    except UnsupportedFeatureError as exc:
        raise _no_queues(exc) from None


QueueName = Annotated[str, Path(description="The queue's name.")]


async def _pause_or_resume(request: Request, ctx: DashboardContext, name: str, paused: bool) -> QueueInfo:
    try:
        queue = await admin.set_queue_paused(ctx.store, name, paused)
    except UnsupportedFeatureError as exc:
        raise _no_queues(exc) from None
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    action = "pause_queue" if paused else "resume_queue"
    await record_action(ctx.store, request_actor(request), action, now=ctx.now(), target=name, count=1)
    return queue


@write_router.post("/queues/{name}/pause", responses=_errors(422, 501))
async def pause_queue(request: Request, ctx: Context, name: QueueName) -> QueueInfo:
    """Pause a queue for every worker: its entries are not claimed until resumed; those running finish."""
    return await _pause_or_resume(request, ctx, name, True)


@write_router.post("/queues/{name}/resume", responses=_errors(422, 501))
async def resume_queue(request: Request, ctx: Context, name: QueueName) -> QueueInfo:
    """Resume a paused queue: workers claim its due entries again at once."""
    return await _pause_or_resume(request, ctx, name, False)


@write_router.post("/queues/{name}/limits", responses=_errors(422, 501))
async def limit_queue(request: Request, ctx: Context, name: QueueName, limits: QueueLimits) -> QueueInfo:
    """Set a queue's fleet-wide limits, both of them: a limit left out (or null) is cleared."""
    try:
        queue = await admin.limit_queue(ctx.store, name, limits)
    except UnsupportedFeatureError as exc:
        raise _no_queues(exc) from None
    except ValueError as exc:
        raise HTTPException(status_code=422, detail=str(exc)) from None
    rate = f"{limits.rate.count}/{limits.rate.per.total_seconds():g}s" if limits.rate is not None else "none"
    target = f"{name} max_running={limits.max_running if limits.max_running is not None else 'none'} rate={rate}"
    await record_action(ctx.store, request_actor(request), "limit_queue", now=ctx.now(), target=target, count=1)
    return queue
