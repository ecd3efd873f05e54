"""Adobe Commerce credit memos: a return or void of an order Magento holds, refunded
offline (`POST /V1/order/{id}/refund`) for the POS refund amount. By default the memo
refunds that amount as an adjustment and names the returned items in its comment (with
item quantities MSI would write a compensating reservation for items it never shipped);
with `refund_items` it lists them, corrected to the POS amount by an adjustment.

A memo carries `tillbridge:<digest>` of the record in its comment and is looked for among
the order's credit memos first, so a resend refunds nothing twice."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx

from contract import Transaction, currency_exponent

from .._base import Exchange, Routed, Unfit
from ._answers import answer, dec
from ._orders import mark_of

__all__ = ["CreditMemos"]

Send = Callable[..., Awaitable[httpx.Response]]
FindOrder = Callable[[str, list[Exchange]], Awaitable[dict[str, Any] | None]]


class CreditMemos:
    def __init__(
        self, send: Send, find_order: FindOrder, *, refund_items: bool, return_to_stock: bool
    ) -> None:
        self._send = send
        self._find_order = find_order
        self._refund_items = refund_items
        self._return_to_stock = return_to_stock

    async def post(self, routed: Routed, record: Transaction, trace: list[Exchange]) -> str:
        assert routed.original_ref is not None
        order = await self._find_order(routed.original_ref, trace)
        if order is None:
            raise Unfit(f"original order {routed.original_ref} is not in Adobe Commerce")
        order_id = order["entity_id"]
        marker = mark_of(routed.key)
        params = {
            "searchCriteria[filter_groups][0][filters][0][field]": "order_id",
            "searchCriteria[filter_groups][0][filters][0][value]": str(order_id),
        }
        found = await self._send("GET", "/creditmemos", trace, params=params)
        if found.status_code != 200:
            raise answer(found)
        for memo in found.json().get("items") or []:
            if any(marker in (c.get("comment") or "") for c in memo.get("comments") or []):
                return f"{routed.original_ref}/creditmemo/{memo['entity_id']}"
        by_sku = {i.get("sku"): i for i in order.get("items") or []}
        refunds: list[tuple[dict[str, Any], Decimal]] = []
        if record.kind == "void":
            refunds = [(i, dec(i.get("qty_ordered"))) for i in order.get("items") or []]
        for line in record.lines if record.kind == "return" else []:
            sku = routed.skus.get(line.sku, line.sku)
            if sku not in by_sku:
                where = f"order {routed.original_ref}"
                raise Unfit(f"line {line.number}: SKU {sku} is not on {where}")
            refunds.append((by_sku[sku], abs(line.quantity)))
        returned = ", ".join(f"{item.get('sku')} x {qty}" for item, qty in refunds)
        if self._refund_items:
            items = [{"order_item_id": item["item_id"], "qty": qty} for item, qty in refunds]
            # What Magento computes from the items, corrected to what the POS paid back.
            computed = sum(
                (
                    (dec(i.get("row_total_incl_tax")) - dec(i.get("discount_amount")))
                    * qty
                    / dec(i.get("qty_ordered"))
                    for i, qty in refunds
                    if dec(i.get("qty_ordered"))
                ),
                Decimal(0),
            )
        else:
            # The POS amount as an adjustment, no item quantity: Magento writes no
            # compensating reservation, so the salable quantity stays the POS's level.
            items = [{"order_item_id": i["item_id"], "qty": 0} for i in order.get("items") or []]
            computed = Decimal(0)
        exponent = Decimal(1).scaleb(-currency_exponent(record.currency))
        adjustment = abs(record.total) - computed.quantize(exponent)
        restock = [i["order_item_id"] for i in items if i["qty"]] if self._return_to_stock else []
        body = {
            "items": items,
            "notify": False,
            "appendComment": True,
            "comment": {
                "comment": f"{marker} POS {record.kind} {record.transaction_id}: {returned} "
                f"(correlation {routed.correlation_id})",
                "is_visible_on_front": 0,
            },
            "arguments": {
                "shipping_amount": 0,
                "adjustment_positive": max(adjustment, Decimal(0)),
                "adjustment_negative": max(-adjustment, Decimal(0)),
                "extension_attributes": {"return_to_stock_items": restock},
            },
        }
        response = await self._send("POST", f"/order/{order_id}/refund", trace, json=body)
        if response.status_code != 200:
            raise answer(response)
        return f"{routed.original_ref}/creditmemo/{response.json()}"
