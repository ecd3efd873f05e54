"""Adobe Commerce fulfilment: what the store did with an online order, on the order it
came from.

- handed over or shipped items: a shipment through `POST /V1/order/{orderId}/ship` with
  `order_item_id` and `qty` of each item (developer.adobe.com/commerce/webapi/rest/
  tutorials/orders/order-create-shipment/), the store's MSI source as
  `arguments.extension_attributes.source_code` where its route names one, a tracking
  reference as a track. A whole pickup that names no line ships what remains. Magento
  completes the order once everything is invoiced and shipped; a partial pickup leaves
  the rest unshipped, visible on the order.
- a cancellation: `POST /V1/orders/{id}/cancel`, which answers `false` for an order
  Magento will not cancel (invoiced or shipped): that needs a person and a credit memo.

A shipment carries `tillbridge:<digest>` of the record in its comment and is looked for
among the order's shipments first, so a resend ships nothing twice.

A dry run has no order to read: the shipment or cancel is built on a stand-in made of
the order's id and the lines the store named, and kept whole in the audit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx

from contract import Fulfillment

from .._base import Answered, Exchange, Routed, Unfit
from ._orders import mark_of

__all__ = ["Fulfilments", "stand_in"]

Send = Callable[..., Awaitable[httpx.Response]]
Answer = Callable[..., Answered]
Read = Callable[[httpx.Response], Any]


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)


def _left(item: dict[str, Any]) -> Decimal:
    return (
        _dec(item.get("qty_ordered"))
        - _dec(item.get("qty_shipped"))
        - _dec(item.get("qty_canceled"))
    )


def stand_in(routed: Routed, record: Fulfillment) -> dict[str, Any]:
    """What a dry run takes the order to be: processing, holding each item the store
    named with what it handed over and cancelled, nothing shipped yet."""
    ordered: dict[str, Decimal] = {}
    for line in record.lines:
        item_id = line.line_id or routed.skus.get(line.sku, "")
        if item_id:
            ordered[item_id] = ordered.get(item_id, Decimal(0)) + line.handed_over + line.cancelled
    return {
        "entity_id": int(routed.route.get("order_id", "0")),
        "state": "processing",
        "items": [{"item_id": i, "qty_ordered": q} for i, q in ordered.items()],
    }


class Fulfilments:
    def __init__(self, send: Send, answer: Answer, read: Read, *, dry_run: bool = False) -> None:
        self._send = send
        self._answer = answer
        self._read = read
        self._dry_run = dry_run

    async def post(self, routed: Routed, record: Fulfillment, trace: list[Exchange]) -> str:
        order_id = routed.route.get("order_id", "")
        number = routed.route.get("order_number", record.order_number)
        if not order_id.isdigit():
            raise Unfit(f"order {number}: the route names no Adobe Commerce order id")
        if self._dry_run:
            order = stand_in(routed, record)
        else:
            response = await self._send("GET", f"/orders/{order_id}", trace)
            if response.status_code == 404:
                raise Unfit(f"order {number} ({order_id}) is not in Adobe Commerce")
            if response.status_code != 200:
                raise self._answer(response)
            order = self._read(response)
        if record.status == "cancelled":
            return await self._cancel(order, number, trace)
        marker = mark_of(routed.key)
        params = {
            "searchCriteria[filter_groups][0][filters][0][field]": "order_id",
            "searchCriteria[filter_groups][0][filters][0][value]": order_id,
        }
        found = await self._send("GET", "/shipments", trace, params=params)
        if found.status_code != 200:
            raise self._answer(found)
        for shipment in self._read(found).get("items") or []:
            if any(marker in (c.get("comment") or "") for c in shipment.get("comments") or []):
                return f"{number}/shipment/{shipment['entity_id']}"
        items = self._items(routed, record, order, number)
        if not items:
            return f"{number}/shipped-before"
        shipped = ", ".join(f"{i['order_item_id']} x {i['qty']}" for i in items)
        body: dict[str, Any] = {
            "items": items,
            "notify": False,
            "appendComment": True,
            "comment": {
                "comment": f"{marker} POS {record.status} {record.transaction_id}: {shipped}",
                "is_visible_on_front": 0,
            },
        }
        if record.tracking:
            body["tracks"] = [
                {"track_number": record.tracking, "title": "Tracking", "carrier_code": "custom"}
            ]
        source = routed.route.get("source_code")
        if source:
            body["arguments"] = {"extension_attributes": {"source_code": source}}
        response = await self._send("POST", f"/order/{order_id}/ship", trace, json=body)
        if response.status_code != 200:
            raise self._answer(response)
        return f"{number}/shipment/{response.json()}"

    async def _cancel(self, order: dict[str, Any], number: str, trace: list[Exchange]) -> str:
        if order.get("state") == "canceled":
            return f"{number}/canceled"
        response = await self._send("POST", f"/orders/{order['entity_id']}/cancel", trace)
        if response.status_code != 200:
            raise self._answer(response)
        if response.json() is not True:
            raise Unfit(
                f"Adobe Commerce did not cancel order {number} (state {order.get('state')}): "
                "an invoiced or shipped order is refunded with a credit memo"
            )
        return f"{number}/canceled"

    def _items(
        self, routed: Routed, record: Fulfillment, order: dict[str, Any], number: str
    ) -> list[dict[str, Any]]:
        by_id = {
            str(i["item_id"]): i for i in order.get("items") or [] if not i.get("parent_item_id")
        }
        named = [line for line in record.lines if line.handed_over > 0]
        if not named:
            if record.status == "partially_picked_up":
                raise Unfit(f"order {number}: a partial pickup that names no line handed over")
            return [
                {"order_item_id": int(i["item_id"]), "qty": _left(i)}
                for i in by_id.values()
                if _left(i) > 0
            ]
        items = []
        for line in named:
            item_id = line.line_id or routed.skus.get(line.sku, "")
            item = by_id.get(item_id)
            if item is None:
                raise Unfit(f"order {number}: item {item_id or line.sku} is not on the order")
            if line.handed_over > _left(item):
                raise Unfit(
                    f"order {number}: item {item_id} has {_left(item)} left to ship, "
                    f"not {line.handed_over}"
                )
            items.append({"order_item_id": int(item_id), "qty": line.handed_over})
        return items
