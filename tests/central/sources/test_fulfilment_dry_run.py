"""A fulfilment routed to a dry-run target is accepted, not queued as an exception: a
dry run has no order to read, so the connector builds its update on a stand-in of the
order (its id and the lines the store named) and the audit keeps whole what a real run
would have sent. commercetools and Adobe Commerce, on the shared SQLite and PostgreSQL
inbox fixture."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from central.delivery import Delivery
from central.inbox import Inbox, RecordState
from contract import OnlineOrder
from tests.support.downlink import MemoryDownlink

from . import orders
from .test_adobe_commerce_source import target as adobe_target
from .test_fulfilment import put, queue
from .test_fulfilment import target as ct_target

BLUE, RED = "4006381333931", "4006381333948"


def online(target: str, number: str, order_id: str) -> OnlineOrder:
    """An order central sent store 0042: two blue pens on line 11, a red one on line 12."""
    return OnlineOrder.model_validate(
        {
            "source": "commercetools" if target == "ct" else "adobe_commerce",
            "target": target,
            "order_id": order_id,
            "order_number": number,
            "version": 1,
            "store": orders.STORE,
            "fulfilment": "pickup",
            "created_at": datetime(2026, 12, 5, 16, tzinfo=UTC),
            "currency": "EUR",
            "taxed": "included",
            "lines": [
                {
                    "line_id": "11",
                    "sku": BLUE,
                    "quantity": 2,
                    "unit_price": "9.99",
                    "amount": "19.98",
                },
                {
                    "line_id": "12",
                    "sku": RED,
                    "quantity": 1,
                    "unit_price": "9.99",
                    "amount": "9.99",
                },
            ],
            "tax_total": "0",
            "total": "29.97",
        }
    )


def writes(trail: list[Any]) -> list[dict[str, Any]]:
    attempt = next(e for e in trail if e.step == "attempt")
    assert attempt.detail["dry_run"] is True
    return [e for e in attempt.detail["exchanges"] if e["method"] == "POST"]


@pytest.mark.parametrize("kind", ["commercetools", "adobe_commerce"])
async def test_a_dry_run_target_accepts_a_pickup_and_a_cancel(inbox: Inbox, kind: str) -> None:
    target = {**(ct_target() if kind == "commercetools" else adobe_target()), "dry_run": True}
    source = {"pickup_methods": ["click-collect"]} if kind == "commercetools" else {}
    cfg = orders.config(target, source).model_copy(update={"relay_id": "relay-test"})
    name = target["name"]
    downlink = MemoryDownlink()
    await queue(downlink, online(name, "WEB-1", "501"))
    await queue(downlink, online(name, "WEB-2", "502"))
    partial = orders.fulfillment(
        "WEB-1",
        "partially_picked_up",
        orders.handed(BLUE, "2"),
        {"sku": RED, "cancelled": Decimal(1)},
    )
    cancel = orders.fulfillment("WEB-2", "cancelled", number="F2")
    await put(inbox, partial, cancel)
    delivery = Delivery(
        cfg, inbox, transport_for=lambda _: httpx.MockTransport(_nowhere), downlink=downlink
    )
    try:
        await delivery.drain(rounds=5)
    finally:
        await delivery.aclose()
    assert await inbox.exceptions() == []
    sent: dict[str, list[dict[str, Any]]] = {}
    for record in (partial, cancel):
        row = await inbox.record_by_key(record.key)
        assert row is not None
        assert row.state == RecordState.POSTED
        sent[record.order_number] = writes(await inbox.audit_trail(row.id))
    (picked,) = sent["WEB-1"]
    (cancelled,) = sent["WEB-2"]
    body, gone = json.loads(picked["request"]), json.loads(cancelled["request"] or "null")
    if kind == "commercetools":
        assert picked["url"].endswith("/orders/501")
        delivered, shipment = body["actions"]
        assert delivered["action"] == "addDelivery"
        assert delivered["items"] == [{"id": "11", "quantity": 2}]
        assert shipment == {"action": "changeShipmentState", "shipmentState": "Partial"}
        assert cancelled["url"].endswith("/orders/502")
        assert gone["actions"] == [{"action": "changeOrderState", "orderState": "Cancelled"}]
    else:
        assert picked["url"].endswith("/order/501/ship")
        assert [(i["order_item_id"], Decimal(str(i["qty"]))) for i in body["items"]] == [
            (11, Decimal(2))
        ]
        assert cancelled["url"].endswith("/orders/502/cancel")


def _nowhere(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"a dry run sent {request.method} {request.url}")
