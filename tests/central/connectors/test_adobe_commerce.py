"""The Adobe Commerce connector against the contract suite (through an in-memory fake of
the documented Magento REST routes) and its own behaviours."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from central.connectors.adobe_commerce.connector import (
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
    # Movements are refused (a source item has no place to note one as applied); see
    # test_a_stock_movement_is_refused_with_its_reason.
    test_a_stock_movement_is_applied_once_despite_a_resend_and_a_concurrent_change = None  # type: ignore[assignment]

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
    assert sorted(i["qty"] for i in memo["items"]) == [0, 0], "the amount, not the items"
    assert memo["grand_total"] == Decimal("29.97")
    assert "SKU-PEN-BLUE x 2, SKU-PEN-RED x 1" in memo["comments"][0]["comment"]
    assert fake.reservations == {}


async def test_with_refund_items_the_memo_lists_them_at_the_pos_amount() -> None:
    fake = FakeAdobeCommerce()
    sale = samples.sale()
    await _deliver(fake, samples.routed(sale), refund_items=True)
    number = increment_id(sale.key)
    back = samples.routed(samples.refund(sale), original_ref=number)
    await _deliver(fake, back, refund_items=True)
    (memo,) = fake.creditmemos.values()
    assert [i["qty"] for i in memo["items"]] == [1]
    assert memo["grand_total"] == Decimal("9.99")


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


class PosStore:
    """The POS's own view of one SKU: its on-hand, and the levels it exports."""

    def __init__(self, on_hand: int) -> None:
        self.on_hand = Decimal(on_hand)
        self.counts = 0

    def level(self) -> samples.Routed:
        self.counts += 1
        count = samples.inventory(quantity=0, reference=f"level-{self.counts}")
        return samples.routed(count.model_copy(update={"quantity": self.on_hand}))


async def _replay(
    fake: FakeAdobeCommerce, events: list[tuple[str, int]], **extra: object
) -> list[tuple[Decimal, Decimal]]:
    """Each POS event, then the level the POS exports after it; salable beside on-hand."""
    pos = PosStore(40)
    seen = []
    sold: list[samples.Transaction] = []
    await _deliver(fake, pos.level(), **extra)
    for n, (event, quantity) in enumerate(events):
        if event == "sale":
            sale = samples.sale(f"7{n:03d}")
            line = sale.lines[0].model_copy(
                update={
                    "quantity": Decimal(quantity),
                    "amount": Decimal("9.99") * quantity,
                    "taxes": [],
                }
            )
            sale = sale.model_copy(
                update={"lines": [line], "total": line.amount, "taxes": [], "tenders": []}
            )
            await _deliver(fake, samples.routed(sale), **extra)
            sold.append(sale)
            pos.on_hand -= quantity
        elif event == "return" and sold:
            sale = sold.pop(0)
            back = samples.refund(sale, f"8{n:03d}")
            await _deliver(fake, samples.routed(back, original_ref=increment_id(sale.key)), **extra)
            pos.on_hand += 1
        elif event == "count":
            pos.on_hand = Decimal(quantity)
        await _deliver(fake, pos.level(), **extra)
        seen.append((fake.salable("SKU-PEN-BLUE"), pos.on_hand))
    return seen


EVENTS = st.lists(
    st.tuples(st.sampled_from(["sale", "return", "count"]), st.integers(min_value=1, max_value=3)),
    min_size=1,
    max_size=12,
)


@examples(max_examples=25, deadline=None, derandomize=True)
@given(events=EVENTS)
async def test_the_salable_quantity_stays_the_pos_on_hand(events: list[tuple[str, int]]) -> None:
    for salable, on_hand in await _replay(FakeAdobeCommerce(), events):
        assert salable == on_hand


async def test_memos_with_item_quantities_would_drift_the_salable_quantity_upward() -> None:
    events = [("sale", 2), ("return", 1), ("sale", 1), ("return", 1)]
    steps = await _replay(FakeAdobeCommerce(), events, refund_items=True)
    salable, on_hand = steps[-1]
    assert salable == on_hand + 2, "two returned units counted twice: by MSI and by the POS"


async def test_a_location_with_its_own_source_is_set_there() -> None:
    fake = FakeAdobeCommerce()
    back = samples.inventory(quantity=9).model_copy(update={"location": "BACK"})
    routed = samples.routed(back)
    routed = samples.Routed(
        **{**routed.__dict__, "route": {**routed.route, "source_code@BACK": "berlin_back"}}
    )
    front = samples.routed(samples.inventory(quantity=4, reference="count-2"))
    result = await _deliver(fake, routed, front)
    assert sorted(o.ref for o in result.accepted) == [
        "berlin_back/SKU-PEN-BLUE",
        "berlin_mitte/SKU-PEN-BLUE",
    ]
    assert fake.source_items == {
        ("berlin_back", "SKU-PEN-BLUE"): 9,
        ("berlin_mitte", "SKU-PEN-BLUE"): 4,
    }


async def test_taxes_stated_only_for_the_transaction_still_total_as_the_pos() -> None:
    fake = FakeAdobeCommerce()
    sale = samples.sale()
    bare = [line.model_copy(update={"taxes": []}) for line in sale.lines]
    summary_only = samples.routed(sale.model_copy(update={"lines": bare}))
    await _deliver(fake, summary_only)
    (order,) = fake.orders.values()
    assert order["tax_amount"] == Decimal("4.79")
    assert order["subtotal"] == Decimal("25.18")
    assert order["subtotal"] + order["tax_amount"] - (-order["discount_amount"]) == Decimal("29.97")


async def test_the_grand_total_magento_states_is_kept_for_reconciliation() -> None:
    fake = FakeAdobeCommerce()
    (accepted,) = (await _deliver(fake, samples.routed(samples.grocery()))).accepted
    assert accepted.confirmed == Decimal("19.92")
    blind = samples.routed(samples.refund(samples.sale(), "8001"))
    (returned,) = (await _deliver(fake, blind)).accepted
    assert returned.confirmed == Decimal("-9.99"), "signed as the POS signs it"


async def test_a_stock_movement_is_refused_with_its_reason() -> None:
    fake = FakeAdobeCommerce()
    result = await _deliver(fake, samples.routed(samples.movement(-3)))
    (refused,) = result.rejected
    assert "take absolute quantities; this is a delta" in refused.reason
    assert fake.source_items == {}


async def test_a_cancelled_basket_is_saved_canceled_without_a_reservation_or_invoice() -> None:
    fake = FakeAdobeCommerce()
    fake.source_items[("berlin_mitte", "SKU-PEN-BLUE")] = Decimal(10)
    basket = samples.routed(samples.cancel())
    result = await _deliver(fake, basket)
    assert len(result.accepted) == 1, result
    (order,) = fake.orders.values()
    assert (order["state"], order["status"]) == ("canceled", "canceled")
    assert order["total_invoiced"] == 0
    assert fake.salable("SKU-PEN-BLUE") == Decimal(10), "nothing sold, nothing reserved"


async def test_receipt_tax_and_discounts_are_spread_over_the_items_to_the_cent() -> None:
    fake = FakeAdobeCommerce()
    us = samples.routed(samples.us_sale())
    await _deliver(fake, us)
    assert fake.order_total(us) == Decimal("28.84"), "the items add up to the grand total"
    (order,) = fake.orders.values()
    assert [i["sku"] for i in order["items"]] == ["SKU-PEN-BLUE", "SKU-PEN-RED"]
    assert sum(i["tax_amount"] for i in order["items"]) == order["tax_amount"] == Decimal("2.02")
    assert sum(i["discount_amount"] for i in order["items"]) == Decimal("3.15")
    assert order["discount_amount"] == Decimal("-3.15"), "the reward and the coupon"
    assert order["total_invoiced"] == Decimal("28.84")


async def test_an_integration_without_the_source_items_resource_is_told_which_one() -> None:
    fake = FakeAdobeCommerce(resources={"Magento_Sales::sales"})
    result = await _deliver(
        fake, samples.routed(samples.inventory()), samples.routed(samples.sale())
    )
    (refused,) = result.retry
    assert "Magento_InventoryApi::stock_source_item_assign" in refused.reason
    assert "grant that resource to the integration" in refused.reason
    assert len(result.accepted) == 1, "sales need only Magento_Sales::sales"


async def test_saving_then_cancelling_would_lift_the_salable_quantity_by_the_basket() -> None:
    """Why a cancelled basket is saved as canceled: Magento's cancel endpoint compensates
    a reservation that an order saved through the repository never placed."""
    fake = FakeAdobeCommerce()
    fake.source_items[("berlin_mitte", "SKU-PEN-BLUE")] = Decimal(10)
    await _deliver(fake, samples.routed(samples.cancel("4301")))
    assert fake.salable("SKU-PEN-BLUE") == Decimal(10)
    (order,) = fake.orders.values()
    order["state"] = order["status"] = "pending"  # saved open instead, then cancelled
    fake.call("POST", f"/orders/{order['entity_id']}/cancel", {})
    assert fake.salable("SKU-PEN-BLUE") == Decimal(12), "two pens that never left, counted"
