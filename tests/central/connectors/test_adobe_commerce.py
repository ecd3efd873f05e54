"""The Adobe Commerce connector against the contract suite (through an in-memory fake of
the documented Magento REST routes) and its own behaviours."""

from __future__ import annotations

import httpx
import pytest

from central.connectors.adobe_commerce import (
    AdobeCommerceConnector,
    AdobeCommerceSettings,
    increment_id,
)

from . import samples
from .contract import Case, ConnectorContract
from .fake_adobe_commerce import TOKEN, FakeAdobeCommerce


def settings(dry_run: bool = False) -> AdobeCommerceSettings:
    return AdobeCommerceSettings(
        name="adobe", base_url="https://shop.test", token=TOKEN, dry_run=dry_run
    )


class TestAdobeCommerceContract(ConnectorContract):
    # Integration tokens do not expire; source items are absolute and unversioned.
    test_an_expired_token_is_refreshed_once = None  # type: ignore[assignment]
    test_inventory_is_set_absolutely_and_survives_a_concurrent_change = None  # type: ignore[assignment]

    @pytest.fixture
    def case(self) -> Case:
        return Case(settings=settings, fake=FakeAdobeCommerce)


async def _deliver(fake: FakeAdobeCommerce, *records: samples.Routed) -> object:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        return await AdobeCommerceConnector(settings(), client).deliver(list(records))


async def test_a_sale_is_stored_as_the_pos_states_it_and_invoiced_offline() -> None:
    fake = FakeAdobeCommerce()
    sale = samples.routed(samples.sale())
    await _deliver(fake, sale)
    (order,) = fake.orders.values()
    assert order["increment_id"] == increment_id(sale.key)
    assert len(order["increment_id"]) <= 32
    assert order["grand_total"] == 29.97
    assert order["tax_amount"] == 4.79
    assert order["total_invoiced"] == 29.97
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
    assert sorted(i["qty"] for i in memo["items"]) == [1.0, 2.0]


async def test_inventory_goes_in_batches_and_a_bad_sku_is_refused_alone() -> None:
    fake = FakeAdobeCommerce()
    good = samples.routed(samples.inventory(quantity=17))
    bad = samples.routed(samples.inventory(sku="0000000000000", quantity=3))
    bad = samples.Routed(**{**bad.__dict__, "skus": {"0000000000000": "NOPE"}})
    result = await _deliver(fake, good, bad)
    assert [o.id for o in result.accepted] == [good.id]  # type: ignore[attr-defined]
    assert "is not exists" in result.rejected[0].reason  # type: ignore[attr-defined]
    assert fake.source_items == {("berlin_mitte", "SKU-PEN-BLUE"): 17}


async def test_magento_placeholders_are_filled_in_reasons() -> None:
    fake = FakeAdobeCommerce()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        wrong = AdobeCommerceSettings(name="adobe", base_url="https://shop.test", token="nope")
        result = await AdobeCommerceConnector(wrong, client).deliver(
            [samples.routed(samples.sale())]
        )
    assert "access Magento_Sales::sales" in result.retry[0].reason
