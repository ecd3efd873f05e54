"""The Adobe Commerce feed against the in-memory shop (`fake_adobe_commerce`, OAuth
1.0a-signed calls), into a real SQLite inbox: products read by `updated_at` then id
(products changed in one second read once across pages), each an item with its price,
status and attributes, and its stock at each store's own MSI source only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from central.config import CentralConfig
from central.feeds import Feeds
from central.inbox import Inbox, StoreXref, open_inbox
from contract import RefItem, down_body_adapter
from tests.central.connectors.fake_adobe_commerce import (
    CATALOG,
    SALES,
    SOURCE_READ,
    FakeAdobeCommerce,
)
from tests.central.sources.test_adobe_commerce_source import target

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def config() -> CentralConfig:
    feed = {
        "type": "adobe_commerce",
        "target": "shop",
        "currency": "EUR",
        "lag_seconds": 0,
        "page_size": 2,
    }
    return CentralConfig.model_validate(
        {"targets": [{**target(), "kinds": ["sale"]}], "feeds": {"catalog": feed}}
    )


def product(shop: FakeAdobeCommerce, ident: int, sku: str, at: str, price: str) -> None:
    shop.products[ident] = {
        "id": ident,
        "sku": sku,
        "name": f"Pen {sku}",
        "price": Decimal(price),
        "status": 1,
        "type_id": "simple",
        "updated_at": at,
        "custom_attributes": [{"attribute_code": "color", "value": "blue"}],
    }


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[Inbox]:
    opened = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    await opened.put_xref(
        [StoreXref("0042", adobe_source="berlin_mitte"), StoreXref("0043", adobe_source="hamburg")]
    )
    yield opened
    await opened.close()


async def items(inbox: Inbox, store: str) -> dict[str, list[RefItem]]:
    found: dict[str, list[RefItem]] = {}
    for row in await inbox.pending_down(store, limit=1000):
        body = down_body_adapter.validate_json(row.body)
        assert isinstance(body, RefItem)
        found.setdefault(body.sku, []).append(body)
    return found


def feeds_for(shop: FakeAdobeCommerce, inbox: Inbox) -> Feeds:
    return Feeds(config(), inbox, transport_for=lambda _: httpx.MockTransport(shop.handler))


async def test_products_reach_each_store_with_its_own_sources_stock(inbox: Inbox) -> None:
    shop = FakeAdobeCommerce()
    for ident, sku in ((1, "SKU-PEN-BLUE"), (2, "SKU-PEN-RED"), (3, "SKU-APPLES")):
        product(shop, ident, sku, "2026-12-01 09:00:00", "9.99")  # one second, two pages
    shop.source_items[("berlin_mitte", "SKU-PEN-BLUE")] = Decimal(5)
    shop.source_items[("hamburg", "SKU-PEN-BLUE")] = Decimal(0)
    feeds = feeds_for(shop, inbox)
    try:
        assert await feeds.poll_once(now=NOW) == 3 * 2
        assert await feeds.poll_once(now=NOW) == 0
        berlin = (await items(inbox, "0042"))["SKU-PEN-BLUE"][0]
        assert (berlin.commerce_sku, berlin.product_id, berlin.active) == (
            "SKU-PEN-BLUE",
            "1",
            True,
        )
        assert [(str(p.amount), p.currency) for p in berlin.prices] == [("9.99", "EUR")]
        assert berlin.attributes == {"color": "blue", "stock": "5", "stock_status": "in_stock"}
        hamburg = (await items(inbox, "0043"))["SKU-PEN-BLUE"][0]
        assert hamburg.attributes == {"color": "blue", "stock": "0", "stock_status": "out_of_stock"}
        # A price change (the product's updated_at moves): every store, once, the latest.
        shop.products[1]["price"] = Decimal("8.49")
        shop.products[1]["updated_at"] = "2026-12-01 10:00:00"
        shop.products[1]["status"] = 2  # and disabled
        assert await feeds.poll_once(now=NOW) == 2
        latest = (await items(inbox, "0042"))["SKU-PEN-BLUE"][-1]
        assert ([str(p.amount) for p in latest.prices], latest.active) == (["8.49"], False)
    finally:
        await feeds.aclose()


async def test_without_the_catalog_resource_the_feed_fails_and_waits(inbox: Inbox) -> None:
    shop = FakeAdobeCommerce(resources=(SALES, SOURCE_READ))
    product(shop, 1, "SKU-PEN-BLUE", "2026-12-01 09:00:00", "9.99")
    feeds = feeds_for(shop, inbox)
    try:
        assert await feeds.poll_once(now=NOW) == 0
        assert "401" in feeds.runners[0].counts.last_error
        assert await inbox.source_cursor("feed:catalog") is None
    finally:
        await feeds.aclose()
    lenient: Any = FakeAdobeCommerce(resources=(SALES, SOURCE_READ), without=("acl-resources",))
    product(lenient, 1, "SKU-PEN-BLUE", "2026-12-01 09:00:00", "9.99")
    feeds = feeds_for(lenient, inbox)
    try:
        assert await feeds.poll_once(now=NOW) == 2
    finally:
        await feeds.aclose()
    assert CATALOG not in lenient.resources
