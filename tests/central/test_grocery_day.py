"""A real grocery day through the relay to every target, then reconciled.

The day is the NCR ACS POSLog export in `tests/agent/parsers/realworld/ncr_acs_grocery_day`
(42 sales, 32 of them with weighed items, loyalty discounts on the transaction, US sales
tax excluded from prices), plus a return of one of its items and a void of another of
its sales, both written here from the day's own sales. It goes through a real inbox
(SQLite and PostgreSQL), routing and delivery to the three biting fakes and to the
third-party commercetools mock, with the store's end-of-day totals computed from the
same transactions, as the agent computes them. Expected figures are the day's own.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.parsers import ParseContext, parse_bytes
from central.config import CentralConfig
from central.connectors.commercetools.connector import CommercetoolsSettings
from central.delivery import Delivery
from central.inbox import Inbox, IncomingRecord, RecordState, link_key
from central.recon import reconcile_day
from central.routing import RoutingSettings, StoreRoute
from contract import EndOfDay, Transaction, day_totals, make_key
from tests.support.ctmock import commercetools_mock

from .connectors import samples, test_adobe_commerce, test_commercetools, test_salesforce
from .connectors.fake_adobe_commerce import FakeAdobeCommerce
from .connectors.fake_commercetools import FakeCommercetools
from .connectors.fake_salesforce import FakeSalesforce

DAY_FILE = Path(__file__).parents[1] / "agent/parsers/realworld/ncr_acs_grocery_day/input.xml"
MOCK_PROJECT = "grocery-day"
KINDS = ["sale", "return", "void"]


def the_day() -> list[Transaction]:
    items = parse_bytes(
        DAY_FILE.read_bytes(), "poslog", context=ParseContext(file_name="input.xml")
    )
    return [i for i in items if isinstance(i, Transaction)]


def a_return_of(sale: Transaction) -> Transaction:
    """One unit of the sale's first whole-quantity line back, in the sale's tender."""
    line = next(x for x in sale.lines if not x.voided and x.quantity == 1 and x.sku)
    body = sale.model_dump(mode="python")
    body.update(
        kind="return",
        key=make_key("return", sale.store, sale.register, sale.business_date, "R-1"),
        transaction_id="R-1",
        total=-line.amount,
        lines=[
            {
                **line.model_dump(mode="python"),
                "number": "1",
                "quantity": Decimal(-1),
                "amount": -line.amount,
                "link": {
                    "transaction_id": sale.transaction_id,
                    "line": line.number,
                    "key": sale.key,
                },
            }
        ],
        tenders=[{"type": sale.tenders[0].type, "method": "refund", "amount": -line.amount}],
        taxes=[],
        discounts=[],
        links=[{"transaction_id": sale.transaction_id, "key": sale.key}],
    )
    return Transaction.model_validate(body)


def a_void_of(sale: Transaction) -> Transaction:
    return Transaction.model_validate(
        {
            "kind": "void",
            "key": make_key("void", sale.store, sale.register, sale.business_date, "V-1"),
            "store": sale.store,
            "register": sale.register,
            "business_date": sale.business_date,
            "occurred_at": sale.occurred_at,
            "source": sale.source.model_dump(),
            "transaction_id": "V-1",
            "currency": sale.currency,
            "total": -sale.total,
            "links": [
                {"transaction_id": sale.transaction_id, "key": sale.key, "reason": "post-void"}
            ],
        }
    )


async def ref_of(inbox: Inbox, key: str, target: str) -> str:
    """What `target` answered for the record with `key`."""
    record = await inbox.record_by_key(key)
    assert record is not None
    (ref,) = [d["ref"] for d in await inbox.deliveries_of(record.id) if d["target"] == target]
    return str(ref)


def closing(day: list[Transaction]) -> EndOfDay:
    first = day[0]
    (tables,) = day_totals(day).values()
    return EndOfDay.model_validate(
        {
            "kind": "end_of_day",
            "key": make_key("end_of_day", first.store, None, first.business_date, "summary"),
            "store": first.store,
            "business_date": first.business_date,
            "occurred_at": max(t.occurred_at for t in day),
            "source": {"file": "input.xml", "position": "end_of_day"},
            "currency": first.currency,
            "by_kind": tables["kind"],
            "by_tender": tables["tender"],
            "by_tax": tables["tax"],
        }
    )


@pytest.fixture
def mock_url() -> Iterator[str]:
    """A mock of this test's own: it keeps a second order of the same number, so the
    SQLite and PostgreSQL runs must not share one."""
    with commercetools_mock(MOCK_PROJECT) as url:
        yield url


def mock_admin(url: str) -> httpx.Client:
    token = httpx.post(
        f"{url}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("admin", "admin"),
    ).json()["access_token"]
    return httpx.Client(
        base_url=f"{url}/{MOCK_PROJECT}", headers={"Authorization": f"Bearer {token}"}
    )


def seed_mock(url: str, skus: set[str]) -> None:
    """What the project holds before the day: a product per SKU, the store, its channel
    and the line custom type."""
    with mock_admin(url) as admin:

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = admin.post(path, json=body)
            assert response.status_code in (200, 201), response.text
            created: dict[str, Any] = response.json()
            return created

        kind = post("/product-types", {"key": "grocery", "name": "Grocery", "description": "-"})
        for n, sku in enumerate(sorted(skus)):
            post(
                "/products",
                {
                    "key": f"p{n}",
                    "name": {"en": sku},
                    "slug": {"en": f"p{n}"},
                    "productType": {"typeId": "product-type", "id": kind["id"]},
                    "masterVariant": {"sku": sku},
                    "publish": True,
                },
            )
        post(
            "/types",
            {
                "key": "tillbridge-pos-line",
                "name": {"en": "POS line"},
                "resourceTypeIds": ["line-item"],
                "fieldDefinitions": [
                    {
                        "name": name,
                        "label": {"en": name},
                        "required": False,
                        "type": {"name": "String"},
                    }
                    for name in ("posQuantity", "posUnitPrice", "posDiscount")
                ],
            },
        )
        post("/channels", {"key": "berlin-mitte-supply", "roles": ["InventorySupply"]})
        post("/stores", {"key": "pcc-9", "name": {"en": "PCC store 9"}})


async def test_the_real_grocery_day_reaches_every_target_once_and_reconciles(
    inbox: Inbox, mock_url: str
) -> None:
    sales = the_day()
    assert len(sales) == 42
    assert sum(1 for s in sales if any(x.quantity % 1 for x in s.lines)) == 32, "weighed"
    store, date = sales[0].store, sales[0].business_date
    returned = next(s for s in sales if not s.taxes or not sum(t.amount for t in s.taxes))
    voided = next(s for s in sales if s is not returned and s.discounts)
    day = [*sales, a_return_of(returned), a_void_of(voided)]
    skus = {x.sku for s in sales for x in s.lines if x.sku}
    seed_mock(mock_url, skus)

    fakes: dict[str, Any] = {
        "ct": FakeCommercetools(),
        "adobe": FakeAdobeCommerce(),
        "crm": FakeSalesforce(),
    }
    fakes["crm"].entries.update({sku: f"01u{n:012d}" for n, sku in enumerate(sorted(skus))})
    fakes["crm"].formulas["POS_Total__c"] = ("TotalAmount", "POS_Tax__c")
    targets = [
        test_commercetools.settings().model_copy(update={"name": "ct", "kinds": KINDS}),
        CommercetoolsSettings(
            name="ct-mock",
            kinds=KINDS,
            api_url=mock_url,
            auth_url=mock_url,
            project_key=MOCK_PROJECT,
            client_id="relay",
            client_secret="relay-secret",
            return_payment_state=False,  # the mock lacks setReturnPaymentState
        ),
        test_adobe_commerce.settings().model_copy(update={"name": "adobe", "kinds": KINDS}),
        test_salesforce.settings(
            # US prices exclude the tax: it goes into POS_Tax__c, and the org's formula
            # POS_Total__c adds it to the items' TotalAmount.
            order_tax_field="POS_Tax__c",
            order_total_field="POS_Total__c",
        ).model_copy(update={"name": "crm", "kinds": KINDS}),
    ]
    route = StoreRoute.model_validate(
        {
            "country": "US",
            "currency": "USD",
            "tax_mode": "excluded",
            "commercetools": {"store": "pcc-9", "supply_channel": "berlin-mitte-supply"},
            "adobe_commerce": {"source_code": "pcc_9", "store_id": "1"},
            "salesforce": {"price_book": "01s000000000001AAA"},
        }
    )
    payments = {"card": "card", "cash": "cash"}
    config = CentralConfig(
        relay_id="relay-test",
        targets=targets,
        stores={store: route},
        routing=RoutingSettings(
            payments=dict.fromkeys(("commercetools", "adobe_commerce", "salesforce"), payments)
        ),
    )

    def transport_for(settings: Any) -> httpx.AsyncBaseTransport:
        if settings.name in fakes:
            return httpx.MockTransport(fakes[settings.name].handler)
        return httpx.AsyncHTTPTransport()

    rows = [
        IncomingRecord(
            seq=seq,
            key=r.key,
            kind=r.kind,
            correlation_id=f"corr-{seq}",
            occurred_at=r.occurred_at,
            body=r.model_dump(mode="json"),
            link_key=link_key(r),
        )
        for seq, r in enumerate([*day, closing(day)], start=1)
    ]
    await inbox.insert_batch(store, rows)
    delivery = Delivery(config, inbox, transport_for=transport_for, rng=random.Random(7))
    await delivery.drain()
    await delivery.aclose()

    problems = [(e.target, e.key, e.reason[:300]) for e in await inbox.exceptions()]
    assert problems == []
    for record in day:
        found = await inbox.record_by_key(record.key)
        assert found is not None
        assert found.state == RecordState.POSTED, (record.key, found.state)

    (recon,) = await reconcile_day(inbox, store, date, {t.name: KINDS for t in targets})
    assert recon.revision == 1
    assert recon.differences == 0, [
        (x.name, x.targets["ct-mock"]) for x in recon.lines if x.differs
    ]
    sale_line = next(x for x in recon.lines if (x.group, x.name) == ("kind", "sale"))
    total = sum((s.total for s in sales), Decimal(0))
    assert sale_line.pos is not None
    assert (sale_line.pos.count, sale_line.pos.amount) == (42, total)
    for name in ("ct", "ct-mock", "adobe", "crm"):
        confirmed = sale_line.targets[name]
        assert confirmed is not None
        assert (confirmed.count, confirmed.amount) == (42, total), name

    # What each target stated for each sale: the biting fakes keep the POS's
    # gross; the npm mock derives taxedPrice from line taxes only, so where the receipt
    # alone carries the (US, excluded) tax it states no gross and the POS total stands.
    rows = {r.body["key"]: r for r in await inbox.day_records(store, date)}
    for sale in sales:
        stated = rows[sale.key].confirmed
        assert Decimal(stated["ct"]) == Decimal(stated["adobe"]) == sale.total, sale.key
        assert Decimal(stated["crm"]) == sale.total, "Salesforce's POS_Total__c, read back"
        if any(t.amount for t in sale.taxes):
            assert "ct-mock" not in stated, sale.key
        else:
            assert Decimal(stated["ct-mock"]) == sale.total, sale.key

    # Every order once, in each target; the return and the void on their sales.
    with mock_admin(mock_url) as admin:
        held = admin.get("/orders", params={"limit": 500}).json()["results"]
    numbers = sorted(o["orderNumber"] for o in held)
    assert numbers == sorted(s.key for s in sales)
    back, void = day[-2:]
    by_number = {o["orderNumber"]: o for o in held}
    assert len(by_number[returned.key]["returnInfo"]) == 1
    assert by_number[voided.key]["orderState"] == "Cancelled"
    for sale in sales:
        routed = samples.routed(sale)
        for name in ("ct", "adobe", "crm"):
            assert fakes[name].stored(routed) == 1, (name, sale.key)
    for done in (back, void):
        original = returned if done is back else voided
        routed = samples.routed(done, original_ref=(await ref_of(inbox, original.key, "crm")))
        assert fakes["ct"].stored(samples.routed(done)) == 1
        assert fakes["adobe"].stored(routed) == 1
        assert fakes["crm"].stored(routed) == 1, done.kind

    # Each platform's own arithmetic over what it holds comes to the POS's figures.
    for sale in sales:
        routed = type("R", (), {"key": sale.key, "record": sale, "kind": "sale"})()
        excluded = sum((t.amount for t in sale.taxes if not t.included), Decimal(0))
        assert fakes["ct"].order_total(routed) == sale.total - excluded, sale.key
        assert fakes["adobe"].order_total(routed) == sale.total, sale.key
        assert fakes["crm"].order_total(routed) == sale.total - excluded, sale.key
