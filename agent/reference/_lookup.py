"""The till's lookup on the agent's loopback listener, for POS extensions that ask
instead of import: `GET /customers?loyalty_id=…` and `GET /items/{sku}`.

No credentials: the listener binds to the loopback address only, and the daemon refuses
a request from any other address before it gets here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from agent._seal import SealError

from ._store import ReferenceStore

__all__ = ["answer_lookup", "is_lookup"]


def is_lookup(target: str) -> bool:
    path = urlsplit(target).path
    return path == "/customers" or path.startswith("/items/")


async def answer_lookup(store: ReferenceStore | None, target: str) -> tuple[int, Any]:
    """The HTTP status and JSON body for a lookup request target (path and query)."""
    if store is None:
        return 404, {"error": "reference data is not enabled at this store"}
    parts = urlsplit(target)
    if parts.path == "/customers":
        loyalty = parse_qs(parts.query).get("loyalty_id", [""])[0].strip()
        if not loyalty:
            return 400, {"error": "name a customer: /customers?loyalty_id=…"}
        try:
            found = await store.customers_by_loyalty(loyalty)
        except SealError:
            return 500, {"error": "the customer's contact does not open with the outbox key"}
        return 200, {"customers": found}
    sku = unquote(parts.path.removeprefix("/items/"))
    if not sku or "/" in sku:
        return 400, {"error": "name an item: /items/{sku}"}
    item = await store.item(sku)
    if item is None:
        return 404, {"error": f"no item {sku} at this store"}
    return 200, item
