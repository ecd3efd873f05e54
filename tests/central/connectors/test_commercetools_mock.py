"""The commercetools connector against the third-party `@labdigital/commercetools-mock`
server (npm) on 127.0.0.1: a sale, a split-tender payment, a linked return, a cancelled
basket, and inventory levels and movements under a concurrent change.

The mock deviates from the real API where it matters for idempotency: it accepts a
second order with the same `orderNumber` and a second payment with the same `key`, and
answers 200 where the real API answers 201. So "once" is proven by our own count of
what the mock holds after a re-delivery, never by the mock refusing a duplicate.

The mock (4.4.0, the only version the registry holds) has no `setReturnPaymentState`
update action: it answers `InvalidInput: Invalid action setReturnPaymentState`. Against
it the connector runs with `return_payment_state = false`, and
`test_the_mock_still_lacks_set_return_payment_state` fails the day a mock version
implements it, so the setting can go. The action itself is proven against the biting
fake (`test_commercetools.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from central.connectors.commercetools.connector import CommercetoolsConnector, CommercetoolsSettings
from tests.support.ct_shop import Admin
from tests.support.ctmock import commercetools_mock

from . import samples

PROJECT = "acme-test"


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with commercetools_mock(PROJECT) as url:
        yield url


@pytest.fixture(scope="module")
def admin(mock_url: str) -> Admin:
    admin = Admin(mock_url, PROJECT)
    kind = admin.post("/product-types", {"key": "pen", "name": "Pen", "description": "Pens"})
    admin.post(
        "/products",
        {
            "key": "pens",
            "name": {"en": "Pens"},
            "slug": {"en": "pens"},
            "productType": {"typeId": "product-type", "id": kind["id"]},
            "masterVariant": {"sku": "SKU-PEN-BLUE"},
            "variants": [{"sku": "SKU-PEN-RED"}],
            "publish": True,
        },
    )
    admin.post(
        "/products",
        {
            "key": "apples",
            "name": {"en": "Apples"},
            "slug": {"en": "apples"},
            "productType": {"typeId": "product-type", "id": kind["id"]},
            "masterVariant": {"sku": "SKU-APPLES"},
            "publish": True,
        },
    )
    string = {"name": "String"}
    admin.post(
        "/types",
        {
            "key": "tillbridge-pos-line",
            "name": {"en": "POS line"},
            "resourceTypeIds": ["line-item"],
            "fieldDefinitions": [
                {"name": name, "label": {"en": name}, "required": False, "type": string}
                for name in ("posQuantity", "posUnitPrice", "posDiscount")
            ],
        },
    )
    admin.post(
        "/types",
        {
            "key": "tillbridge-pos-stock",
            "name": {"en": "POS stock"},
            "resourceTypeIds": ["inventory-entry"],
            "fieldDefinitions": [
                {
                    "name": "posMovements",
                    "label": {"en": "POS movements applied"},
                    "required": False,
                    "type": {"name": "Set", "elementType": {"name": "String"}},
                }
            ],
        },
    )
    for key, role in (
        ("berlin-mitte-supply", "InventorySupply"),
        ("berlin-mitte-dist", "ProductDistribution"),
    ):
        admin.post("/channels", {"key": key, "roles": [role]})
    admin.post("/stores", {"key": "berlin-mitte", "name": {"en": "Berlin Mitte"}})
    return admin


def settings(url: str) -> CommercetoolsSettings:
    return CommercetoolsSettings(
        name="ct",
        api_url=url,
        auth_url=url,
        project_key=PROJECT,
        client_id="relay",
        client_secret="relay-secret",
        return_payment_state=False,  # the mock has no setReturnPaymentState (see above)
    )


@pytest.fixture
async def connector(mock_url: str, admin: Admin) -> AsyncIterator[CommercetoolsConnector]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield CommercetoolsConnector(settings(mock_url), client)


async def test_a_sale_is_imported_once_in_its_store(
    connector: CommercetoolsConnector, admin: Admin
) -> None:
    sale = samples.sale("9101")
    first = await connector.deliver([samples.routed(sale)])
    assert [o.ref for o in first.accepted] == [sale.key]
    again = await connector.deliver([samples.routed(sale, attempts=1)])
    assert len(again.accepted) == 1
    orders = admin.query("/orders", f'orderNumber="{sale.key}"')
    assert len(orders) == 1, "a re-delivery after a possible success creates nothing"
    (order,) = orders
    assert order["store"]["key"] == "berlin-mitte"
    assert order["totalPrice"]["centAmount"] == 2997
    assert [li["variant"]["sku"] for li in order["lineItems"]] == ["SKU-PEN-BLUE", "SKU-PEN-RED"]


async def test_a_split_tender_gives_two_payments_on_the_order(
    connector: CommercetoolsConnector, admin: Admin
) -> None:
    sale = samples.sale("9201")
    await connector.deliver([samples.routed(sale)])
    await connector.deliver([samples.routed(sale, attempts=1)])
    (order,) = admin.query("/orders", f'orderNumber="{sale.key}"')
    attached = [p["id"] for p in order["paymentInfo"]["payments"]]
    assert len(attached) == 2
    payments = [admin.http.get(f"/payments/{pid}").json() for pid in attached]
    planned = sorted(p["amountPlanned"]["centAmount"] for p in payments)
    assert planned == [997, 2000]
    assert {p["paymentMethodInfo"]["method"] for p in payments} == {"adyen-pos", "cash"}
    assert all(p["transactions"][0]["type"] == "Charge" for p in payments)
    keys = [p["key"] for p in payments]
    assert len(admin.query("/payments", f'key in ("{keys[0]}", "{keys[1]}")')) == 2


async def test_a_linked_return_is_refunded_on_the_original_order(
    connector: CommercetoolsConnector, admin: Admin
) -> None:
    sale = samples.sale("9301")
    await connector.deliver([samples.routed(sale)])
    back = samples.refund(sale, "9302")
    result = await connector.deliver([samples.routed(back, original_ref=sale.key)])
    assert len(result.accepted) == 1, result
    await connector.deliver([samples.routed(back, attempts=1, original_ref=sale.key)])
    (order,) = admin.query("/orders", f'orderNumber="{sale.key}"')
    assert len(order["returnInfo"]) == 1, "the return is recorded once"
    (item,) = order["returnInfo"][0]["items"]
    assert item["quantity"] == 1
    assert item["lineItemId"] == order["lineItems"][0]["id"]
    attached = order["paymentInfo"]["payments"]
    assert len(attached) == 2, "the refund goes on the sale's payment, not a new one"
    payments = [admin.http.get(f"/payments/{p['id']}").json() for p in attached]
    refunds = [
        t["amount"]["centAmount"]
        for p in payments
        for t in p["transactions"]
        if t["type"] == "Refund"
    ]
    assert refunds == [999], "one refund transaction, once"


class Interfering(httpx.AsyncBaseTransport):
    """Changes the inventory entry out of band just before our first update of it."""

    def __init__(self, admin: Admin) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._admin = admin
        self.conflicts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and "/inventory/" in path and not self.conflicts:
            entry = self._admin.http.get(path.removeprefix(f"/{PROJECT}")).json()
            self._admin.post(
                f"/inventory/{entry['id']}",
                {
                    "version": entry["version"],
                    "actions": [{"action": "changeQuantity", "quantity": 99}],
                },
            )
        response = await self._inner.handle_async_request(request)
        if response.status_code == 409:
            self.conflicts += 1
        return response


async def test_inventory_ends_at_our_level_despite_a_concurrent_change(
    mock_url: str, admin: Admin
) -> None:
    interfering = Interfering(admin)
    async with httpx.AsyncClient(transport=interfering, timeout=10) as client:
        connector = CommercetoolsConnector(settings(mock_url), client)
        created = await connector.deliver([samples.routed(samples.inventory(quantity=17))])
        assert len(created.accepted) == 1
        count = samples.inventory(quantity=12, reference="count-2")
        updated = await connector.deliver([samples.routed(count)])
    assert len(updated.accepted) == 1, updated
    assert interfering.conflicts == 1, "our first write met the other change and re-read"
    channel = admin.http.get("/channels/key=berlin-mitte-supply").json()
    (entry,) = admin.query(
        "/inventory", f'sku="SKU-PEN-BLUE" and supplyChannel(id="{channel["id"]}")'
    )
    assert entry["quantityOnStock"] == 12


async def test_a_weighed_and_discounted_sale_is_imported_to_the_cent(
    connector: CommercetoolsConnector, admin: Admin
) -> None:
    grocery = samples.grocery("9401")
    result = await connector.deliver([samples.routed(grocery)])
    assert len(result.accepted) == 1, result
    assert result.accepted[0].confirmed == grocery.total, "the mock's own total, as answered"
    (order,) = admin.query("/orders", f'orderNumber="{grocery.key}"')
    assert order["totalPrice"]["centAmount"] == 1992
    lines = sum(li["totalPrice"]["centAmount"] for li in order["lineItems"])
    custom = sum(c["totalPrice"]["centAmount"] for c in order["customLineItems"])
    assert lines + custom == 1992, "the platform's own line totals add up to the POS total"
    apples = order["lineItems"][0]
    assert apples["quantity"] == 1
    assert apples["custom"]["fields"] == {"posQuantity": "0.65", "posUnitPrice": "2.99"}


async def test_a_grocery_day_is_imported_once_each_to_the_cent(
    connector: CommercetoolsConnector, admin: Admin
) -> None:
    day = samples.grocery_day()
    first = await connector.deliver([samples.routed(s) for s in day])
    assert len(first.accepted) == len(day) == 42, first
    back = samples.refund(day[0], "R901")
    void = samples.void(day[1], "V901")
    done = await connector.deliver(
        [
            samples.routed(back, original_ref=day[0].key),
            samples.routed(void, original_ref=day[1].key),
        ]
    )
    assert len(done.accepted) == 2, done
    again = await connector.deliver([samples.routed(s, attempts=1) for s in day])
    assert len(again.accepted) == 42
    for sale in day:
        (order,) = admin.query("/orders", f'orderNumber="{sale.key}"')
        lines = sum(li["totalPrice"]["centAmount"] for li in order["lineItems"])
        custom = sum(c["totalPrice"]["centAmount"] for c in order["customLineItems"])
        cents = int(sale.total * 100)
        assert order["totalPrice"]["centAmount"] == lines + custom == cents, sale.key
    (returned,) = admin.query("/orders", f'orderNumber="{day[0].key}"')
    assert len(returned["returnInfo"]) == 1
    (voided,) = admin.query("/orders", f'orderNumber="{day[1].key}"')
    assert voided["orderState"] == "Cancelled"


async def test_the_mock_still_lacks_set_return_payment_state(
    connector: CommercetoolsConnector, admin: Admin
) -> None:
    sale = samples.sale("9501")
    await connector.deliver([samples.routed(sale)])
    await connector.deliver([samples.routed(samples.refund(sale, "9502"), original_ref=sale.key)])
    (order,) = admin.query("/orders", f'orderNumber="{sale.key}"')
    (item,) = order["returnInfo"][0]["items"]
    assert item["paymentState"] == "Initial"
    answer = admin.http.post(
        f"/orders/{order['id']}",
        json={
            "version": order["version"],
            "actions": [
                {
                    "action": "setReturnPaymentState",
                    "returnItemId": item["id"],
                    "paymentState": "Refunded",
                }
            ],
        },
    )
    assert answer.status_code == 400, "the mock has it now: drop return_payment_state=False"
    assert "Invalid action setReturnPaymentState" in answer.text


async def test_a_cancelled_basket_is_imported_cancelled_once_without_payments(
    connector: CommercetoolsConnector, admin: Admin
) -> None:
    basket = samples.cancel("9601")
    first = await connector.deliver([samples.routed(basket)])
    assert len(first.accepted) == 1, first
    await connector.deliver([samples.routed(basket, attempts=1)])
    (order,) = admin.query("/orders", f'orderNumber="{basket.key}"')
    assert order["orderState"] == "Cancelled"
    assert not (order.get("paymentInfo") or {}).get("payments")
    assert order["totalPrice"]["centAmount"] == 2997


async def test_a_movement_is_applied_once_on_the_mocks_entry(mock_url: str, admin: Admin) -> None:
    sku = "4006381333948"  # the red pen: an entry of its own
    interfering = Interfering(admin)
    async with httpx.AsyncClient(transport=interfering, timeout=10) as client:
        connector = CommercetoolsConnector(settings(mock_url), client)
        level = samples.inventory(sku, 40, "count-r1")
        assert len((await connector.deliver([samples.routed(level)])).accepted) == 1
        out = samples.movement(-3, "move-r1", sku)
        first = await connector.deliver([samples.routed(out)])
        again = await connector.deliver([samples.routed(out, attempts=1)])
    assert len(first.accepted) == len(again.accepted) == 1, (first, again)
    assert interfering.conflicts == 1, "the movement met the other change and re-read"
    channel = admin.http.get("/channels/key=berlin-mitte-supply").json()
    (entry,) = admin.query(
        "/inventory", f'sku="SKU-PEN-RED" and supplyChannel(id="{channel["id"]}")'
    )
    assert entry["quantityOnStock"] == 99 - 3, "the other change's level, less ours, once"
