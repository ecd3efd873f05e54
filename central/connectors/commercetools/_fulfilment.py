"""commercetools fulfilment: what the store did with an online order, posted on the
order it came from (docs.commercetools.com/api/projects/orders#update-actions).

- handed over or shipped items: `addDelivery` with the order's line item ids and whole
  quantities, keyed `deliveryKey` by the record (a resend finds its delivery and adds
  none), a tracking reference as the delivery's parcel;
- `changeShipmentState`: `Partial` for a partial pickup (the rest stays open and
  visible: line item quantities minus the deliveries), `Delivered` once picked up,
  `Shipped` once shipped; a late partial never takes a finished order back;
- `changeOrderState`: `Complete` once picked up or shipped, `Cancelled` when the store
  cancelled it.

All of it is one versioned update, re-read on a version conflict; what is already on
the order is not asked for again. An order without shipping info cannot hold
deliveries: its states change, and the reference says no delivery was written.

A dry run has no order to read: the update is built on a stand-in made of the order's
id and the lines the store named, and kept whole in the audit like every dry-run call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx

from contract import Fulfillment, key_digest

from .._base import Answered, Exchange, Routed, Unfit

__all__ = ["SHIPMENT_STATE", "Fulfilments", "delivery_key", "stand_in"]

SHIPMENT_STATE = {"picked_up": "Delivered", "partially_picked_up": "Partial", "shipped": "Shipped"}
FINISHED = ("Delivered", "Shipped")

Call = Callable[..., Awaitable[httpx.Response]]
Update = Callable[
    [dict[str, Any], Callable[[dict[str, Any]], list[dict[str, Any]]], list[Exchange]],
    Awaitable[dict[str, Any]],
]
Answer = Callable[..., Answered]


def delivery_key(record_key: str) -> str:
    """The `deliveryKey` a fulfilment record's delivery carries (a key: 2-256 of
    [A-Za-z0-9_-])."""
    return f"pos-{key_digest(record_key, 32)}"


def _delivered(order: dict[str, Any]) -> dict[str, int]:
    """Per line item id: the quantity the order's deliveries hold already."""
    held: dict[str, int] = {}
    for delivery in (order.get("shippingInfo") or {}).get("deliveries") or []:
        for item in delivery.get("items") or []:
            held[item["id"]] = held.get(item["id"], 0) + int(item.get("quantity", 0))
    return held


def stand_in(routed: Routed, record: Fulfillment) -> dict[str, Any]:
    """What a dry run takes the order to be: open, at version 1, holding each line the
    store named with what it handed over and cancelled, and shipping info to add a
    delivery to."""
    quantities: dict[str, int] = {}
    for line in record.lines:
        line_id = line.line_id or routed.skus.get(line.sku, "")
        if line_id:
            quantities[line_id] = quantities.get(line_id, 0) + int(
                line.handed_over + line.cancelled
            )
    return {
        "id": routed.route.get("order_id", "dry-run"),
        "version": 1,
        "orderState": "Open",
        "lineItems": [{"id": i, "quantity": q} for i, q in quantities.items()],
        "shippingInfo": {"deliveries": []},
    }


class Fulfilments:
    def __init__(
        self, call: Call, update: Update, answer: Answer, *, dry_run: bool = False
    ) -> None:
        self._call = call
        self._update = update
        self._answer = answer
        self._dry_run = dry_run

    async def post(self, routed: Routed, record: Fulfillment, trace: list[Exchange]) -> str:
        order_id = routed.route.get("order_id", "")
        number = routed.route.get("order_number", record.order_number)
        if not order_id:
            raise Unfit(f"order {number}: the route names no commercetools order id")
        order = (
            stand_in(routed, record) if self._dry_run else await self._read(order_id, number, trace)
        )
        if record.status == "cancelled":

            def cancel(current: dict[str, Any]) -> list[dict[str, Any]]:
                if current.get("orderState") == "Cancelled":
                    return []
                return [{"action": "changeOrderState", "orderState": "Cancelled"}]

            await self._update(order, cancel, trace)
            return f"{number}/cancelled"
        key = delivery_key(routed.key)
        with_shipping = order.get("shippingInfo") is not None
        held = (order.get("shippingInfo") or {}).get("deliveries") or []
        # Sent before (its answer lost): its delivery is there, nothing more to add.
        done = any(d.get("key") == key for d in held)
        items = [] if done else self._items(routed, record, order, number)

        def fulfil(current: dict[str, Any]) -> list[dict[str, Any]]:
            actions: list[dict[str, Any]] = []
            deliveries = (current.get("shippingInfo") or {}).get("deliveries") or []
            if items and with_shipping and not any(d.get("key") == key for d in deliveries):
                delivery: dict[str, Any] = {
                    "action": "addDelivery",
                    "deliveryKey": key,
                    "items": items,
                }
                if record.tracking:
                    delivery["parcels"] = [{"trackingData": {"trackingId": record.tracking}}]
                actions.append(delivery)
            finished = current.get("shipmentState") in FINISHED or current.get("orderState") in (
                "Complete",
                "Cancelled",
            )
            if record.status == "partially_picked_up" and finished:
                return actions  # a late partial does not reopen a finished order
            shipment = SHIPMENT_STATE[record.status]
            if current.get("shipmentState") != shipment:
                actions.append({"action": "changeShipmentState", "shipmentState": shipment})
            if record.status != "partially_picked_up" and current.get("orderState") != "Complete":
                actions.append({"action": "changeOrderState", "orderState": "Complete"})
            return actions

        await self._update(order, fulfil, trace)
        wrote = done or (items and with_shipping)
        return f"{number}/{key}" if wrote else f"{number}/{record.status}"

    async def _read(self, order_id: str, number: str, trace: list[Exchange]) -> dict[str, Any]:
        response = await self._call("GET", f"/orders/{quote(order_id, safe='')}", trace)
        if response.status_code == 404:
            raise Unfit(f"order {number} ({order_id}) is not in commercetools")
        if response.status_code != 200:
            raise self._answer(response)
        order: dict[str, Any] = response.json()
        return order

    def _items(
        self, routed: Routed, record: Fulfillment, order: dict[str, Any], number: str
    ) -> list[dict[str, Any]]:
        """The delivery's items: the lines the store names, or, for a whole pickup or
        shipment that names none, every quantity no delivery holds yet."""
        quantities = {
            li["id"]: int(li.get("quantity", 0))
            for li in [*(order.get("lineItems") or []), *(order.get("customLineItems") or [])]
        }
        named = [line for line in record.lines if line.handed_over > 0]
        if not named:
            if record.status == "partially_picked_up":
                raise Unfit(f"order {number}: a partial pickup that names no line handed over")
            held = _delivered(order)
            return [
                {"id": line_id, "quantity": quantity - held.get(line_id, 0)}
                for line_id, quantity in quantities.items()
                if quantity > held.get(line_id, 0)
            ]
        items = []
        for line in named:
            line_id = line.line_id or routed.skus.get(line.sku, "")
            if line_id not in quantities:
                raise Unfit(f"order {number}: line {line_id or line.sku} is not on the order")
            if line.handed_over != line.handed_over.to_integral_value():
                raise Unfit(
                    f"order {number}: {line.handed_over} of line {line_id} is not a whole "
                    "number (a delivery item's quantity is an Int)"
                )
            items.append({"id": line_id, "quantity": int(line.handed_over)})
        return items
