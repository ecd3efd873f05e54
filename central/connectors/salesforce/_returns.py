"""Salesforce returns: a return of a sale Salesforce holds is a reduction order, each of
its items linked to the OrderItem it gives back."""

# ruff: noqa: S608  (SOQL here is joined from configured names and soql_quote()d values)
from __future__ import annotations

from contract import Transaction

from .._base import Exchange, Routed, Unfit
from ._session import Api, answer, soql_quote
from ._settings import SalesforceSettings

__all__ = ["original_items"]


async def original_items(
    api: Api,
    settings: SalesforceSettings,
    routed: Routed,
    record: Transaction,
    trace: list[Exchange],
) -> dict[str, str]:
    """Return line number → the Id of the OrderItem it gives back, by the original
    line's external id (from the line's link), else by its product."""
    wanted: dict[str, tuple[str | None, str]] = {}
    for line in record.lines:
        if line.voided or not line.sku:
            continue
        link = line.link
        original = (link.key if link else None) or next(
            (t.key for t in record.links if t.key), None
        )
        key = f"{original}#{link.line}" if original and link and link.line else None
        wanted[line.number] = (key, routed.skus.get(line.sku, line.sku))
    field = settings.order_item_external_id
    query = (
        f"SELECT Id, {field}, Product2.StockKeepingUnit FROM {settings.order_item_object} "
        f"WHERE OrderId = {soql_quote(routed.original_ref or '')}"
    )
    response = await api("GET", "/query", trace, params={"q": query})
    if response.status_code != 200:
        raise answer(response)
    rows = response.json().get("records", [])
    by_key = {r.get(field): r["Id"] for r in rows}
    by_sku = {(r.get("Product2") or {}).get("StockKeepingUnit"): r["Id"] for r in rows}
    found: dict[str, str] = {}
    for number, (key, sku) in wanted.items():
        item = by_key.get(key) if key else None
        item = item or by_sku.get(sku)
        if item is None:
            raise Unfit(f"line {number}: SKU {sku} is not on order {routed.original_ref}")
        found[number] = item
    return found
