"""The Stores page: the store cross-reference (each store's ids across systems, from
`stores import`), what the reference feeds use for each store where the sheet says
nothing (the config's `[central.stores]` tables), and the reference data central holds.
No customer is shown: the page lists stores and counts only."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from central.feeds import scopes_of
from central.inbox import XREF_COLUMNS

from ._deps import Viewer, state, viewer
from ._pages import _page

__all__ = ["api", "router"]

router = APIRouter(include_in_schema=False)
api = APIRouter(prefix="/api/v1", tags=["api"])


@router.get("/stores")
async def stores(request: Request) -> Response:
    app = state(request)
    xref = await app.inbox.store_xref()
    scopes = scopes_of(xref, app.config.stores, await app.inbox.known_stores())
    rows = {x.store: x for x in xref}
    return await _page(
        request,
        "stores.html",
        columns=XREF_COLUMNS[1:],
        stores=[
            {"scope": scope, "xref": rows.get(store), "from_sheet": store in rows}
            for store, scope in scopes.items()
        ],
        counts=await app.inbox.reference_counts(),
        # Each feed's durable cursor: how far it has read (its platform's change stamp).
        feeds=[
            (name, await app.inbox.source_cursor(f"feed:{name}"))
            for name in sorted(app.config.feeds)
        ],
    )


@api.get("/stores/xref", summary="The store cross-reference: each store's ids across systems")
async def xref(request: Request, _: Annotated[Viewer, Depends(viewer)]) -> list[dict[str, Any]]:
    return [asdict(row) for row in await state(request).inbox.store_xref()]
