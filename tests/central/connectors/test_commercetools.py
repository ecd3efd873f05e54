"""The commercetools connector against the contract suite (through an in-memory fake of
the documented API) and its own behaviours: payments per tender, linked returns and
voids, tokens, inventory entries created when missing."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from central.connectors.commercetools._inventory import movement_id
from central.connectors.commercetools.connector import CommercetoolsConnector, CommercetoolsSettings

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
    assert len(fake.payments) == 2, "no payment of its own: refunds go on the sale's payments"
    refunds = [
        t["amount"]["centAmount"]
        for p in fake.payments.values()
        for t in p["transactions"]
        if t["type"] == "Refund"
    ]
    assert refunds == [2997]


async def test_a_return_is_a_refund_transaction_on_the_sales_payment_once() -> None:
    fake = FakeCommercetools()
    sale = samples.sale()
    await _deliver(fake, samples.routed(sale))
    back = samples.refund(sale)
    await _deliver(fake, samples.routed(back, original_ref=sale.key))
    await _deliver(fake, samples.routed(back, attempts=1, original_ref=sale.key))
    card = next(
        p for p in fake.payments.values() if p["paymentMethodInfo"]["method"] == "adyen-pos"
    )
    assert [(t["type"], t["amount"]["centAmount"]) for t in card["transactions"]] == [
        ("Charge", 2000),
        ("Refund", 999),
    ]
    (order,) = fake.orders.values()
    (info,) = order["returnInfo"]
    assert info["items"][0]["quantity"] == 1


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


async def test_every_call_carries_the_records_correlation_id() -> None:
    fake = FakeCommercetools()
    sale = samples.routed(samples.sale())
    await _deliver(fake, sale)
    assert fake.correlation_ids, "calls were made"
    assert set(fake.correlation_ids) == {sale.correlation_id}


async def test_a_weighed_line_goes_as_one_unit_at_its_amount_with_the_measure_kept() -> None:
    fake = FakeCommercetools()
    grocery = samples.routed(samples.grocery())
    await _deliver(fake, grocery)
    (order,) = fake.orders.values()
    apples, pens = order["lineItems"]
    assert apples["quantity"] == 1
    assert apples["price"]["value"]["centAmount"] == 194
    assert apples["custom"] == {
        "type": {"typeId": "type", "key": "tillbridge-pos-line"},
        "fields": {"posQuantity": "0.65", "posUnitPrice": "2.99"},
    }
    assert apples["taxRate"]["amount"] == Decimal("0.07")
    assert apples["taxedPrice"]["totalTax"]["centAmount"] == 13
    assert pens["quantity"] == 2
    assert pens["price"]["value"]["centAmount"] == 999
    assert pens["custom"]["fields"] == {"posDiscount": "2.00"}
    (discount,) = order["customLineItems"]
    assert discount["money"]["centAmount"] == -200
    assert discount["name"] == {"en": "2 off pens"}
    # The POS's 2.87 on the pens, split so the platform's line-by-line totals agree.
    assert pens["taxedPrice"]["totalTax"]["centAmount"] == 319
    assert discount["taxedPrice"]["totalTax"]["centAmount"] == -32
    assert discount["taxRate"] == pens["taxRate"]
    taxed = order["taxedPrice"]
    assert taxed["totalGross"]["centAmount"] == 1992
    assert taxed["totalTax"]["centAmount"] == 300
    assert sorted(p["amount"]["centAmount"] for p in taxed["taxPortions"]) == [13, 287]


async def test_without_a_line_type_a_weighed_line_is_refused_by_name() -> None:
    fake = FakeCommercetools()
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        plain = settings().model_copy(update={"line_item_type": ""})
        result = await CommercetoolsConnector(plain, client).deliver(
            [samples.routed(samples.grocery())]
        )
    assert "line 1: quantity 0.65 needs line_item_type" in result.rejected[0].reason
    assert fake.orders == {}


async def test_tax_excluded_from_prices_leaves_totalprice_net_and_the_gross_in_taxedprice() -> None:
    fake = FakeCommercetools()
    sale = samples.sale()
    lines = [
        line.model_copy(
            update={"taxes": [tax.model_copy(update={"included": False}) for tax in line.taxes]}
        )
        for line in sale.lines
    ]
    taxes = [t.model_copy(update={"included": False}) for t in sale.taxes]
    us = sale.model_copy(update={"lines": lines, "taxes": taxes, "total": Decimal("34.76")})
    await _deliver(fake, samples.routed(us))
    (order,) = fake.orders.values()
    assert order["totalPrice"]["centAmount"] == 2997
    assert order["taxedPrice"]["totalGross"]["centAmount"] == 3476
    assert order["taxedPrice"]["totalNet"]["centAmount"] == 2997
    assert order["lineItems"][0]["taxRate"]["includedInPrice"] is False


async def test_a_store_without_a_country_is_refused_not_taxed_as_germany() -> None:
    fake = FakeCommercetools()
    sale = samples.routed(samples.sale())
    nowhere = samples.Routed(**{**sale.__dict__, "route": {**sale.route, "country": ""}})
    result = await _deliver(fake, nowhere)
    assert "store 0042 has no country" in result.rejected[0].reason  # type: ignore[attr-defined]
    assert fake.orders == {}


async def test_a_sku_with_quotes_is_found_by_input_variable_not_pasted_into_the_predicate() -> None:
    fake = FakeCommercetools()
    count = samples.routed(samples.inventory(quantity=5))
    odd = samples.Routed(**{**count.__dict__, "skus": {count.record.sku: 'PEN "BLUE" 5\\'}})  # type: ignore[attr-defined]
    first = await _deliver(fake, odd)
    assert len(first.accepted) == 1  # type: ignore[attr-defined]
    again = samples.routed(samples.inventory(quantity=7, reference="count-2"))
    again = samples.Routed(**{**again.__dict__, "skus": odd.skus})
    second = await _deliver(fake, again)
    assert len(second.accepted) == 1  # type: ignore[attr-defined]
    (entry,) = fake.inventory.values()
    assert entry["sku"] == 'PEN "BLUE" 5\\'
    assert entry["quantityOnStock"] == 7


async def test_a_location_with_its_own_supply_channel_is_counted_there() -> None:
    fake = FakeCommercetools()
    fake.channels["berlin-back"] = {"id": "ch-back", "key": "berlin-back"}
    back = samples.inventory(quantity=9).model_copy(update={"location": "BACK"})
    routed = samples.routed(back)
    routed = samples.Routed(
        **{**routed.__dict__, "route": {**routed.route, "supply_channel@BACK": "berlin-back"}}
    )
    await _deliver(fake, routed, samples.routed(samples.inventory(quantity=4)))
    levels = {e["supplyChannel"]["id"]: e["quantityOnStock"] for e in fake.inventory.values()}
    assert levels == {"ch-back": 9, "ch-supply": 4}


async def test_the_order_total_commercetools_states_is_kept_for_reconciliation() -> None:
    fake = FakeCommercetools()
    grocery = samples.routed(samples.grocery())
    (accepted,) = (await _deliver(fake, grocery)).accepted  # type: ignore[attr-defined]
    assert accepted.confirmed == Decimal("19.92")
    again = samples.routed(grocery.record, attempts=1)  # type: ignore[arg-type]
    (found,) = (await _deliver(fake, again)).accepted  # type: ignore[attr-defined]
    assert found.confirmed == Decimal("19.92"), "read back from the order found"


async def test_returned_items_are_marked_refunded_once_the_refund_is_on_the_payment() -> None:
    fake = FakeCommercetools()
    sale = samples.sale()
    await _deliver(fake, samples.routed(sale))
    back = samples.refund(sale)
    await _deliver(fake, samples.routed(back, original_ref=sale.key))
    await _deliver(fake, samples.routed(back, attempts=1, original_ref=sale.key))
    (order,) = fake.orders.values()
    (info,) = order["returnInfo"]
    assert [(i["shipmentState"], i["paymentState"]) for i in info["items"]] == [
        ("Returned", "Refunded")
    ]
    assert order["paymentState"] == "Paid", "settled at the till: nothing is due either way"


async def test_the_token_asks_for_the_least_scopes_the_kinds_need() -> None:
    fake = FakeCommercetools()
    await _deliver(fake, samples.routed(samples.sale()))
    p = PROJECT
    assert fake.scopes_asked == [f"manage_orders:{p} manage_payments:{p} manage_products:{p}"]
    sales_only = settings().model_copy(update={"kinds": ["sale"]})
    stock_only = settings().model_copy(update={"kinds": ["inventory"]})
    for narrow, wanted in (
        (sales_only, "manage_orders manage_payments"),
        (stock_only, "manage_products"),
    ):
        other = FakeCommercetools()
        async with httpx.AsyncClient(transport=httpx.MockTransport(other.handler)) as client:
            await CommercetoolsConnector(narrow, client).deliver(
                [samples.routed(samples.inventory()), samples.routed(samples.sale())]
            )
        assert other.scopes_asked == [" ".join(f"{s}:{p}" for s in wanted.split())]


async def test_without_the_products_scope_inventory_is_refused_and_sales_still_go() -> None:
    fake = FakeCommercetools()
    narrow = settings().model_copy(
        update={"scopes": f"manage_orders:{PROJECT} manage_payments:{PROJECT}"}
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        result = await CommercetoolsConnector(narrow, client).deliver(
            [samples.routed(samples.inventory()), samples.routed(samples.sale())]
        )
    (refused,) = result.retry
    assert refused.status == 403
    assert "insufficient_scope" in refused.reason
    assert len(result.accepted) == 1
    assert fake.inventory == {}


async def test_a_cancelled_basket_is_an_order_imported_cancelled_without_payments() -> None:
    fake = FakeCommercetools()
    basket = samples.routed(samples.cancel())
    (accepted,) = (await _deliver(fake, basket)).accepted  # type: ignore[attr-defined]
    (order,) = fake.orders.values()
    assert order["orderState"] == "Cancelled"
    assert "paymentState" not in order
    assert order["totalPrice"]["centAmount"] == 2997
    assert accepted.confirmed == Decimal("29.97")
    assert fake.payments == {}


class Interfering:
    """Changes the entry out of band just before our first update of it."""

    def __init__(self, fake: FakeCommercetools) -> None:
        self.fake = fake
        self.conflicts = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and "/inventory/" in request.url.path and not self.conflicts:
            for entry in self.fake.inventory.values():
                entry["version"] += 1
                entry["quantityOnStock"] += 100
        response = self.fake.handler(request)
        self.conflicts += response.status_code == 409
        return response


async def test_a_movement_meeting_a_concurrent_change_is_read_again_and_applied_once() -> None:
    fake = FakeCommercetools()
    await _deliver(fake, samples.routed(samples.inventory(quantity=17)))
    interfering = Interfering(fake)
    out = samples.routed(samples.movement(-3))
    async with httpx.AsyncClient(transport=httpx.MockTransport(interfering.handler)) as client:
        result = await CommercetoolsConnector(settings(), client).deliver([out])
    assert len(result.accepted) == 1, result
    assert interfering.conflicts == 1
    (entry,) = fake.inventory.values()
    assert entry["quantityOnStock"] == 114
    assert entry["custom"]["fields"]["posMovements"] == [movement_id(out.key)]


async def test_a_movement_of_an_item_without_an_entry_starts_from_nothing() -> None:
    fake = FakeCommercetools()
    received = samples.routed(samples.movement(12, "receipt-1"))
    await _deliver(fake, received)
    await _deliver(fake, samples.routed(received.record, attempts=1))  # type: ignore[arg-type]
    (entry,) = fake.inventory.values()
    assert entry["quantityOnStock"] == 12
    assert entry["custom"]["type"] == {"typeId": "type", "key": "tillbridge-pos-stock"}


async def test_without_an_entry_type_a_movement_is_refused_by_name() -> None:
    fake = FakeCommercetools()
    plain = settings().model_copy(update={"inventory_entry_type": ""})
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        result = await CommercetoolsConnector(plain, client).deliver(
            [samples.routed(samples.movement())]
        )
    assert "a stock movement needs inventory_entry_type" in result.rejected[0].reason
    assert fake.inventory == {}


async def test_a_receipt_taxed_sale_with_a_coupon_item_adds_up_to_the_cent() -> None:
    fake = FakeCommercetools()
    us = samples.routed(samples.us_sale())
    (accepted,) = (await _deliver(fake, us)).accepted  # type: ignore[attr-defined]
    assert fake.order_total(us) == Decimal("26.82"), "lines less coupon and reward, net"
    (order,) = fake.orders.values()
    assert [li["variant"]["sku"] for li in order["lineItems"]] == ["SKU-PEN-BLUE", "SKU-PEN-RED"]
    assert sorted(c["money"]["centAmount"] for c in order["customLineItems"]) == [-200, -115]
    assert order["taxedPrice"]["totalGross"]["centAmount"] == 2884
    assert accepted.confirmed == Decimal("28.84")


async def test_an_answer_without_taxedprice_states_no_gross_for_a_sale_taxed_on_top() -> None:
    fake = FakeCommercetools()

    def forgetful(request: httpx.Request) -> httpx.Response:
        response = fake.handler(request)
        if request.url.path.endswith("/orders/import"):
            body = json.loads(response.content)
            body.pop("taxedPrice", None)  # as the npm mock answers without line taxes
            return httpx.Response(response.status_code, json=body)
        return response

    async with httpx.AsyncClient(transport=httpx.MockTransport(forgetful)) as client:
        connector = CommercetoolsConnector(settings(), client)
        us = await connector.deliver([samples.routed(samples.us_sale())])
        eu = await connector.deliver([samples.routed(samples.sale())])
    assert us.accepted[0].confirmed is None, "totalPrice is the net here, not the gross"
    assert eu.accepted[0].confirmed == Decimal("29.97"), "tax included: totalPrice is gross"


async def test_a_client_without_a_needed_scope_is_told_which_one() -> None:
    p = PROJECT
    fake = FakeCommercetools(client_scopes={f"manage_orders:{p}", f"manage_payments:{p}"})
    result = await _deliver(fake, samples.routed(samples.sale()))
    (refused,) = result.retry  # type: ignore[attr-defined]
    assert f"invalid_scope: Invalid scopes: manage_products:{p}" in refused.reason
    assert "must hold the scopes asked for" in refused.reason
    assert fake.orders == {}


async def test_a_correlation_id_a_header_cannot_carry_goes_with_those_characters_replaced() -> None:
    """A store chooses its correlation ids: one with a line break or a non-ASCII letter
    must neither fail the call (httpx refuses such header values) nor its batch."""
    fake = FakeCommercetools()
    odd = samples.Routed(
        **{**samples.routed(samples.sale("6101")).__dict__, "correlation_id": "café\nday 1"}
    )
    plain = samples.routed(samples.sale("6102"))
    result = await _deliver(fake, odd, plain)
    assert len(result.accepted) == 2  # type: ignore[attr-defined]
    assert set(fake.correlation_ids) == {"caf__day_1", plain.correlation_id}
