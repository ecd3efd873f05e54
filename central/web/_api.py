"""The JSON API under /api/v1 (the OpenAPI document is at /openapi.json): fleet,
records and their audit trail, the exception queue with retry and resolve for
operators, reconciliation with CSV export, throughput and the inbox's counts."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

from central.exception_queue import retry_matching
from central.recon import to_csv
from common.redact import redact_value

from . import _views
from ._deps import Viewer, expected_csrf, operator, state, viewer

__all__ = ["ExceptionId", "RecordId", "StoreId", "download_name", "router"]

router = APIRouter(prefix="/api/v1", tags=["api"])
Signed = Annotated[Viewer, Depends(viewer)]
# Ids and limits are checked here, the same for SQLite and PostgreSQL: a negative limit or
# an id past 64 bits never reaches either database.
_MAX_ID = 2**63 - 1
RecordId = Annotated[int, Path(ge=1, le=_MAX_ID)]
ExceptionId = Annotated[int, Path(ge=1, le=_MAX_ID)]
StoreId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class Resolution(BaseModel):
    note: str = Field(min_length=1, max_length=2000, description="What was done about it.")


@router.get("/stats", summary="The inbox's counts: records by state, stores, exceptions")
async def stats(request: Request, _: Signed) -> dict[str, Any]:
    return await state(request).inbox.stats()


@router.get(
    "/fleet",
    summary="Each store: online or offline, last seen, backlog, lag, version, and its "
    "downlink (orders pending, delivered, oldest waiting, past their promised time) and "
    "what its heartbeat said of orders not yet written to the POS (orders_waiting, "
    "orders_alert)",
)
async def fleet(request: Request, _: Signed) -> list[dict[str, Any]]:
    return await _views.fleet(state(request).inbox)


@router.get("/records", summary="Search by key, transaction id or correlation id")
async def records(
    request: Request,
    _: Signed,
    q: Annotated[str, Query(max_length=512)] = "",
    store: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, description="Only records older than this id: the next page.")
    ] = None,
) -> list[dict[str, Any]]:
    return await state(request).inbox.search_records(q, store=store, limit=limit, before=before)


@router.get("/records/{record_id}", summary="One record (redacted), its deliveries and audit")
async def record(request: Request, record_id: RecordId, _: Signed) -> dict[str, Any]:
    found = await _views.record_detail(state(request).inbox, record_id)
    if found is None:
        raise HTTPException(404, f"no record {record_id}")
    return found


@router.get("/exceptions", summary="Open exceptions, oldest first (all with closed=true)")
async def exceptions(request: Request, _: Signed, closed: bool = False) -> list[dict[str, Any]]:
    return await _views.exceptions(state(request).inbox, closed=closed)


@router.get("/exceptions/groups", summary="Open exceptions counted by target and reason")
async def exception_groups(request: Request, _: Signed) -> list[dict[str, Any]]:
    return await _views.exception_groups(state(request).inbox)


@router.post(
    "/exceptions/retry",
    summary="Send every open exception whose reason holds `reason` again (operators)",
)
async def retry_group(request: Request, reason: str) -> dict[str, Any]:
    who = await operator(request)
    if not reason.strip():
        raise HTTPException(422, "reason needs some text")
    done = await retry_matching(state(request).inbox, reason, by=who.name)
    return {"retried": len(done), "results": [{"id": i, "result": said} for i, said in done]}


@router.get("/exceptions/{exception_id}", summary="One exception with the target's response")
async def exception(request: Request, exception_id: ExceptionId, _: Signed) -> dict[str, Any]:
    item = await state(request).inbox.exception(exception_id)
    if item is None:
        raise HTTPException(404, f"no exception {exception_id}")
    return _views.shown(item) | {"response": redact_value(item.response)}


@router.post("/exceptions/{exception_id}/retry", summary="Send the record again (operators)")
async def retry(request: Request, exception_id: ExceptionId) -> dict[str, str]:
    who = await operator(request)
    try:
        said = await state(request).inbox.retry_exception(exception_id, by=who.name)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"result": said}


@router.post("/exceptions/{exception_id}/resolve", summary="Close with a note (operators)")
async def resolve(request: Request, exception_id: ExceptionId, body: Resolution) -> dict[str, str]:
    who = await operator(request)
    try:
        await state(request).inbox.resolve_exception(exception_id, body.note, by=who.name)
    except ValueError as exc:
        raise HTTPException(409, str(exc)) from None
    return {"result": "resolved"}


@router.get("/recon", summary="Closed business days with their count of differences")
async def recon_days(request: Request, _: Signed) -> list[dict[str, Any]]:
    return await _views.recon_days(state(request))


@router.get(
    "/recon/{store}/{business_date}.csv",
    response_class=PlainTextResponse,
    summary="One store's day as CSV",
)
async def recon_csv(request: Request, store: StoreId, business_date: date, _: Signed) -> Any:
    days = await _views.recon_day(state(request), store, business_date)
    orders = await state(request).inbox.order_day(store, business_date)
    return PlainTextResponse(
        to_csv(days, orders),
        media_type="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="{download_name(store, business_date)}"'
        },
    )


@router.get("/recon/{store}/{business_date}", summary="One store's day: POS, received, targets")
async def recon_day(
    request: Request, store: StoreId, business_date: date, _: Signed
) -> list[dict[str, Any]]:
    return _views.day_json(await _views.recon_day(state(request), store, business_date))


@router.get(
    "/recon/{store}/{business_date}/orders",
    summary="One store's online orders of a day (UTC, the day central first queued each): "
    "received, handed to the store, fulfilled by status, cancelled online",
)
async def recon_orders(
    request: Request, store: StoreId, business_date: date, _: Signed
) -> dict[str, Any]:
    return _views.orders_json(await state(request).inbox.order_day(store, business_date))


@router.get("/throughput", summary="Records received per minute, last hour, oldest first")
async def throughput(
    request: Request, _: Signed, minutes: Annotated[int, Query(ge=1, le=1440)] = 60
) -> list[int]:
    return await state(request).inbox.throughput(minutes)


@router.get("/csrf", summary="The token to send as X-CSRF-Token with every change")
async def csrf(request: Request, who: Signed) -> dict[str, str]:
    return {"csrf": expected_csrf(request, who)}


def download_name(store: str, day: date) -> str:
    """A file name of letters, digits, dot, dash and underscore only: nothing a client
    could read as a second header parameter or a path."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", store)[:64].strip(".") or "store"
    return f"recon-{safe}-{day.isoformat()}.csv"
