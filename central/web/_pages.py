"""The dashboard: server-rendered pages for fleet, records, exceptions (retry and resolve
for operators, CSRF-protected forms) and reconciliation, behind a login."""

from __future__ import annotations

import secrets
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from central.exception_queue import retry_matching

from . import _views
from ._api import ExceptionId, RecordId, StoreId
from ._deps import changing, csrf_token, current, login, logout, operator, same_origin, state

__all__ = ["router", "templates"]

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
templates.env.filters["when"] = _views.when

PAGE = 50
"""Records per page; the next page starts below the last record shown."""


async def _page(request: Request, name: str, **context: Any) -> Response:
    who = await current(request)
    if who is None:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    return templates.TemplateResponse(
        request, name, {"who": who, "csrf": csrf_token(request), **context}
    )


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/fleet", status_code=303)


@router.get("/login")
async def login_form(
    request: Request, next: Annotated[str, Query(max_length=500)] = "/fleet"
) -> Response:
    return templates.TemplateResponse(
        request, "login.html", {"next": next, "error": "", "csrf": csrf_token(request)}
    )


@router.post("/login")
async def login_post(
    request: Request,
    username: str = Form(..., max_length=200),
    password: str = Form(..., max_length=1024),
    next: str = Form("/fleet", max_length=500),
    csrf: str = Form("", max_length=200),
) -> Response:
    # Sign-in changes state too: it needs the token its form was served with.
    same_origin(request)
    expected = str(request.session.get("csrf", ""))
    if not csrf or not expected or not secrets.compare_digest(csrf, expected):
        raise HTTPException(403, "missing or wrong CSRF token")
    if await login(request, username, password) is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {"next": next, "error": "Wrong name or password.", "csrf": csrf_token(request)},
            status_code=401,
        )
    target = next if next.startswith("/") and not next.startswith("//") else "/fleet"
    return RedirectResponse(target, status_code=303)


@router.post("/logout")
async def sign_out(request: Request, csrf: str = Form("", max_length=200)) -> Response:
    logout(request, await changing(request, csrf))
    return RedirectResponse("/login", status_code=303)


@router.get("/fleet")
async def fleet(request: Request) -> Response:
    inbox = state(request).inbox
    return await _page(
        request,
        "fleet.html",
        stores=await _views.fleet(inbox),
        stats=await inbox.stats(),
        chart=_views.throughput_svg(await inbox.throughput(60)),
    )


@router.get("/records")
async def records(
    request: Request,
    q: Annotated[str, Query(max_length=512)] = "",
    store: Annotated[str, Query(max_length=64)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    found = await state(request).inbox.search_records(
        q, store=store or None, limit=PAGE + 1, before=before
    )
    older = found[PAGE - 1]["id"] if len(found) > PAGE else None
    return await _page(
        request,
        "records.html",
        records=found[:PAGE],
        q=q,
        store=store,
        before=before,
        older=urlencode({"q": q, "store": store, "before": older}) if older else "",
        newest=urlencode({"q": q, "store": store}),
    )


@router.get("/records/{record_id}")
async def record(request: Request, record_id: RecordId) -> Response:
    found = await _views.record_detail(state(request).inbox, record_id)
    if found is None:
        raise HTTPException(404, f"no record {record_id}")
    return await _page(request, "record.html", record=found)


@router.get("/exceptions")
async def exceptions(
    request: Request, closed: bool = False, said: Annotated[str, Query(max_length=300)] = ""
) -> Response:
    items = await _views.exceptions(state(request).inbox, closed=closed)
    grouped = await _views.exception_groups(state(request).inbox)
    return await _page(
        request, "exceptions.html", items=items, groups=grouped, closed=closed, said=said
    )


@router.post("/exceptions/retry-group")
async def retry_group(
    request: Request, reason: str = Form("", max_length=500), csrf: str = Form("")
) -> Response:
    who = await operator(request, csrf)
    done = await retry_matching(state(request).inbox, reason, by=who.name) if reason else []
    said = f"{len(done)} exceptions sent again" if done else "no open exception matched"
    return RedirectResponse(f"/exceptions?said={quote(said)}", status_code=303)


@router.post("/exceptions/{exception_id}/retry")
async def retry(request: Request, exception_id: ExceptionId, csrf: str = Form("")) -> Response:
    who = await operator(request, csrf)
    try:
        said = await state(request).inbox.retry_exception(exception_id, by=who.name)
    except ValueError as exc:
        said = str(exc)
    return RedirectResponse(f"/exceptions?said={quote(said[:300])}", status_code=303)


@router.post("/exceptions/{exception_id}/resolve")
async def resolve(
    request: Request,
    exception_id: ExceptionId,
    note: str = Form("", max_length=2000),
    csrf: str = Form(""),
) -> Response:
    who = await operator(request, csrf)
    try:
        await state(request).inbox.resolve_exception(exception_id, note, by=who.name)
        said = f"exception {exception_id} resolved"
    except ValueError as exc:
        said = str(exc)
    return RedirectResponse(f"/exceptions?said={quote(said[:300])}", status_code=303)


@router.get("/recon")
async def recon(request: Request) -> Response:
    return await _page(request, "recon.html", days=await _views.recon_days(state(request)))


@router.get("/recon/{store}/{business_date}")
async def recon_day(request: Request, store: StoreId, business_date: date) -> Response:
    days = await _views.recon_day(state(request), store, business_date)
    targets = [t.name for t in state(request).config.targets]
    orders = await state(request).inbox.order_day(store, business_date)
    return await _page(
        request,
        "recon_day.html",
        days=days,
        store=store,
        day=business_date,
        targets=targets,
        orders=orders,
        order_rows=_views.order_table(orders),
    )
