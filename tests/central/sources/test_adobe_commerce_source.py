"""The Adobe Commerce order source and fulfilment against the biting fake
(`tests/central/connectors/fake_adobe_commerce.py`): orders searched by `updated_at`
with many in one second, in-store pickup by its pickup location, a cancel, an unknown
location refused; shipments of a partial and a whole pickup, once each, and a cancel
Magento refuses for an invoiced order."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from central.config import CentralConfig
from central.connectors.adobe_commerce.connector import AdobeCommerceConnector
from central.sources import OrderSources, build_platform
from contract import OnlineOrder, OrderCancel, down_body_adapter
from tests.central.connectors.fake_adobe_commerce import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    TOKEN,
    TOKEN_SECRET,
    FakeAdobeCommerce,
)
from tests.support.downlink import MemoryDownlink

from . import orders

NOW = datetime(2026, 12, 5, 18, 0, tzinfo=UTC)
_ids = itertools.count(100)


def target() -> dict[str, Any]:
    return {
        "name": "shop",
        "type": "adobe_commerce",
        "base_url": "https://shop.test",
        "token": TOKEN,
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "token_secret": TOKEN_SECRET,
    }


def source_config(**extra: Any) -> CentralConfig:
    return orders.config(target(), {"lag_seconds": 5, "page_size": 2, **extra})


def place(
    fake: FakeAdobeCommerce,
    number: str,
    *,
    updated: str = "2026-12-05 17:00:00",
    location: str | None = "berlin_mitte",
    method: str = "instore_pickup",
    state: str = "processing",
    qty: str = "3",
) -> dict[str, Any]:
    """An order as Magento holds it after checkout with in-store pickup."""
    entity_id = next(_ids)
    order: dict[str, Any] = {
        "entity_id": entity_id,
        "increment_id": number,
        "state": state,
        "status": state,
        "store_id": 1,
        "created_at": "2026-12-05 16:00:00",
        "updated_at": updated,
        "order_currency_code": "EUR",
        "grand_total": Decimal("29.97"),
        "tax_amount": Decimal("4.78"),
        "shipping_amount": Decimal(0),
        "total_invoiced": Decimal("29.97"),
        "customer_firstname": "Ada",
        "customer_lastname": "Lovelace",
        "items": [
            {
                "item_id": entity_id * 10,
                "sku": "SKU-PEN-BLUE",
                "name": "Blue pen",
                "qty_ordered": Decimal(qty),
                "qty_shipped": Decimal(0),
                "qty_canceled": Decimal(0),
                "qty_invoiced": Decimal(qty),
                "qty_refunded": Decimal(0),
                "price": Decimal("8.39"),
                "row_total": Decimal("25.19"),
                "row_total_incl_tax": Decimal("29.97"),
                "tax_amount": Decimal("4.78"),
                "tax_percent": Decimal(19),
                "discount_amount": Decimal(0),
            }
        ],
        "payment": {
            "method": "braintree",
            "amount_paid": Decimal("29.97"),
            "last_trans_id": "bt-1",
        },
        "extension_attributes": {
            "shipping_assignments": [{"shipping": {"method": method, "address": {}}}],
        },
    }
    if location:
        order["extension_attributes"]["pickup_location_code"] = location
    fake.orders[entity_id] = order
    return order


@pytest.fixture
def fake() -> FakeAdobeCommerce:
    return FakeAdobeCommerce()


@pytest.fixture
async def sources(fake: FakeAdobeCommerce) -> AsyncIterator[tuple[OrderSources, MemoryDownlink]]:
    downlink = MemoryDownlink()
    sources = OrderSources(
        source_config(), downlink, transport_for=lambda _: httpx.MockTransport(fake.handler)
    )
    yield sources, downlink
    await sources.aclose()


async def test_pickup_orders_of_one_second_are_each_read_once(
    sources: tuple[OrderSources, MemoryDownlink], fake: FakeAdobeCommerce
) -> None:
    relay, downlink = sources
    for n in range(5):  # five orders changed in one second, two per page
        place(fake, f"00000010{n}")
    place(fake, "000000200", method="flatrate_flatrate", location=None)  # delivered by post
    place(fake, "000000300", updated="2026-12-05 17:59:58")  # not settled yet (lag 5 s)
    assert await relay.poll_once(now=NOW) == 5
    numbers = [down_body_adapter.validate_json(r.body).order_number for r in downlink.rows["0042"]]
    assert numbers == [f"00000010{n}" for n in range(5)]
    first = down_body_adapter.validate_json(downlink.rows["0042"][0].body)
    assert isinstance(first, OnlineOrder)
    assert (first.fulfilment, first.taxed, str(first.total)) == ("pickup", "excluded", "29.97")
    (line,) = first.lines
    assert (line.sku, str(line.quantity), str(line.amount), str(line.tax)) == (
        "SKU-PEN-BLUE",
        "3",
        "25.19",
        "4.78",
    )
    assert first.payments[0].captured
    # Once settled, the late one is read; nothing is read twice.
    assert await relay.poll_once(now=NOW.replace(hour=19)) == 1
    assert len(downlink.rows["0042"]) == 6


async def test_an_unknown_pickup_location_is_refused_and_a_cancel_follows_its_order(
    sources: tuple[OrderSources, MemoryDownlink], fake: FakeAdobeCommerce
) -> None:
    relay, downlink = sources
    order = place(fake, "000000400")
    place(fake, "000000401", location="hamburg_altona")
    await relay.poll_once(now=NOW)
    (refusal,) = downlink.refusals
    assert refusal.batch_id == "web:000000401"
    assert "hamburg_altona is no store's adobe_commerce.source_code" in refusal.reason
    order["state"] = "canceled"
    order["updated_at"] = "2026-12-05 17:30:00"
    await relay.poll_once(now=NOW)
    _, cancel = downlink.rows["0042"]
    body = down_body_adapter.validate_json(cancel.body)
    assert isinstance(body, OrderCancel)
    assert body.order_number == "000000400"


async def _connector_and_order(
    fake: FakeAdobeCommerce, client: httpx.AsyncClient, number: str
) -> tuple[CentralConfig, AdobeCommerceConnector, OnlineOrder, dict[str, Any]]:
    cfg = source_config()
    order = place(fake, number)
    message = build_platform("web", cfg.order_sources["web"], cfg, client).convert(order)  # type: ignore[attr-defined]
    assert isinstance(message, OnlineOrder)
    return cfg, AdobeCommerceConnector(cfg.targets[0], client), message, order  # type: ignore[arg-type]


async def test_a_partial_then_whole_pickup_ships_once_each(fake: FakeAdobeCommerce) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        cfg, connector, message, order = await _connector_and_order(fake, client, "000000500")
        partial = orders.fulfillment(
            "000000500", "partially_picked_up", orders.handed("SKU-PEN-BLUE", "1")
        )
        routed = orders.routed(cfg, partial, message)
        first = await connector.deliver([routed])
        again = await connector.deliver([orders.routed(cfg, partial, message, attempts=1)])
        assert [o.ref for o in first.accepted] == [o.ref for o in again.accepted]
        (shipment,) = fake.shipments.values()
        assert shipment["items"] == [{"order_item_id": order["items"][0]["item_id"], "qty": 1}]
        assert shipment["source_code"] == "berlin_mitte"
        assert order["items"][0]["qty_shipped"] == 1
        rest = orders.fulfillment("000000500", "picked_up", number="F2")
        done = await connector.deliver([orders.routed(cfg, rest, message)])
        assert len(done.accepted) == 1, done
    assert [s["items"][0]["qty"] for s in fake.shipments.values()] == [1, 2]
    assert order["state"] == "complete"


async def test_shipping_more_than_is_left_is_refused_with_its_reason(
    fake: FakeAdobeCommerce,
) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        cfg, connector, message, _ = await _connector_and_order(fake, client, "000000600")
        too_many = orders.fulfillment("000000600", "picked_up", orders.handed("SKU-PEN-BLUE", "4"))
        result = await connector.deliver([orders.routed(cfg, too_many, message)])
    (refused,) = result.rejected
    assert "has 3 left to ship, not 4" in refused.reason
    assert not fake.shipments


async def test_a_cancel_magento_will_not_do_needs_a_person(fake: FakeAdobeCommerce) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        cfg, connector, message, order = await _connector_and_order(fake, client, "000000700")
        order["state"] = "complete"  # invoiced and shipped elsewhere
        cancel = orders.fulfillment("000000700", "cancelled")
        refused = await connector.deliver([orders.routed(cfg, cancel, message)])
        order["state"] = "processing"
        accepted = await connector.deliver([orders.routed(cfg, cancel, message)])
    assert "did not cancel order 000000700" in refused.rejected[0].reason
    assert [o.ref for o in accepted.accepted] == ["000000700/canceled"]
    assert order["state"] == "canceled"


def test_a_source_whose_target_is_a_dry_run_reads_nothing() -> None:
    cfg = orders.config({**target(), "dry_run": True}, {})
    assert OrderSources(cfg, MemoryDownlink()).runners == []
