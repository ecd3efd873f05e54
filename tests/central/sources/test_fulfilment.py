"""A store's fulfilment on its way up: routed to the target its order came from (found
with `Downlink.down_order`), noted with `mark_fulfilled`, posted once by the
commercetools connector against the biting fake even when sent again, and an unknown
order kept as an exception with its reason. The inbox is SQLite and PostgreSQL (the
shared fixture); the downlink is the in-memory one of `tests/support/downlink.py`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from central.config import CentralConfig
from central.connectors.commercetools.connector import CommercetoolsConnector
from central.connectors.salesforce.connector import SalesforceConnector
from central.delivery import Delivery
from central.inbox import Inbox, IncomingRecord, RecordState
from contract import Fulfillment, OnlineOrder, down_body_adapter, order_key
from tests.central.connectors.fake_commercetools import (
    CLIENT_ID,
    CLIENT_SECRET,
    PROJECT,
    FakeCommercetools,
)
from tests.central.connectors.fake_salesforce import FakeSalesforce
from tests.central.connectors.test_salesforce import settings as salesforce_settings
from tests.support.downlink import MemoryDownlink

from . import orders


def target(**extra: Any) -> dict[str, Any]:
    return {
        "name": "ct",
        "type": "commercetools",
        "api_url": "https://api.ct.test",
        "auth_url": "https://auth.ct.test",
        "project_key": PROJECT,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "retry_min_seconds": 1,
        **extra,
    }


def relay_config() -> CentralConfig:
    cfg = orders.config(target(), {"pickup_methods": ["click-collect"]})
    return cfg.model_copy(update={"relay_id": "relay-test"})


def imported(fake: FakeCommercetools, number: str, quantity: int = 3) -> dict[str, Any]:
    money = {"currencyCode": "EUR", "centAmount": 999}
    response = fake.call(
        "POST",
        "/orders/import",
        {
            "orderNumber": number,
            "totalPrice": {"currencyCode": "EUR", "centAmount": 999 * quantity},
            "lineItems": [
                {
                    "name": {"en": "Blue pen"},
                    "variant": {"sku": "SKU-PEN-BLUE"},
                    "price": {"value": money},
                    "quantity": quantity,
                },
                {
                    "name": {"en": "Red pen"},
                    "variant": {"sku": "SKU-PEN-RED"},
                    "price": {"value": money},
                    "quantity": 1,
                },
            ],
            "shippingInfo": {"shippingMethodName": "Click & Collect", "price": money},
            "store": {"typeId": "store", "key": "berlin-mitte"},
        },
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


def sent(order: dict[str, Any]) -> OnlineOrder:
    """The OnlineOrder central sent the store for `order` (POS SKUs 4006…)."""
    pos = {"SKU-PEN-BLUE": "4006381333931", "SKU-PEN-RED": "4006381333948"}
    return OnlineOrder(
        source="commercetools",
        target="ct",
        order_id=order["id"],
        order_number=order["orderNumber"],
        version=order["version"],
        store=orders.STORE,
        fulfilment="pickup",
        created_at=datetime(2026, 12, 5, 16, tzinfo=UTC),
        currency="EUR",
        taxed="included",
        lines=[
            {
                "line_id": li["id"],
                "sku": pos[li["variant"]["sku"]],
                "quantity": li["quantity"],
                "unit_price": Decimal("9.99"),
                "amount": Decimal("9.99") * li["quantity"],
            }
            for li in order["lineItems"]
        ],
        tax_total=Decimal(0),
        total=Decimal("39.96"),
    )


async def queue(downlink: MemoryDownlink, order: OnlineOrder) -> None:
    body = down_body_adapter.dump_json(order).decode()
    await downlink.enqueue(order.store, order.kind, order_key(order), body)


async def put(inbox: Inbox, *records: Fulfillment) -> None:
    rows = [
        IncomingRecord(
            seq=seq,
            key=r.key,
            kind=r.kind,
            correlation_id=f"corr-{r.key}",
            occurred_at=r.occurred_at,
            body=r.model_dump(mode="json"),
        )
        for seq, r in enumerate(records, start=1)
    ]
    await inbox.insert_batch(orders.STORE, rows)


async def test_a_pickup_goes_to_the_order_target_and_an_unknown_order_to_a_person(
    inbox: Inbox,
) -> None:
    fake, downlink = FakeCommercetools(), MemoryDownlink()
    order = imported(fake, "WEB-1")
    await queue(downlink, sent(order))
    # Partly picked up: two blue pens, named by POS item only.
    partial = orders.fulfillment(
        "WEB-1", "partially_picked_up", orders.handed("4006381333931", "2")
    )
    unknown = orders.fulfillment("WEB-404", "picked_up", number="F9")
    await put(inbox, partial, unknown)
    delivery = Delivery(
        relay_config(),
        inbox,
        transport_for=lambda _: httpx.MockTransport(fake.handler),
        downlink=downlink,
    )
    try:
        await delivery.drain(rounds=5)
    finally:
        await delivery.aclose()
    held = fake.orders[order["id"]]
    (made,) = held["shippingInfo"]["deliveries"]
    assert made["items"] == [{"id": order["lineItems"][0]["id"], "quantity": 2}]
    assert held["shipmentState"] == "Partial"
    assert held.get("orderState", "Open") == "Open", "the rest of the order stays open"
    assert downlink.fulfilled == {(orders.STORE, "WEB-1"): "partially_picked_up"}
    posted = await inbox.record_by_key(partial.key)
    assert posted is not None
    assert posted.state == RecordState.POSTED
    (exception,) = await inbox.exceptions()
    assert exception.key == unknown.key
    assert "order WEB-404 is not an online order central sent store 0042" in exception.reason


async def test_a_resent_fulfilment_adds_no_second_delivery() -> None:
    fake = FakeCommercetools()
    order = imported(fake, "WEB-2")
    cfg = relay_config()
    whole = orders.fulfillment("WEB-2", "picked_up", tracking="PARCEL-1")
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        connector = CommercetoolsConnector(cfg.targets[0], client)  # type: ignore[arg-type]
        first = await connector.deliver([orders.routed(cfg, whole, sent(order))])
        again = await connector.deliver([orders.routed(cfg, whole, sent(order), attempts=1)])
    assert [o.ref for o in first.accepted] == [o.ref for o in again.accepted]
    held = fake.orders[order["id"]]
    (made,) = held["shippingInfo"]["deliveries"]
    assert sorted(i["quantity"] for i in made["items"]) == [1, 3]
    assert made["parcels"][0]["trackingData"] == {"trackingId": "PARCEL-1"}
    assert (held["shipmentState"], held["orderState"]) == ("Delivered", "Complete")


async def test_a_line_not_on_the_order_is_refused_in_routing() -> None:
    fake = FakeCommercetools()
    order = sent(imported(fake, "WEB-3"))
    cfg = relay_config()
    record = orders.fulfillment("WEB-3", "picked_up", orders.handed("9999", "1"))
    decision = delivery_router(cfg).decide(1, record.model_dump(mode="json"), record, order=order)
    assert decision.error == "SKU 9999 is not on order WEB-3"
    twice = order.model_copy(
        update={"lines": [*order.lines, order.lines[0].model_copy(update={"line_id": "x"})]}
    )
    record = orders.fulfillment("WEB-3", "picked_up", orders.handed("4006381333931", "1"))
    decision = delivery_router(cfg).decide(1, record.model_dump(mode="json"), record, order=twice)
    assert decision.error is not None
    assert "must name the line_id" in decision.error


def delivery_router(cfg: CentralConfig) -> Any:
    from central.routing import Router

    return Router(cfg.targets, cfg.stores, cfg.routing)


async def test_salesforce_says_a_fulfilment_is_not_for_it() -> None:
    """Salesforce is no order source: a fulfilment routed there is refused, saying why."""
    record = orders.fulfillment("WEB-4", "picked_up")
    routed = orders.routed(relay_config(), record, sent(imported(FakeCommercetools(), "WEB-4")))
    async with httpx.AsyncClient(transport=httpx.MockTransport(FakeSalesforce().handler)) as client:
        result = await SalesforceConnector(salesforce_settings(), client).deliver([routed])
    (refused,) = result.rejected
    assert "not fulfillment" in refused.reason


def test_a_fulfilment_names_what_keeps_it_from_its_order_target() -> None:
    order = sent(imported(FakeCommercetools(), "WEB-5"))
    record = orders.fulfillment("WEB-5", "picked_up")
    cfg = relay_config()
    elsewhere = order.model_copy(update={"target": "ct-old"})
    decision = delivery_router(cfg).decide(
        1, record.model_dump(mode="json"), record, order=elsewhere
    )
    assert decision.error == "order WEB-5 came from target ct-old, which is not configured"
    cfg.targets[0].kinds = ["sale"]
    decision = delivery_router(cfg).decide(1, record.model_dump(mode="json"), record, order=order)
    assert decision.error == (
        'target ct does not take fulfillment records: add "fulfillment" to its kinds'
    )
