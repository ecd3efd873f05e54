"""The Adobe Commerce connector against the contract suite (through an in-memory fake of
the documented Magento REST routes) and its own behaviours."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest

from central.connectors.adobe_commerce import (
    AdobeCommerceConnector,
    AdobeCommerceSettings,
    increment_id,
)

from . import probes, samples
from .contract import Case, ConnectorContract
from .fake_adobe_commerce import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    CONSUMER_KEY,
    CONSUMER_SECRET,
    TOKEN,
    TOKEN_SECRET,
    FakeAdobeCommerce,
)


def settings(dry_run: bool = False, **extra: object) -> AdobeCommerceSettings:
    values: dict[str, object] = {
        "name": "adobe",
        "base_url": "https://shop.test",
        "token": TOKEN,
        "consumer_key": CONSUMER_KEY,
        "consumer_secret": CONSUMER_SECRET,
        "token_secret": TOKEN_SECRET,
        "dry_run": dry_run,
        **extra,
    }
    return AdobeCommerceSettings(**values)  # type: ignore[arg-type]


def case() -> Case:
    """This target's contract case: its settings, its fake and the fake's rule probes."""
    return Case(settings=settings, probes=probes.ADOBE_COMMERCE, fake=FakeAdobeCommerce)


class TestAdobeCommerceContract(ConnectorContract):
    # Integration tokens do not expire; source items are absolute and unversioned.
    test_an_expired_token_is_refreshed_once = None  # type: ignore[assignment]
    test_inventory_is_set_absolutely_and_survives_a_concurrent_change = None  # type: ignore[assignment]

    @pytest.fixture
    def case(self) -> Case:
        return case()


async def _deliver(fake: FakeAdobeCommerce, *records: samples.Routed, **extra: object) -> Any:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        return await AdobeCommerceConnector(settings(**extra), client).deliver(list(records))


async def test_a_sale_is_stored_as_the_pos_states_it_and_invoiced_offline() -> None:
    fake = FakeAdobeCommerce()
    sale = samples.routed(samples.sale())
    await _deliver(fake, sale)
    (order,) = fake.orders.values()
    assert order["increment_id"] == increment_id(sale.key)
    assert len(order["increment_id"]) <= 32
    assert order["grand_total"] == Decimal("29.97")
    assert order["base_grand_total"] == Decimal("29.97")
    assert order["tax_amount"] == Decimal("4.79")
    assert order["base_tax_amount"] == Decimal("4.79")
    assert order["subtotal"] + order["tax_amount"] == order["grand_total"]
    assert order["total_invoiced"] == Decimal("29.97")
    assert [i["sku"] for i in order["items"]] == ["SKU-PEN-BLUE", "SKU-PEN-RED"]
    info = order["payment"]["additional_information"]
    assert order["payment"]["method"] == "adyen-pos"
    assert any("cash 10.00" in line for line in info), "both tenders are kept"


async def test_a_void_refunds_every_item_in_one_credit_memo() -> None:
    fake = FakeAdobeCommerce()
    sale = samples.sale()
    await _deliver(fake, samples.routed(sale))
    number = increment_id(sale.key)
    await _deliver(fake, samples.routed(samples.void(sale), original_ref=number))
    (memo,) = fake.creditmemos.values()
    assert sorted(i["qty"] for i in memo["items"]) == [1, 2]
    assert memo["grand_total"] == Decimal("29.97")


async def test_inventory_goes_in_batches_and_a_bad_sku_is_refused_alone() -> None:
    fake = FakeAdobeCommerce()
    good = samples.routed(samples.inventory(quantity=17))
    bad = samples.routed(samples.inventory(sku="0000000000000", quantity=3))
    bad = samples.Routed(**{**bad.__dict__, "skus": {"0000000000000": "NOPE"}})
    result = await _deliver(fake, good, bad)
    assert [o.id for o in result.accepted] == [good.id]  # type: ignore[attr-defined]
    assert "is not exists" in result.rejected[0].reason  # type: ignore[attr-defined]
    assert fake.source_items == {("berlin_mitte", "SKU-PEN-BLUE"): 17}


async def test_a_full_day_of_stock_goes_in_requests_of_at_most_20() -> None:
    fake = FakeAdobeCommerce()
    fake.known_skus |= {f"SKU-{n}" for n in range(45)}
    counts = [samples.inventory(sku=f"POS-{n}", quantity=n) for n in range(45)]
    records = [
        samples.Routed(**{**samples.routed(c).__dict__, "skus": {c.sku: f"SKU-{n}"}})
        for n, c in enumerate(counts)
    ]
    requests: list[int] = []

    def counting(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/source-items"):
            requests.append(len(json.loads(request.content)["sourceItems"]))
        return fake.handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(counting)) as client:
        result = await AdobeCommerceConnector(settings(), client).deliver(records)
    assert len(result.accepted) == 45
    assert requests == [20, 20, 5], "no batch refused and split to single items"


async def test_magento_placeholders_are_filled_in_reasons() -> None:
    fake = FakeAdobeCommerce()
    result = await _deliver(fake, samples.routed(samples.sale()), token="nope")
    assert "access Magento_Sales::sales" in result.retry[0].reason


async def test_a_bearer_token_works_only_where_the_shop_allows_it() -> None:
    sale = samples.sale("7101")
    refused = await _deliver(FakeAdobeCommerce(), samples.routed(sale), integration_auth="bearer")
    assert refused.retry[0].status == 401
    allowed = FakeAdobeCommerce(bearer_allowed=True)
    result = await _deliver(allowed, samples.routed(sale), integration_auth="bearer")
    assert len(result.accepted) == 1
    assert allowed.stored(samples.routed(sale)) == 1


async def test_an_admin_token_under_two_factor_authentication_is_a_clear_error() -> None:
    admin: dict[str, object] = {
        "token": None,
        "username": ADMIN_USER,
        "password": ADMIN_PASSWORD,
    }
    result = await _deliver(FakeAdobeCommerce(), samples.routed(samples.sale()), **admin)
    (outcome,) = result.retry
    assert "two-factor authentication is on" in outcome.reason
    assert "integration" in outcome.reason
    without_2fa = FakeAdobeCommerce(two_factor=False)
    result = await _deliver(without_2fa, samples.routed(samples.sale()), **admin)
    assert len(result.accepted) == 1
    assert without_2fa.token_requests == 1


async def test_oauth_credentials_are_required_unless_bearer_is_configured() -> None:
    assert settings(consumer_secret=None).missing() == ["consumer_secret_file"]
    assert settings(consumer_secret=None, integration_auth="bearer").missing() == []


async def test_a_store_without_a_country_is_refused_not_sent_as_germany() -> None:
    fake = FakeAdobeCommerce()
    sale = samples.routed(samples.sale())
    nowhere = samples.Routed(**{**sale.__dict__, "route": {**sale.route, "country": ""}})
    result = await _deliver(fake, nowhere)
    (refused,) = result.rejected
    assert "has no country" in refused.reason
    assert fake.orders == {}
