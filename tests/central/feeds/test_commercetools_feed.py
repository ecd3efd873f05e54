"""The commercetools feed against the third-party `@labdigital/commercetools-mock`
server, into a real SQLite inbox: published product projections read by
`lastModifiedAt`, each variant an item whose prices reach the stores of their channel
only (channels named by key, read from their reference ids), several changes while no
poll ran reaching the store once as the latest state, and a cursor that moves on."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from central.config import CentralConfig
from central.feeds import Feeds
from central.inbox import Inbox, StoreXref, open_inbox
from contract import RefItem, down_body_adapter
from tests.support.ct_shop import Admin
from tests.support.ctmock import commercetools_mock

PROJECT = "acme-feed"


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with commercetools_mock(PROJECT) as url:
        yield url


@pytest.fixture(scope="module")
def admin(mock_url: str) -> Admin:
    admin = Admin(mock_url, PROJECT)
    for key in ("berlin", "hamburg"):
        admin.post("/channels", {"key": key, "roles": ["ProductDistribution"]})
    admin.post("/product-types", {"key": "pen", "name": "Pen", "description": "Pens"})
    return admin


def product(admin: Admin, key: str, *, berlin: int, hamburg: int) -> dict[str, Any]:
    """A published product of two variants; the first priced per channel and at large."""
    channels = {c["key"]: c["id"] for c in admin.get("/channels")["results"]}
    kind = admin.get("/product-types/key=pen")

    def eur(cents: int, channel: str | None = None) -> dict[str, Any]:
        price: dict[str, Any] = {"value": {"currencyCode": "EUR", "centAmount": cents}}
        if channel:
            price["channel"] = {"typeId": "channel", "id": channels[channel]}
        return price

    return admin.post(
        "/products",
        {
            "key": key,
            "name": {"en": f"Pen {key}"},
            "slug": {"en": key},
            "productType": {"typeId": "product-type", "id": kind["id"]},
            "masterVariant": {
                "sku": f"SKU-{key}-BLUE",
                "prices": [eur(berlin, "berlin"), eur(hamburg, "hamburg"), eur(250)],
                "attributes": [],
            },
            "variants": [{"sku": f"SKU-{key}-RED", "prices": [eur(300)]}],
            "publish": True,
        },
    )


def reprice(admin: Admin, key: str, channel: str, cents: int) -> None:
    """Change the price of `channel` on the published product (staged=false)."""
    found = admin.get(f"/products/key={key}")
    channel_id = admin.get(f"/channels/key={channel}")["id"]
    prices = found["masterData"]["current"]["masterVariant"]["prices"]
    price = next(p for p in prices if (p.get("channel") or {}).get("id") == channel_id)
    admin.post(
        f"/products/{found['id']}",
        {
            "version": found["version"],
            "actions": [
                {
                    "action": "changePrice",
                    "priceId": price["id"],
                    "price": {"value": {"currencyCode": "EUR", "centAmount": cents}},
                    "staged": False,
                }
            ],
        },
    )


def config(url: str) -> CentralConfig:
    target = {
        "name": "ct",
        "type": "commercetools",
        "api_url": url,
        "auth_url": url,
        "project_key": PROJECT,
        "client_id": "relay",
        "client_secret": "relay-secret",
        "kinds": ["sale"],
    }
    feed = {"type": "commercetools", "target": "ct", "lag_seconds": 0, "page_size": 2}
    return CentralConfig.model_validate({"targets": [target], "feeds": {"catalog": feed}})


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[Inbox]:
    opened = await open_inbox(f"sqlite:///{tmp_path / 'inbox.db'}")
    await opened.put_xref(
        [
            StoreXref("0042", commercetools_channel="berlin"),
            StoreXref("0043", commercetools_channel="berlin"),
            StoreXref("0044", commercetools_channel="hamburg"),
        ]
    )
    yield opened
    await opened.close()


@pytest.fixture
async def feeds(mock_url: str, inbox: Inbox) -> AsyncIterator[Feeds]:
    feeds = Feeds(config(mock_url), inbox)
    yield feeds
    await feeds.aclose()


def later() -> datetime:
    """A poll's now, after the mock's last write (the feed reads only settled changes)."""
    return datetime.now(UTC) + timedelta(seconds=1)


async def items(inbox: Inbox, store: str, sku: str) -> list[RefItem]:
    found = []
    for row in await inbox.pending_down(store, limit=1000):
        body = down_body_adapter.validate_json(row.body)
        if isinstance(body, RefItem) and body.sku == sku:
            found.append(body)
    return found


def prices(body: RefItem) -> list[tuple[str, str | None]]:
    return [(str(p.amount), p.channel) for p in body.prices]


async def test_prices_reach_the_stores_of_their_channel_only(
    feeds: Feeds, admin: Admin, inbox: Inbox
) -> None:
    product(admin, "p1", berlin=100, hamburg=110)
    product(admin, "p2", berlin=200, hamburg=210)
    product(admin, "p3", berlin=300, hamburg=310)  # three products: two pages of two
    assert await feeds.poll_once(now=later()) == 3 * 6
    (berlin,) = await items(inbox, "0042", "SKU-p1-BLUE")
    assert prices(berlin) == [("1.00", "berlin"), ("2.50", None)]
    assert (berlin.commerce_sku, berlin.name, berlin.source) == ("SKU-p1-BLUE", "Pen p1", "catalog")
    (hamburg,) = await items(inbox, "0044", "SKU-p1-BLUE")
    assert prices(hamburg) == [("1.10", "hamburg"), ("2.50", None)]
    (red,) = await items(inbox, "0044", "SKU-p1-RED")
    assert prices(red) == [("3.00", None)]
    # Read again: nothing new anywhere (the cursor moved past them).
    assert await feeds.poll_once(now=later()) == 0

    # Hamburg's price changes twice before the next poll: one message, the latest price,
    # for Hamburg's store only.
    reprice(admin, "p1", "hamburg", 120)
    reprice(admin, "p1", "hamburg", 130)
    assert await feeds.poll_once(now=later()) == 1
    assert len(await items(inbox, "0042", "SKU-p1-BLUE")) == 1
    assert len(await items(inbox, "0043", "SKU-p1-BLUE")) == 1
    first, latest = await items(inbox, "0044", "SKU-p1-BLUE")
    assert prices(latest) == [("1.30", "hamburg"), ("2.50", None)]
    assert int(latest.version) > int(first.version)
    (row,) = [
        r for r in await inbox.reference_rows("item") if r.entity == "item:catalog:SKU-p1-BLUE"
    ]
    held = RefItem.model_validate_json(row.body)  # central keeps every channel's price
    assert prices(held) == [("1.00", "berlin"), ("1.30", "hamburg"), ("2.50", None)]


async def test_an_unreadable_catalog_is_an_error_and_moves_no_cursor(
    mock_url: str, inbox: Inbox
) -> None:
    # Nothing listens there (the mock binds 127.0.0.1 only): no answer at all.
    feeds = Feeds(config(mock_url.replace("127.0.0.1", "127.0.0.2")), inbox)
    try:
        assert await feeds.poll_once(now=later()) == 0
        assert feeds.runners[0].counts.errors == 1
        assert await inbox.source_cursor("feed:catalog") is None
    finally:
        await feeds.aclose()
