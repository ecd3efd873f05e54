"""The Salesforce connector against the contract suite (through an in-memory fake of the
documented REST API) and its own behaviours: customer matching, profile ownership,
300 Multiple Choices, the JWT bearer flow, collections of at most 200."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from central.connectors.salesforce.connector import (
    SalesforceConnector,
    SalesforceSettings,
    call_client,
    soql_quote,
)

from . import probes, samples
from .contract import Case, ConnectorContract
from .fake_salesforce import CLIENT_ID, CLIENT_SECRET, LOGIN, MY_DOMAIN, FakeSalesforce


def settings(dry_run: bool = False, **extra: object) -> SalesforceSettings:
    values: dict[str, object] = {
        "name": "crm",
        "login_url": MY_DOMAIN,
        "jwt_audience": LOGIN,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "account_id": "001000000000001AAA",
        "dry_run": dry_run,
        **extra,
    }
    return SalesforceSettings(**values)  # type: ignore[arg-type]


def case() -> Case:
    """This target's contract case: its settings, its fake and the fake's rule probes."""
    return Case(
        settings=settings,
        probes=probes.SALESFORCE,
        fake=FakeSalesforce,
        kinds={"sale", "return", "void"},
    )


class TestSalesforceContract(ConnectorContract):
    # Inventory stays in commerce; Salesforce takes sales, returns and customers.
    test_inventory_is_set_absolutely_and_survives_a_concurrent_change = None  # type: ignore[assignment]
    test_a_stock_movement_is_applied_once_despite_a_resend_and_a_concurrent_change = None  # type: ignore[assignment]

    @pytest.fixture
    def case(self) -> Case:
        return case()


async def _deliver(fake: FakeSalesforce, *records: samples.Routed, **extra: object) -> object:
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        return await SalesforceConnector(settings(**extra), client).deliver(list(records))


async def test_an_order_and_its_items_are_upserted_with_their_price_book_entries() -> None:
    fake = FakeSalesforce()
    sale = samples.routed(samples.sale())
    await _deliver(fake, sale)
    (order,) = fake.rows["Order"].values()
    assert order["POS_Key__c"] == sale.key
    assert order["Pricebook2Id"] == samples.ROUTE["price_book"]
    assert order["EffectiveDate"] == "2026-11-20"
    items = sorted(fake.rows["OrderItem"].values(), key=lambda r: r["POS_Line_Key__c"])
    assert [i["PricebookEntryId"] for i in items] == ["01u000000000001", "01u000000000002"]
    assert [i["Quantity"] for i in items] == [2, 1]


async def test_a_customer_is_matched_by_loyalty_id_and_not_overwritten() -> None:
    fake = FakeSalesforce()
    fake.rows["Contact"]["003A"] = {"Id": "003A", "Loyalty_Id__c": "L-778899", "LastName": "Kept"}
    await _deliver(fake, samples.routed(samples.sale(customer=True)))
    (order,) = fake.rows["Order"].values()
    assert order["BillToContactId"] == "003A"
    assert fake.rows["Contact"]["003A"]["LastName"] == "Kept", "Salesforce owns the profile"


async def test_when_the_pos_owns_the_profile_the_match_is_updated() -> None:
    fake = FakeSalesforce()
    fake.rows["Contact"]["003A"] = {"Id": "003A", "Loyalty_Id__c": "L-778899", "LastName": "Old"}
    await _deliver(fake, samples.routed(samples.sale(customer=True)), profile_owner="pos")
    assert fake.rows["Contact"]["003A"]["LastName"] == "Beispiel"


async def test_an_unknown_customer_is_created_under_the_first_external_id() -> None:
    fake = FakeSalesforce()
    await _deliver(fake, samples.routed(samples.sale(customer=True)))
    contact = fake.contact(Loyalty_Id__c="L-778899")
    assert contact is not None
    assert contact["Email"] == "jana.example@example.org"


async def test_email_matching_uses_a_quoted_soql_query() -> None:
    fake = FakeSalesforce()
    fake.rows["Contact"]["003B"] = {"Id": "003B", "Email": "jana.example@example.org"}
    await _deliver(
        fake, samples.routed(samples.sale(customer=True)), match_rule=["email", "loyalty_id"]
    )
    (order,) = fake.rows["Order"].values()
    assert order["BillToContactId"] == "003B"
    assert soql_quote("O'Brien\\") == "'O\\'Brien\\\\'"


async def test_an_external_id_matching_several_contacts_is_refused_by_name() -> None:
    fake = FakeSalesforce()
    for row in ("003A", "003B"):
        fake.rows["Contact"][row] = {"Id": row, "Loyalty_Id__c": "L-778899"}
    result = await _deliver(fake, samples.routed(samples.sale(customer=True)))
    (refused,) = result.rejected  # type: ignore[attr-defined]
    assert "matches several Contact records: 003A, 003B" in refused.reason
    assert fake.rows["Order"] == {}


async def test_a_request_limit_is_retried() -> None:
    fake = FakeSalesforce()
    fake.fail_next_write(503, message="REQUEST_LIMIT_EXCEEDED")
    result = await _deliver(fake, samples.routed(samples.sale()))
    assert len(result.retry) == 1  # type: ignore[attr-defined]


async def test_a_sku_without_a_price_book_entry_is_refused() -> None:
    fake = FakeSalesforce()
    del fake.entries["SKU-PEN-RED"]
    result = await _deliver(fake, samples.routed(samples.sale()))
    (refused,) = result.rejected  # type: ignore[attr-defined]
    assert refused.reason.endswith("for SKU SKU-PEN-RED")


async def test_more_than_200_orders_go_in_several_collections() -> None:
    fake = FakeSalesforce()
    sales = [samples.routed(samples.sale(str(n))) for n in range(1, 206)]
    result = await _deliver(fake, *sales)
    assert len(result.accepted) == 205  # type: ignore[attr-defined]
    assert len(fake.rows["Order"]) == 205


async def test_the_jwt_bearer_flow_signs_its_assertion(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "sf.key"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    fake = FakeSalesforce(public_key=key.public_key())
    result = await _deliver(
        fake,
        samples.routed(samples.sale()),
        auth_flow="jwt",
        username="integration@acme.test",
        private_key_file=str(pem),
        client_secret=None,
    )
    assert len(result.accepted) == 1  # type: ignore[attr-defined]
    assert fake.token_requests == 1


async def test_a_customer_record_upserts_its_contact_only() -> None:
    from contract import CustomerRecord

    fake = FakeSalesforce()
    sale = samples.sale(customer=True)
    record = CustomerRecord.model_validate(
        {
            "kind": "customer",
            "key": "customer:0042:C-1",
            "store": sale.store,
            "business_date": sale.business_date,
            "occurred_at": sale.occurred_at,
            "source": sale.source,
            "customer": sale.customer,
        }
    )
    result = await _deliver(fake, samples.routed(record))  # type: ignore[arg-type]
    (accepted,) = result.accepted  # type: ignore[attr-defined]
    assert fake.contact(Loyalty_Id__c="L-778899")["Id"] == accepted.ref  # type: ignore[index]
    assert fake.rows["Order"] == {}


async def test_the_stores_location_goes_into_the_configured_order_field() -> None:
    fake = FakeSalesforce()
    await _deliver(fake, samples.routed(samples.sale()), order_location_field="Store_Location__c")
    (order,) = fake.rows["Order"].values()
    assert order["Store_Location__c"] == samples.ROUTE["location"]


def test_client_credentials_against_the_generic_login_host_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="needs the org's My Domain URL"):
        settings(login_url="https://login.salesforce.com")
    assert settings(login_url="").missing() == ["login_url"]
    jwt = settings(login_url="", auth_flow="jwt", username="u@acme.test", private_key_file="/k.pem")
    assert jwt.token_url == "https://login.salesforce.com/services/oauth2/token"


async def test_a_return_of_a_known_sale_is_a_reduction_order_linked_item_by_item() -> None:
    fake = FakeSalesforce()
    sale = samples.sale()
    posted = await _deliver(fake, samples.routed(sale))
    original = posted.accepted[0].ref  # type: ignore[attr-defined]
    back = samples.routed(samples.refund(sale), original_ref=original)
    result = await _deliver(fake, back)
    assert len(result.accepted) == 1  # type: ignore[attr-defined]
    reduction = next(o for o in fake.rows["Order"].values() if o["POS_Key__c"] == back.key)
    assert reduction["IsReductionOrder"] is True
    assert reduction["OriginalOrderId"] == original
    (item,) = fake.items_of(back.key)
    blue = next(i for i in fake.items_of(sale.key) if i["POS_Line_Key__c"].endswith("#1"))
    assert item["OriginalOrderItemId"] == blue["Id"]
    assert item["Quantity"] == -1
    again = await _deliver(fake, samples.routed(back.record, attempts=1, original_ref=original))  # type: ignore[arg-type]
    assert len(again.accepted) == 1, "create-only fields are not sent again"  # type: ignore[attr-defined]
    assert fake.stored(back) == 1


async def test_a_return_without_its_sale_needs_negative_quantities_allowed() -> None:
    blind = samples.routed(samples.refund(samples.sale(), "8001"))
    refused = await _deliver(FakeSalesforce(), blind)
    assert "negative quantity needs the original sale" in refused.rejected[0].reason  # type: ignore[attr-defined]
    fake = FakeSalesforce(negative_quantities=True)
    accepted = await _deliver(fake, blind, negative_quantities=True)
    assert len(accepted.accepted) == 1  # type: ignore[attr-defined]
    assert [i["Quantity"] for i in fake.items_of(blind.key)] == [-1]


async def test_a_void_sets_the_original_orders_status() -> None:
    fake = FakeSalesforce()
    sale = samples.sale()
    posted = await _deliver(fake, samples.routed(sale))
    original = posted.accepted[0].ref  # type: ignore[attr-defined]
    await _deliver(fake, samples.routed(samples.void(sale), original_ref=original))
    assert fake.rows["Order"][original]["Status"] == "Cancelled"
    assert len(fake.rows["Order"]) == 1


async def test_weighed_goods_keep_their_decimal_quantity_and_unit_price() -> None:
    fake = FakeSalesforce()
    grocery = samples.routed(samples.grocery())
    await _deliver(fake, grocery)
    apples, pens = sorted(fake.items_of(grocery.key), key=lambda i: i["POS_Line_Key__c"])
    assert (apples["Quantity"], apples["UnitPrice"]) == (Decimal("0.65"), Decimal("2.99"))
    assert (pens["Quantity"], pens["UnitPrice"]) == (2, Decimal("8.99"))
    assert pens["Description"] == "PROMO2 -2.00"


async def test_each_tender_is_a_payment_row_upserted_by_its_external_id() -> None:
    fake = FakeSalesforce()
    sale = samples.routed(samples.sale())
    extra = {
        "payment_object": "POS_Payment__c",
        "payment_static": {"Status__c": "Processed"},
    }
    await _deliver(fake, sale, **extra)
    await _deliver(fake, samples.routed(sale.record, attempts=1), **extra)  # type: ignore[arg-type]
    rows = sorted(fake.rows["POS_Payment__c"].values(), key=lambda r: r["POS_Payment_Key__c"])
    assert [r["POS_Payment_Key__c"] for r in rows] == [f"{sale.key}#t0", f"{sale.key}#t1"]
    assert [r["Amount__c"] for r in rows] == [Decimal("20.00"), Decimal("9.97")]
    assert [r["Method__c"] for r in rows] == ["adyen-pos", "cash"]
    assert all(r["Status__c"] == "Processed" for r in rows)
    assert all(r["Order__c"] == {"POS_Key__c": sale.key} for r in rows)


async def test_a_cancelled_basket_is_an_order_in_the_cancel_status_with_no_payment() -> None:
    fake = FakeSalesforce()
    basket = samples.cancel()
    # A tender rung up before the basket was abandoned is no payment.
    tendered = basket.model_copy(update={"tenders": samples.sale().tenders})
    extra = {"payment_object": "POS_Payment__c"}
    result = await _deliver(fake, samples.routed(tendered), **extra)
    assert len(result.accepted) == 1, result  # type: ignore[attr-defined]
    (order,) = fake.rows["Order"].values()
    assert order["Status"] == "Cancelled"
    assert fake.rows.get("POS_Payment__c", {}) == {}
    assert len(fake.items_of(basket.key)) == 2


async def test_near_the_daily_limit_delivery_holds_and_leaves_the_rest_to_others() -> None:
    fake = FakeSalesforce(daily_limit=20)
    fake.used = 17
    first = await _deliver(fake, samples.routed(samples.sale("9001")))
    (held,) = first.retry  # type: ignore[attr-defined]
    assert held.hold is True
    assert held.retry_after == pytest.approx(900, abs=5)
    assert "nearly used up" in held.reason
    assert fake.used < fake.daily_limit, "the last requests are left to others"


async def test_when_the_limit_is_reached_every_record_is_held_not_failed() -> None:
    fake = FakeSalesforce(daily_limit=0)
    result = await _deliver(fake, *(samples.routed(samples.sale(str(n))) for n in (1, 2, 3)))
    assert len(result.retry) == 3  # type: ignore[attr-defined]
    assert all(o.hold for o in result.retry)  # type: ignore[attr-defined]
    assert "REQUEST_LIMIT_EXCEEDED" in result.retry[0].reason  # type: ignore[attr-defined]


async def test_a_dry_run_void_is_accepted_with_its_request_kept() -> None:
    from central.connectors import DryRunTransport
    from central.connectors.salesforce.connector import dry_run_response

    transport = DryRunTransport(dry_run_response)
    async with httpx.AsyncClient(transport=transport) as client:
        connector = SalesforceConnector(settings(dry_run=True), client)
        void = samples.routed(samples.void(samples.sale()), original_ref="8015g00000AbCdE")
        result = await connector.deliver([void])
    (accepted,) = result.accepted
    (patch,) = [e for e in accepted.exchanges if e.method == "PATCH"]
    assert patch.url.endswith("/sobjects/Order/8015g00000AbCdE")
    assert patch.request == '{"Status":"Cancelled"}'


async def test_a_login_host_refusing_client_credentials_is_named_in_the_reason() -> None:
    fake = FakeSalesforce()
    generic = settings().model_copy(update={"login_url": "https://login.salesforce.test"})
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake.handler)) as client:
        result = await SalesforceConnector(generic, client).deliver(
            [samples.routed(samples.sale())]
        )
    (refused,) = result.rejected
    assert refused.reason == (
        "token refused: 400 unsupported_grant_type: request not supported on this domain"
    )


async def test_receipt_discounts_and_a_coupon_item_come_to_the_pos_net_to_the_cent() -> None:
    fake = FakeSalesforce()
    fake.entries["SKU-COUPON"] = "01u000000000009"
    us = samples.routed(samples.us_sale())
    result = await _deliver(fake, us)
    assert len(result.accepted) == 1, result  # type: ignore[attr-defined]
    # 28.84 less the 2.02 tax added on the receipt: an Order's total is its items'.
    assert fake.order_total(us) == Decimal("26.82")
    items = sorted(fake.items_of(us.key), key=lambda i: i["POS_Line_Key__c"])
    assert [i["POS_Line_Key__c"].rsplit("#", 1)[1] for i in items] == ["1", "2", "3"]
    coupon = items[2]
    assert (coupon["Quantity"], coupon["UnitPrice"]) == (1, Decimal("-2.00"))
    assert "1465 (receipt)" in items[0]["Description"]


async def test_a_token_without_the_api_scope_is_refused_by_name_before_any_call() -> None:
    fake = FakeSalesforce(scopes="id refresh_token")
    result = await _deliver(fake, samples.routed(samples.sale()))
    (held,) = result.retry  # type: ignore[attr-defined]
    assert "not api ('Manage user data via APIs')" in held.reason
    assert fake.used == 0, "no REST call was made with a token that cannot make one"


async def test_a_coupon_the_pos_writes_at_a_negative_unit_price_keeps_its_sign() -> None:
    fake = FakeSalesforce()
    fake.entries["SKU-COUPON"] = "01u000000000009"
    us = samples.us_sale()
    lines = [
        line.model_copy(update={"unit_price": -line.unit_price}) if line.amount < 0 else line
        for line in us.lines
    ]
    routed = samples.routed(us.model_copy(update={"lines": lines}))
    await _deliver(fake, routed)
    assert fake.order_total(routed) == Decimal("26.82")


async def test_every_call_names_the_records_it_writes_in_the_call_options_header() -> None:
    """Sforce-Call-Options `client=tillbridge/<correlation id>` on every API call, and a
    collection only ever holds the records of one correlation id."""
    fake = FakeSalesforce()
    one = samples.routed(samples.sale("9101", customer=True))
    two = samples.Routed(
        **{**samples.routed(samples.sale("9102")).__dict__, "correlation_id": "f2"}
    )
    three = samples.Routed(
        **{**samples.routed(samples.sale("9103")).__dict__, "correlation_id": "f2"}
    )
    seen: list[tuple[str, str, list[str]]] = []

    def watching(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/services/data/"):
            body = json.loads(request.content) if request.content else {}
            keys = [r.get("POS_Key__c") for r in body.get("records", []) if "POS_Key__c" in r]
            seen.append((request.url.path, request.headers.get("sforce-call-options", ""), keys))
        return fake.handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(watching)) as client:
        result = await SalesforceConnector(settings(), client).deliver([one, two, three])
    assert len(result.accepted) == 3
    assert seen, "calls were made"
    assert all(header for _, header, _ in seen), "every API call carries the header"
    assert {header for _, header, _ in seen} == {
        call_client(one.correlation_id),
        "client=tillbridge/f2",
    }
    assert call_client(one.correlation_id) == "client=tillbridge/corr-" + one.key.replace(":", "_")
    upserts = [(header, keys) for path, header, keys in seen if path.endswith("/Order/POS_Key__c")]
    assert sorted(upserts) == [
        (call_client(one.correlation_id), [one.key]),
        ("client=tillbridge/f2", [two.key, three.key]),
    ]
    assert fake.call_clients
    assert None not in fake.call_clients


def test_a_store_supplied_id_cannot_add_a_field_to_the_call_options() -> None:
    assert call_client("abc;defaultNamespace=evil") == "client=tillbridge/abc_defaultNamespace_evil"


async def test_the_total_salesforce_sums_is_read_back_where_configured() -> None:
    fake = FakeSalesforce()
    grocery = samples.routed(samples.grocery())
    sale = samples.routed(samples.sale("9201"))
    result = await _deliver(fake, grocery, sale, order_total_field="TotalAmount")
    confirmed = {o.id: o.confirmed for o in result.accepted}  # type: ignore[attr-defined]
    assert confirmed == {
        grocery.id: grocery.record.total,  # type: ignore[union-attr]
        sale.id: sale.record.total,  # type: ignore[union-attr]
    }
    unread = await _deliver(FakeSalesforce(), grocery)
    assert [o.confirmed for o in unread.accepted] == [None]  # type: ignore[attr-defined]


async def test_a_total_that_cannot_be_read_leaves_the_order_posted() -> None:
    fake = FakeSalesforce()
    sale = samples.routed(samples.sale("9301"))

    def no_reads_of_totals(request: httpx.Request) -> httpx.Response:
        if "TotalAmount" in request.url.params.get("q", ""):
            return httpx.Response(400, json=[{"errorCode": "INVALID_FIELD", "message": "No"}])
        return fake.handler(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(no_reads_of_totals)) as client:
        connector = SalesforceConnector(settings(order_total_field="TotalAmount"), client)
        result = await connector.deliver([sale])
    (posted,) = result.accepted
    assert posted.confirmed is None


async def test_an_order_of_a_store_whose_prices_exclude_tax_totals_without_the_tax() -> None:
    """Salesforce's TotalAmount sums the items; the tax outside their prices is on no
    item, so reconciliation shows it as the difference it is (README: Targets)."""
    sale = samples.sale("9401")
    outside = [
        line.model_copy(
            update={"taxes": [t.model_copy(update={"included": False}) for t in line.taxes]}
        )
        for line in sale.lines
    ]
    taxes = [t.model_copy(update={"included": False}) for t in sale.taxes]
    excluded = sale.model_copy(
        update={"lines": outside, "taxes": taxes, "total": sale.total + Decimal("4.79")}
    )
    result = await _deliver(
        FakeSalesforce(), samples.routed(excluded), order_total_field="TotalAmount"
    )
    (posted,) = result.accepted  # type: ignore[attr-defined]
    assert excluded.total == Decimal("34.76")
    assert posted.confirmed == Decimal("29.97"), "the 4.79 of tax is on no item"


async def test_tax_on_top_of_the_prices_goes_into_the_tax_field_and_the_total_adds_up() -> None:
    """With the org's POS_Tax__c and a formula POS_Total__c = TotalAmount + POS_Tax__c,
    what Salesforce states is the POS's total to the cent, tax outside the prices too."""
    sale = samples.sale("9501")
    outside = [
        line.model_copy(
            update={"taxes": [t.model_copy(update={"included": False}) for t in line.taxes]}
        )
        for line in sale.lines
    ]
    taxes = [t.model_copy(update={"included": False}) for t in sale.taxes]
    excluded = samples.routed(
        sale.model_copy(update={"lines": outside, "taxes": taxes, "total": Decimal("34.76")})
    )
    included = samples.routed(samples.sale("9502"))
    fake = FakeSalesforce()
    fake.formulas["POS_Total__c"] = ("TotalAmount", "POS_Tax__c")
    result = await _deliver(
        fake,
        excluded,
        included,
        order_tax_field="POS_Tax__c",
        order_total_field="POS_Total__c",
    )
    confirmed = {o.id: o.confirmed for o in result.accepted}  # type: ignore[attr-defined]
    assert confirmed == {excluded.id: Decimal("34.76"), included.id: Decimal("29.97")}
    taxed = {o["POS_Key__c"]: o["POS_Tax__c"] for o in fake.rows["Order"].values()}
    assert taxed == {excluded.key: Decimal("4.79"), included.key: Decimal(0)}
