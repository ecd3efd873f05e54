"""The commercetools connector against the contract suite (through an in-memory fake of
the documented API) and its own behaviours: payments per tender, linked returns and
voids, tokens, inventory entries created when missing."""

from __future__ import annotations

import httpx
import pytest

from central.connectors.commercetools import CommercetoolsConnector, CommercetoolsSettings

from . import probes, samples
from .contract import Case, ConnectorContract
from .fake_commercetools import CLIENT_ID, CLIENT_SECRET, PROJECT, FakeCommercetools


def settings(dry_run: bool = False, secret: str = CLIENT_SECRET) -> CommercetoolsSettings:
    return CommercetoolsSettings(
        name="ct",
        api_url="https://api.ct.test",
        auth_url="https://auth.ct.test",
        project_key=PROJECT,
        client_id=CLIENT_ID,
        client_secret=secret,
        dry_run=dry_run,
    )


def case() -> Case:
    """This target's contract case: its settings, its fake and the fake's rule probes."""
    return Case(settings=settings, probes=probes.COMMERCETOOLS, fake=FakeCommercetools)


class TestCommercetoolsContract(ConnectorContract):
    @pytest.fixture
    def case(self) -> Case:
        return case()


async def _deliver(fake: FakeCommercetools, *records: samples.Routed) -> object:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        return await CommercetoolsConnector(settings(), client).deliver(list(records))


async def test_a_split_tender_sale_becomes_one_order_with_two_payments() -> None:
    fake = FakeCommercetools()
    sale = samples.routed(samples.sale())
    await _deliver(fake, sale)
    (order,) = fake.orders.values()
    assert order["orderNumber"] == sale.key
    assert order["store"] == {"typeId": "store", "key": "berlin-mitte"}
    assert order["totalPrice"] == {
        "type": "centPrecision",
        "currencyCode": "EUR",
        "centAmount": 2997,
    }
    first = order["lineItems"][0]
    assert first["variant"] == {"sku": "SKU-PEN-BLUE"}
    assert first["supplyChannel"] == {"typeId": "channel", "key": "berlin-mitte-supply"}
    assert first["taxRate"]["includedInPrice"] is True
    assert len(order["paymentInfo"]["payments"]) == 2
    card, cash = sorted(fake.payments.values(), key=lambda p: p["interfaceId"])
    assert card["paymentMethodInfo"]["method"] == "adyen-pos"
    assert card["transactions"][0]["type"] == "Charge"
    assert card["transactions"][0]["interactionId"] == "A1B2C3"
    assert cash["amountPlanned"]["centAmount"] == 997, "cash net of change"


async def test_a_void_refunds_and_cancels_its_order() -> None:
    fake = FakeCommercetools()
    sale = samples.sale()
    await _deliver(fake, samples.routed(sale))
    void = samples.routed(samples.void(sale), original_ref=sale.key)
    await _deliver(fake, void)
    (order,) = fake.orders.values()
    assert order["orderState"] == "Cancelled"
    refunds = [p for p in fake.payments.values() if p["transactions"][0]["type"] == "Refund"]
    assert [p["amountPlanned"]["centAmount"] for p in refunds] == [2997]


async def test_a_return_without_a_known_sale_is_imported_as_its_own_order() -> None:
    fake = FakeCommercetools()
    blind = samples.routed(samples.refund(samples.sale(), "8001"))
    await _deliver(fake, blind)
    (order,) = fake.orders.values()
    assert order["totalPrice"]["centAmount"] == -999


async def test_a_fractional_quantity_is_rejected_with_its_reason() -> None:
    fake = FakeCommercetools()
    count = samples.inventory()
    weighed = samples.routed(count.model_copy(update={"quantity": count.quantity / 4}))
    result = await _deliver(fake, weighed)
    assert result.rejected[0].reason == "quantity 4.25 is not whole"  # type: ignore[attr-defined]
    assert fake.inventory == {}


async def test_a_wrong_secret_is_retried_and_never_shown() -> None:
    fake = FakeCommercetools()
    wrong = settings(secret="not-it")
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        result = await CommercetoolsConnector(wrong, client).deliver(
            [samples.routed(samples.sale())]
        )
    (outcome,) = result.retry
    assert outcome.status == 401
    assert "not-it" not in outcome.reason
    assert fake.orders == {}
