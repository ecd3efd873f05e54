"""One probe per documented rule of each fake: the request the platform refuses, and the
refusal it answers. The contract suite runs every probe against a fresh fake;
`test_rules.py` shows each probe fails once its rule is switched off."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .fake_adobe_commerce import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    CONSUMER_KEY,
    REST,
    TOKEN,
    FakeAdobeCommerce,
)
from .fake_commercetools import CLIENT_ID as CT_CLIENT_ID
from .fake_commercetools import CLIENT_SECRET as CT_CLIENT_SECRET
from .fake_commercetools import PROJECT as CT_PROJECT
from .fake_commercetools import FakeCommercetools
from .fake_salesforce import CLIENT_ID, CLIENT_SECRET, LOGIN, MY_DOMAIN, FakeSalesforce
from .rules import Probe


def _refused(response: httpx.Response, status: int, text: str) -> None:
    assert response.status_code == status, f"expected {status}, got {response.status_code}"
    assert text in response.text, f"{text!r} not in {response.text[:300]}"


# -- commercetools --------------------------------------------------------------------------


def _ct_order(number: str = "probe-1", **changes: Any) -> dict[str, Any]:
    line = {
        "name": {"en": "Pen"},
        "variant": {"sku": "SKU-PEN-BLUE"},
        "price": {"value": {"currencyCode": "EUR", "centAmount": 999}},
        "quantity": 1,
    }
    line.update(changes.pop("line", {}))
    return {
        "orderNumber": number,
        "totalPrice": {"currencyCode": "EUR", "centAmount": 999},
        "lineItems": [line],
        "store": {"typeId": "store", "key": "berlin-mitte"},
        **changes,
    }


def _ct_payment(key: str = "pos-probe-1", cents: Any = 999) -> dict[str, Any]:
    money = {"currencyCode": "EUR", "centAmount": cents}
    return {"key": key, "amountPlanned": money, "transactions": [{"type": "Charge"}]}


def _ct_twice(fake: FakeCommercetools, path: str, body: dict[str, Any]) -> httpx.Response:
    assert fake.call("POST", path, body).status_code == 201
    return fake.call("POST", path, body)


def _ct_stale(fake: FakeCommercetools) -> None:
    order = fake.call("POST", "/orders/import", _ct_order()).json()
    fake.call("POST", f"/orders/{order['id']}", {"version": 1, "actions": []})  # now 2
    stale = fake.call("POST", f"/orders/{order['id']}", {"version": 1, "actions": []})
    _refused(stale, 409, "ConcurrentModification")
    assert stale.json()["errors"][0]["currentVersion"] == 2


def _ct_tax(fake: FakeCommercetools) -> None:
    percent = {"name": "A", "amount": 19, "includedInPrice": True, "country": "DE"}
    _refused(fake.call("POST", "/orders/import", _ct_order(line={"taxRate": percent})), 400, "0..1")
    nowhere = {"name": "A", "amount": 0.19, "includedInPrice": True}
    _refused(
        fake.call("POST", "/orders/import", _ct_order(line={"taxRate": nowhere})), 400, "country"
    )


def _ct_return_state(fake: FakeCommercetools) -> None:
    order = fake.call("POST", "/orders/import", _ct_order()).json()
    info = {
        "action": "addReturnInfo",
        "returnTrackingId": "probe-r1",
        "items": [
            {"quantity": 1, "lineItemId": order["lineItems"][0]["id"], "shipmentState": "Returned"}
        ],
    }
    order = fake.call("POST", f"/orders/{order['id']}", {"version": 1, "actions": [info]}).json()
    (item,) = order["returnInfo"][0]["items"]
    assert item["paymentState"] == "Initial"

    def state(item_id: str, value: str) -> httpx.Response:
        action = {"action": "setReturnPaymentState", "returnItemId": item_id, "paymentState": value}
        return fake.call("POST", f"/orders/{order['id']}", {"version": 2, "actions": [action]})

    _refused(state("no-such-item", "Refunded"), 400, "No ReturnItem")
    _refused(state(item["id"], "Paid"), 400, "paymentState")


def _ct_scopes(fake: FakeCommercetools) -> None:
    orders_only = (f"manage_orders:{CT_PROJECT}",)
    _refused(
        fake.call("POST", "/payments", _ct_payment(), scopes=orders_only), 403, "insufficient_scope"
    )
    _refused(
        fake.call("GET", "/inventory", scopes=orders_only, where="sku = :s", **{"var.s": "x"}),
        403,
        "insufficient_scope",
    )
    assert fake.call("GET", "/orders/order-number=none", scopes=orders_only).status_code == 404
    fake.client_scopes = set(orders_only)
    basic = base64.b64encode(f"{CT_CLIENT_ID}:{CT_CLIENT_SECRET}".encode()).decode()
    beyond = httpx.Request(
        "POST",
        "https://auth.ct.test/oauth/token",
        headers={"Authorization": f"Basic {basic}"},
        data={"grant_type": "client_credentials", "scope": f"manage_products:{CT_PROJECT}"},
    )
    _refused(fake.handler(beyond), 400, "invalid_scope")


def _ct_shipping(fake: FakeCommercetools) -> dict[str, Any]:
    shipping = {"shippingMethodName": "Click & Collect", "price": _ct_payment()["amountPlanned"]}
    order: dict[str, Any] = fake.call(
        "POST", "/orders/import", _ct_order(shippingInfo=shipping)
    ).json()
    return order


def _ct_deliver(fake: FakeCommercetools, order: dict[str, Any], **action: Any) -> httpx.Response:
    body = {"version": order["version"], "actions": [{"action": "addDelivery", **action}]}
    return fake.call("POST", f"/orders/{order['id']}", body)


def _ct_delivery_items(fake: FakeCommercetools) -> None:
    order = _ct_shipping(fake)
    _refused(
        _ct_deliver(fake, order, items=[{"id": "no-such-line", "quantity": 1}]),
        400,
        "No line item",
    )
    line = order["lineItems"][0]["id"]
    _refused(_ct_deliver(fake, order, items=[{"id": line, "quantity": 0.5}]), 400, "not an Int")


def _ct_delivery_key(fake: FakeCommercetools) -> None:
    order = _ct_shipping(fake)
    items = [{"id": order["lineItems"][0]["id"], "quantity": 1}]
    _refused(_ct_deliver(fake, order, items=items, deliveryKey="pos:1"), 400, "not a valid key")
    first = _ct_deliver(fake, order, items=items, deliveryKey="pos-1")
    assert first.status_code == 200, first.text
    _refused(_ct_deliver(fake, first.json(), items=items, deliveryKey="pos-1"), 400, "Duplicate")


def _ct_shipment_state(fake: FakeCommercetools) -> None:
    order = _ct_shipping(fake)
    action = {"action": "changeShipmentState", "shipmentState": "PickedUp"}
    body = {"version": order["version"], "actions": [action]}
    _refused(fake.call("POST", f"/orders/{order['id']}", body), 400, "shipmentState")


COMMERCETOOLS: dict[str, Probe] = {
    "integer-quantity": lambda f: _refused(
        f.call("POST", "/orders/import", _ct_order(line={"quantity": 0.65})), 400, "not an Int"
    ),
    "cent-amount": lambda f: _refused(
        f.call("POST", "/payments", _ct_payment(cents=999.5)), 400, "centAmount"
    ),
    "key-pattern": lambda f: _refused(
        f.call("POST", "/payments", _ct_payment(key="sale:0042:3#t0")), 400, "not a valid key"
    ),
    "slug-pattern": lambda f: _refused(
        f.call(
            "POST",
            "/orders/import",
            _ct_order(
                customLineItems=[
                    {
                        "name": {"en": "Deposit"},
                        "slug": "deposit 1",
                        "quantity": 1,
                        "money": {"currencyCode": "EUR", "centAmount": 25},
                    }
                ]
            ),
        ),
        400,
        "slug",
    ),
    "duplicate-order-number": lambda f: _refused(
        _ct_twice(f, "/orders/import", _ct_order()), 400, "DuplicateField"
    ),
    "duplicate-payment-key": lambda f: _refused(
        _ct_twice(f, "/payments", _ct_payment()), 400, "DuplicateField"
    ),
    "concurrent-modification": _ct_stale,
    "line-item-limit": lambda f: _refused(
        f.call(
            "POST",
            "/orders/import",
            _ct_order(lineItems=[_ct_order()["lineItems"][0]] * 257),
        ),
        400,
        "MaxResourceLimitExceeded",
    ),
    "tax-rate": _ct_tax,
    "custom-type": lambda f: _refused(
        f.call(
            "POST",
            "/orders/import",
            _ct_order(line={"custom": {"type": {"typeId": "type", "key": "nope"}, "fields": {}}}),
        ),
        400,
        "ReferencedResourceNotFound",
    ),
    "where-syntax": lambda f: _refused(
        f.call("GET", "/inventory", where='sku="PEN "BLUE"" and supplyChannel(id="ch-supply")'),
        400,
        "Malformed parameter: where",
    ),
    "state-values": lambda f: _refused(
        f.call("POST", "/orders/import", _ct_order(orderState="Done")), 400, "orderState"
    ),
    "return-payment-state": _ct_return_state,
    "scopes": _ct_scopes,
    "delivery-items": _ct_delivery_items,
    "delivery-key": _ct_delivery_key,
    "shipment-state-values": _ct_shipment_state,
}


# -- Adobe Commerce -------------------------------------------------------------------------


def _mg_order(number: str = "P-probe", **changes: Any) -> dict[str, Any]:
    item = {"sku": "SKU-PEN-BLUE", "qty_ordered": 2, "row_total_incl_tax": 19.98}
    item.update(changes.pop("item", {}))
    entity = {
        "increment_id": number,
        "store_id": 1,
        "customer_email": "pos@example.invalid",
        "grand_total": 19.98,
        "items": [{"discount_amount": 0, **item}],
        "payment": {"method": "checkmo"},
        **changes,
    }
    return {"entity": {k: v for k, v in entity.items() if v is not None}}


def _mg_saved(fake: FakeAdobeCommerce, **changes: Any) -> dict[str, Any]:
    response = fake.call("POST", "/orders", _mg_order(**changes))
    assert response.status_code == 200, response.text
    saved: dict[str, Any] = response.json()
    return saved


def _mg_refund(order: dict[str, Any], qty: Any) -> dict[str, Any]:
    items = [{"order_item_id": order["items"][0]["item_id"], "qty": qty}]
    return {"items": items, "comment": {"comment": "probe"}}


def _mg_decimal(fake: FakeAdobeCommerce) -> None:
    order = _mg_saved(fake, item={"qty_ordered": 0.65})
    response = fake.call("POST", f"/order/{order['entity_id']}/invoice", {"capture": False})
    _refused(response, 400, "can't be created without products")


def _mg_refund_qty(fake: FakeAdobeCommerce) -> None:
    order = _mg_saved(fake)
    fake.call("POST", f"/order/{order['entity_id']}/invoice", {"capture": False})
    response = fake.call("POST", f"/order/{order['entity_id']}/refund", _mg_refund(order, 3))
    _refused(response, 400, "invalid quantity to refund")


def _mg_bearer(fake: FakeAdobeCommerce) -> None:
    request = httpx.Request(
        "GET",
        f"https://shop.test{REST}/orders",
        params={
            "searchCriteria[filter_groups][0][filters][0][field]": "increment_id",
            "searchCriteria[filter_groups][0][filters][0][value]": "P-probe",
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    _refused(fake.handler(request), 401, "isn't authorized")


def _mg_signature(fake: FakeAdobeCommerce) -> None:
    header = (
        f'OAuth oauth_consumer_key="{CONSUMER_KEY}", oauth_nonce="n", '
        'oauth_signature="forged", oauth_signature_method="HMAC-SHA256", '
        f'oauth_timestamp="{int(time.time())}", oauth_token="{TOKEN}", oauth_version="1.0"'
    )
    request = httpx.Request(
        "POST",
        f"https://shop.test{REST}/orders",
        headers={"Authorization": header},
        content=json.dumps(_mg_order()).encode(),
    )
    _refused(fake.handler(request), 401, "signature is invalid")


def _mg_unique(fake: FakeAdobeCommerce) -> None:
    _mg_saved(fake)
    _refused(fake.call("POST", "/orders", _mg_order()), 400, "Unique constraint")


def _mg_uninvoiced(fake: FakeAdobeCommerce) -> None:
    order = _mg_saved(fake)
    response = fake.call("POST", f"/order/{order['entity_id']}/refund", _mg_refund(order, 1))
    _refused(response, 400, "can't create creditmemo")


def _mg_acl(fake: FakeAdobeCommerce) -> None:
    fake.resources = {"Magento_Sales::sales"}
    items = {"sourceItems": [{"sku": "SKU-PEN-BLUE", "source_code": "s", "quantity": 1}]}
    _refused(
        fake.call("POST", "/inventory/source-items", items),
        401,
        "Magento_InventoryApi::stock_source_item_assign",
    )


def _mg_admin(fake: FakeAdobeCommerce) -> None:
    request = httpx.Request(
        "POST",
        f"https://shop.test{REST}/integration/admin/token",
        json={"username": ADMIN_USER, "password": ADMIN_PASSWORD},
    )
    _refused(fake.handler(request), 401, "2fa provider-specific endpoints")


def _mg_ship_qty(fake: FakeAdobeCommerce) -> None:
    order = _mg_saved(fake)
    items = [{"order_item_id": order["items"][0]["item_id"], "qty": 3}]
    response = fake.call("POST", f"/order/{order['entity_id']}/ship", {"items": items})
    _refused(response, 400, "does not allow a shipment")


def _mg_cancel_state(fake: FakeAdobeCommerce) -> None:
    order = _mg_saved(fake)
    fake.call("POST", f"/order/{order['entity_id']}/invoice", {"capture": False})
    response = fake.call("POST", f"/orders/{order['entity_id']}/cancel")
    assert response.status_code == 200, response.text
    assert response.json() is False, "an invoiced order was cancelled"


def _mg_condition(fake: FakeAdobeCommerce) -> None:
    request = httpx.Request(
        "GET",
        f"https://shop.test{REST}/orders",
        params={
            "searchCriteria[filter_groups][0][filters][0][field]": "updated_at",
            "searchCriteria[filter_groups][0][filters][0][value]": "2026-01-01 00:00:00",
            "searchCriteria[filter_groups][0][filters][0][condition_type]": "after",
        },
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    fake.bearer_allowed = True
    _refused(fake.handler(request), 400, "Invalid condition type")


ADOBE_COMMERCE: dict[str, Probe] = {
    "input-limit": lambda f: _refused(
        f.call(
            "POST",
            "/inventory/source-items",
            {
                "sourceItems": [
                    {"sku": "SKU-PEN-BLUE", "source_code": "s", "quantity": n, "status": 1}
                    for n in range(21)
                ]
            },
        ),
        400,
        "Maximum items of type",
    ),
    "two-factor-admin-token": _mg_admin,
    "bearer-needs-setting": _mg_bearer,
    "oauth-signature": _mg_signature,
    "unique-increment-id": _mg_unique,
    "increment-id-length": lambda f: _refused(
        f.call("POST", "/orders", _mg_order("P" + "0" * 32)), 400, "saving the order"
    ),
    "required-fields": lambda f: _refused(
        f.call("POST", "/orders", _mg_order(payment=None)), 400, "is required"
    ),
    "decimal-qty-flag": _mg_decimal,
    "creditmemo-needs-invoice": _mg_uninvoiced,
    "refund-qty": _mg_refund_qty,
    "acl-resources": _mg_acl,
    "ship-qty": _mg_ship_qty,
    "cancel-state": _mg_cancel_state,
    "condition-types": _mg_condition,
}


# -- Salesforce -----------------------------------------------------------------------------


def _sf_upsert(fake: FakeSalesforce, obj: str, field: str, *rows: dict[str, Any]) -> Any:
    records = [{"attributes": {"type": obj}, **row} for row in rows]
    path = f"/composite/sobjects/{obj}/{field}"
    response = fake.call("PATCH", path, {"allOrNone": False, "records": records})
    return response


def _sf_order(fake: FakeSalesforce, key: str = "probe-1", **extra: Any) -> str:
    answer = _sf_upsert(
        fake, "Order", "POS_Key__c", {"POS_Key__c": key, "Status": "Draft", **extra}
    )
    assert answer.status_code == 200, answer.text
    (result,) = answer.json()
    assert result["success"], result
    return str(result["id"])


def _sf_item(key: str, line: str = "1", **extra: Any) -> dict[str, Any]:
    return {
        "POS_Line_Key__c": f"{key}#{line}",
        "Order": {"POS_Key__c": key},
        "PricebookEntryId": "01u000000000001",
        "Quantity": 1,
        "UnitPrice": 9.99,
        **extra,
    }


def _sf_item_error(fake: FakeSalesforce, row: dict[str, Any], code: str) -> None:
    (result,) = _sf_upsert(fake, "OrderItem", "POS_Line_Key__c", row).json()
    assert not result["success"], result
    assert result["errors"][0]["statusCode"] == code, result


def _sf_create_only(fake: FakeSalesforce) -> None:
    _sf_order(fake)
    (first,) = _sf_upsert(fake, "OrderItem", "POS_Line_Key__c", _sf_item("probe-1")).json()
    assert first["success"], first
    _sf_item_error(fake, _sf_item("probe-1"), "INVALID_FIELD_FOR_INSERT_UPDATE")


def _sf_negative(fake: FakeSalesforce) -> None:
    _sf_order(fake)
    _sf_item_error(fake, _sf_item("probe-1", Quantity=-1), "FIELD_INTEGRITY_EXCEPTION")


def _sf_reduction(fake: FakeSalesforce) -> None:
    original = _sf_order(fake)
    _sf_order(fake, "probe-2", IsReductionOrder=True, OriginalOrderId=original)
    stray = _sf_item("probe-2", Quantity=-1, OriginalOrderItemId="802000000000999")
    _sf_item_error(fake, stray, "FIELD_INTEGRITY_EXCEPTION")


def _sf_token(fake: FakeSalesforce, host: str, **form: str) -> httpx.Response:
    request = httpx.Request("POST", f"{host}/services/oauth2/token", data=form)
    return fake.handler(request)


def _sf_jwt(fake: FakeSalesforce) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake.public_key = key.public_key()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    private = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    claims = {"iss": CLIENT_ID, "sub": "relay@acme.test", "aud": MY_DOMAIN, "exp": 2_000_000_000}
    header = b64(json.dumps({"alg": "RS256"}).encode())
    signing = f"{header}.{b64(json.dumps(claims).encode())}"
    signature = private.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
    response = _sf_token(
        fake,
        LOGIN,
        grant_type="urn:ietf:params:oauth:grant-type:jwt-bearer",
        assertion=f"{signing}.{b64(signature)}",
    )
    _refused(response, 400, "audience is invalid")


def _sf_api_scope(fake: FakeSalesforce) -> None:
    fake.app_scopes = "id refresh_token"
    token = _sf_token(
        fake,
        MY_DOMAIN,
        grant_type="client_credentials",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    ).json()["access_token"]
    query = httpx.Request(
        "GET",
        f"{MY_DOMAIN}/services/data/v62.0/query",
        params={"q": "SELECT Id FROM Contact WHERE Email = 'x'"},
        headers={"Authorization": f"Bearer {token}"},
    )
    _refused(fake.handler(query), 401, "not valid for use with the REST API")


def _sf_limit(fake: FakeSalesforce) -> None:
    fake.daily_limit = 1
    first = fake.call("GET", "/query", q="SELECT Id FROM Contact WHERE Email = 'x'")
    assert first.headers["sforce-limit-info"] == "api-usage=1/1"
    _refused(
        fake.call("GET", "/query", q="SELECT Id FROM Contact WHERE Email = 'x'"),
        403,
        "REQUEST_LIMIT_EXCEEDED",
    )


SALESFORCE: dict[str, Probe] = {
    "my-domain-client-credentials": lambda f: _refused(
        _sf_token(
            f,
            LOGIN,
            grant_type="client_credentials",
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
        ),
        400,
        "request not supported on this domain",
    ),
    "jwt-audience": _sf_jwt,
    "invalid-session": lambda f: _refused(
        f.handler(
            httpx.Request(
                "GET",
                f"{MY_DOMAIN}/services/data/v62.0/query",
                params={"q": "SELECT Id FROM Contact WHERE Email = 'x'"},
                headers={"Authorization": "Bearer 00D!expired"},
            )
        ),
        401,
        "INVALID_SESSION_ID",
    ),
    "api-scope": _sf_api_scope,
    "request-limit": _sf_limit,
    "collection-cap": lambda f: _refused(
        _sf_upsert(f, "Order", "POS_Key__c", *({"POS_Key__c": f"k{n}"} for n in range(201))),
        400,
        "EXCEEDED_ID_LIMIT",
    ),
    "create-only-fields": _sf_create_only,
    "negative-quantity": _sf_negative,
    "reduction-links": _sf_reduction,
}
