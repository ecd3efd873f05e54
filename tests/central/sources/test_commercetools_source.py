"""The commercetools order source and fulfilment against the third-party
`@labdigital/commercetools-mock` server: orders read by `lastModifiedAt` into the
store's downlink (pickup and ship-from-store by shipping method key, the store by its
store key, SKUs back to POS items), refusals for an unknown store or SKU, a cancel, two
relays polling at once, and a partial then full pickup posted back as deliveries and
states.

Mock deviation (4.4.0, the only version the registry holds): `addDelivery` keeps the
action's `deliveryKey` on the delivery under that name, where the API names it `key`
(docs.commercetools.com/api/projects/orders#delivery). The connector looks for `key`,
as the API answers; that a resend adds no second delivery is proven against the biting
fake (`test_fulfilment_connectors.py`), and
`test_the_mock_still_keeps_delivery_key_under_its_action_name` fails the day the mock
follows the API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from central.config import CentralConfig
from central.connectors.commercetools.connector import CommercetoolsConnector
from central.sources import OrderSources, build_platform
from contract import OnlineOrder, OrderCancel, down_body_adapter
from tests.support.ct_shop import Admin, expanded, place, set_up
from tests.support.ctmock import commercetools_mock
from tests.support.downlink import MemoryDownlink

from . import orders

PROJECT = "acme-src"


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with commercetools_mock(PROJECT) as url:
        yield url


@pytest.fixture(scope="module")
def admin(mock_url: str) -> Admin:
    return set_up(mock_url, PROJECT)


def target(url: str) -> dict[str, Any]:
    return {
        "name": "ct",
        "type": "commercetools",
        "api_url": url,
        "auth_url": url,
        "project_key": PROJECT,
        "client_id": "relay",
        "client_secret": "relay-secret",
        "return_payment_state": False,
    }


def source_config(url: str, **extra: Any) -> CentralConfig:
    return orders.config(
        target(url),
        {
            "pickup_methods": ["click-collect"],
            "ship_from_store_methods": ["ship-from-store"],
            "lag_seconds": 0,
            "page_size": 2,
            **extra,
        },
    )


@pytest.fixture
async def downlink() -> MemoryDownlink:
    return MemoryDownlink()


@pytest.fixture
async def sources(
    mock_url: str, admin: Admin, downlink: MemoryDownlink
) -> AsyncIterator[OrderSources]:
    sources = OrderSources(source_config(mock_url), downlink)
    # Start from now: orders of earlier tests in this module are not ours to see.
    await downlink.advance_cursor(sources.runners[0].cursor_name, None, f"{_now_ct()}|~")
    yield sources
    await sources.aclose()


def _now_ct() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def later() -> datetime:
    """A poll's now, after the mock's last write (the source reads only settled orders)."""
    return datetime.now(UTC) + timedelta(seconds=1)


async def test_pickup_and_ship_from_store_orders_go_to_their_store_once(
    sources: OrderSources, admin: Admin, downlink: MemoryDownlink
) -> None:
    place(admin, "WEB-1001")
    place(admin, "WEB-1002", method="home-delivery")  # not the store's
    place(admin, "WEB-1003", method="ship-from-store", sku="SKU-PEN-RED", quantity=1)
    assert await sources.poll_once(now=later()) == 2
    pickup, ship = (down_body_adapter.validate_json(r.body) for r in downlink.rows[orders.STORE])
    assert isinstance(pickup, OnlineOrder)
    assert isinstance(ship, OnlineOrder)
    assert (pickup.order_number, pickup.fulfilment, pickup.store) == ("WEB-1001", "pickup", "0042")
    (line,) = pickup.lines
    assert (line.sku, str(line.quantity), str(line.unit_price), str(line.amount)) == (
        "SKU-PEN-BLUE",
        "3",
        "9.99",
        "29.97",
    )
    assert pickup.taxed == "included"
    assert str(pickup.total) == "29.97"
    assert ship.fulfilment == "ship_from_store"
    assert ship.ship_to is not None
    assert ship.ship_to.city == "Berlin"
    assert ship.ship_to.country == "DE"
    runner = sources.runners[0]
    assert runner.counts.skipped == 1
    # Read again: nothing new is queued, the cursor stays.
    cursor = await downlink.source_cursor(runner.cursor_name)
    assert await sources.poll_once(now=later()) == 0
    assert await downlink.source_cursor(runner.cursor_name) == cursor
    assert len(downlink.rows[orders.STORE]) == 2


async def test_an_unknown_store_or_sku_is_a_visible_refusal_and_the_cursor_moves_on(
    mock_url: str, admin: Admin, downlink: MemoryDownlink
) -> None:
    table = orders.config(target(mock_url), {"pickup_methods": ["click-collect"]})
    assert table.order_sources["web"].lag_seconds > 0
    sku_table = _sku_table(mock_url)
    sources = OrderSources(sku_table, downlink)
    runner = sources.runners[0]
    await downlink.advance_cursor(runner.cursor_name, None, f"{_now_ct()}|~")
    try:
        place(admin, "WEB-2001", store="hamburg")
        place(admin, "WEB-2002", sku="SKU-PEN-RED")  # the SKU table names no POS item
        place(admin, "WEB-2003")
        await sources.poll_once(now=later())
    finally:
        await sources.aclose()
    assert [r.kind for r in downlink.refusals] == ["order", "order"]
    hamburg, red = downlink.refusals
    assert hamburg.batch_id == "web:WEB-2001"
    assert "hamburg is no store's commercetools.store" in hamburg.reason
    assert red.store == "0042"
    assert "SKU SKU-PEN-RED has no POS item" in red.reason
    (queued,) = downlink.rows[orders.STORE]
    assert as_number(queued.body) == "WEB-2003"
    assert runner.counts.refused == 2


def _sku_table(url: str) -> CentralConfig:
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp())
    (folder / "skus.csv").write_text("pos_sku,sku\n4006381333931,SKU-PEN-BLUE\n")
    return source_config(url, page_size=100).model_copy(
        update={
            "routing": source_config(url).routing.model_copy(
                update={"sku_mode": "table", "sku_table": folder / "skus.csv"}
            )
        }
    )


def as_number(body: str) -> str:
    return down_body_adapter.validate_json(body).order_number


async def test_a_changed_order_queues_again_only_when_the_store_copy_changes(
    sources: OrderSources, admin: Admin, downlink: MemoryDownlink
) -> None:
    order = place(admin, "WEB-3001")
    await sources.poll_once(now=later())
    # A change the store's copy does not show (a payment state): nothing new.
    order = admin.update(order, {"action": "changePaymentState", "paymentState": "Paid"})
    await sources.poll_once(now=later())
    assert len(downlink.rows[orders.STORE]) == 1
    assert sources.runners[0].counts.unchanged == 1
    # Cancelled on the platform: the store takes it off the shelf.
    admin.update(order, {"action": "changeOrderState", "orderState": "Cancelled"})
    await sources.poll_once(now=later())
    first, cancel = downlink.rows[orders.STORE]
    body = down_body_adapter.validate_json(cancel.body)
    assert isinstance(body, OrderCancel)
    assert body.order_number == "WEB-3001"
    assert cancel.seq == first.seq + 1


async def test_two_relays_polling_at_once_queue_each_order_once(
    mock_url: str, admin: Admin, downlink: MemoryDownlink
) -> None:
    cfg = source_config(mock_url)
    one, two = OrderSources(cfg, downlink), OrderSources(cfg, downlink)
    name = one.runners[0].cursor_name
    await downlink.advance_cursor(name, None, f"{_now_ct()}|~")
    try:
        for n in range(7):
            place(admin, f"WEB-40{n:02d}")
        moment = later()
        await asyncio.gather(one.poll_once(now=moment), two.poll_once(now=moment))
        await asyncio.gather(one.poll_once(now=moment), two.poll_once(now=moment))
    finally:
        await one.aclose()
        await two.aclose()
    numbers = [as_number(r.body) for r in downlink.rows[orders.STORE]]
    assert numbers == [f"WEB-40{n:02d}" for n in range(7)]
    assert [r.seq for r in downlink.rows[orders.STORE]] == list(range(1, 8))
    last = (await downlink.source_cursor(name) or "").split("|")[0]
    assert last > ""
    assert one.runners[0].counts.queued + two.runners[0].counts.queued == 7


async def test_a_partial_then_whole_pickup_goes_back_as_deliveries_and_states(
    mock_url: str, admin: Admin, downlink: MemoryDownlink
) -> None:
    cfg = source_config(mock_url)
    order = place(admin, "WEB-5001")
    async with httpx.AsyncClient() as client:
        platform = build_platform("web", cfg.order_sources["web"], cfg, client)
        message = platform.convert(expanded(admin, order))  # type: ignore[attr-defined]
        assert isinstance(message, OnlineOrder)
        connector = CommercetoolsConnector(cfg.targets[0], client)  # type: ignore[arg-type]
        partial = orders.fulfillment(
            "WEB-5001", "partially_picked_up", orders.handed("SKU-PEN-BLUE", "1")
        )
        result = await connector.deliver([orders.routed(cfg, partial, message)])
        assert len(result.accepted) == 1, result
        now = admin.get(f"/orders/{order['id']}")
        (delivery,) = now["shippingInfo"]["deliveries"]
        assert delivery["items"] == [{"id": order["lineItems"][0]["id"], "quantity": 1}]
        assert (now["shipmentState"], now["orderState"]) == ("Partial", "Open")
        # The rest is picked up: the store names no lines, what remains goes.
        rest = orders.fulfillment("WEB-5001", "picked_up", number="F2")
        result = await connector.deliver([orders.routed(cfg, rest, message)])
        assert len(result.accepted) == 1, result
        now = admin.get(f"/orders/{order['id']}")
        assert [d["items"][0]["quantity"] for d in now["shippingInfo"]["deliveries"]] == [1, 2]
        assert (now["shipmentState"], now["orderState"]) == ("Delivered", "Complete")
        # Read again by the source: a finished order queues nothing.
        assert platform.convert(expanded(admin, now)) is None  # type: ignore[attr-defined]


async def test_a_cancel_by_the_store_cancels_the_order(mock_url: str, admin: Admin) -> None:
    cfg = source_config(mock_url)
    order = place(admin, "WEB-6001")
    async with httpx.AsyncClient() as client:
        platform = build_platform("web", cfg.order_sources["web"], cfg, client)
        message = platform.convert(expanded(admin, order))  # type: ignore[attr-defined]
        assert isinstance(message, OnlineOrder)
        connector = CommercetoolsConnector(cfg.targets[0], client)  # type: ignore[arg-type]
        cancel = orders.fulfillment("WEB-6001", "cancelled")
        result = await connector.deliver([orders.routed(cfg, cancel, message)])
    assert [o.ref for o in result.accepted] == ["WEB-6001/cancelled"]
    assert admin.get(f"/orders/{order['id']}")["orderState"] == "Cancelled"


def test_the_mock_still_keeps_delivery_key_under_its_action_name(admin: Admin) -> None:
    order = place(admin, "WEB-7001")
    item = {"id": order["lineItems"][0]["id"], "quantity": 1}
    order = admin.update(order, {"action": "addDelivery", "deliveryKey": "pos-1", "items": [item]})
    (delivery,) = order["shippingInfo"]["deliveries"]
    assert delivery.get("key") is None
    assert delivery["deliveryKey"] == "pos-1"
