"""Salesforce totals read-back: an Order has no tax of its own, so with
`order_total_field` the totals Salesforce sums from the items are read back for
reconciliation."""

# ruff: noqa: S608  (SOQL here is joined from configured names and soql_quote()d values)
from __future__ import annotations

import json
from collections.abc import Sequence
from decimal import Decimal

import httpx

from .._base import ConnectorError, Exchange, Outcome, Routed
from ._session import Api, soql_quote
from ._settings import SalesforceSettings

__all__ = ["confirm_totals"]


async def confirm_totals(
    api: Api,
    settings: SalesforceSettings,
    batch: Sequence[Routed],
    accepted: list[Outcome],
    trace: list[Exchange],
) -> None:
    """Set on each accepted order the total Salesforce sums from its items (one query
    for the collection). The orders are posted whatever this read answers: without
    an answer, reconciliation keeps the POS's figure for them."""
    field, key = settings.order_total_field, settings.order_external_id
    by_id = {routed.id: routed.key for routed in batch}
    keys = [by_id[a.id] for a in accepted if a.id in by_id]
    if not field or not keys:
        return
    query = (
        f"SELECT {key}, {field} FROM {settings.order_object} "
        f"WHERE {key} IN ({', '.join(soql_quote(k) for k in keys)})"
    )
    try:
        response = await api("GET", "/query", trace, params={"q": query})
    except (ConnectorError, httpx.HTTPError):
        return
    if response.status_code != 200:
        return
    totals = {
        row.get(key): row.get(field)
        for row in json.loads(response.content, parse_float=Decimal).get("records", [])
    }
    for outcome in accepted:
        total = totals.get(by_id.get(outcome.id))
        if isinstance(total, int | Decimal):
            outcome.confirmed = Decimal(total)
