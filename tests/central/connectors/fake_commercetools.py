"""An in-memory commercetools, written from the documented HTTP API: client-credentials
tokens with their scopes, `orders/import`, order lookup by number, versioned order
updates (`addPayment`, `addReturnInfo`, `setReturnPaymentState`, `changeOrderState`,
`addDelivery`, `changeShipmentState`),
payments by key, channels by key, custom types by key and inventory entries queried by
predicate with input variables and changed with `changeQuantity`, `setCustomField` and
`setCustomType` — plus the faults the contract suite injects.

Every rule in `RULES` is enforced where the real API enforces it, and can be switched
off (`without=`) so a test can show the contract suite notices.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import unquote

import httpx

from central.connectors import Routed
from central.connectors._base import json_body
from central.connectors.commercetools.connector import order_number
from contract import Inventory, key_digest

from .rules import Ruled

PROJECT = "acme-test"
CLIENT_ID = "pos-relay"
CLIENT_SECRET = "ct-secret-0123456789"


KEY = re.compile(r"^[A-Za-z0-9_-]{2,256}$")
LINE_ITEM_LIMIT = 256
ORDER_STATES = {"Open", "Confirmed", "Complete", "Cancelled"}
SHIPMENT_STATES = {
    "Shipped",
    "Delivered",
    "Ready",
    "Pending",
    "Delayed",
    "Partial",
    "Backorder",
    "Canceled",
}
PAYMENT_STATES = {"BalanceDue", "Failed", "Pending", "CreditOwed", "Paid"}
RETURN_PAYMENT_STATES = {"NonRefundable", "Initial", "Refunded", "NotRefunded"}
# The scope each endpoint needs (commercetools-api-reference api-specs/api/resources/*.raml,
# securedBy); any one of a tuple will do.
SCOPES = {
    ("POST", "/orders"): ("manage_orders",),
    ("GET", "/orders"): ("view_orders",),
    ("POST", "/payments"): ("manage_payments",),
    ("GET", "/payments"): ("view_payments",),
    ("GET", "/channels"): ("view_channels", "view_products"),
    ("POST", "/inventory"): ("manage_products",),
    ("GET", "/inventory"): ("view_products",),
}


def granted(scopes: set[str], needed: tuple[str, ...]) -> bool:
    """Whether `scopes` cover one of `needed`: manage_project covers all, manage_X
    covers view_X (docs.commercetools.com/api/scopes)."""
    if f"manage_project:{PROJECT}" in scopes:
        return True
    names = {s.removesuffix(f":{PROJECT}") for s in scopes}
    names |= {"view_" + n.removeprefix("manage_") for n in names if n.startswith("manage_")}
    return bool(names & set(needed))


# A query predicate as the connector may write it: comparisons joined by `and`, values
# as input variables or as string literals with `\"` and `\\` escaped.
_LITERAL = r'"(?:[^"\\]|\\.)*"'
_COMPARISON = rf"\s*(\w+)\s*=\s*(:\w+|{_LITERAL})\s*"
_TERM = re.compile(rf"(?:{_COMPARISON}|\s*(\w+)\({_COMPARISON}\)\s*)")


def _error(status: int, code: str, message: str, **extra: Any) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "statusCode": status,
            "message": message,
            "errors": [{"code": code, "message": message, **extra}],
        },
    )


def _json(status: int, body: Any) -> httpx.Response:
    """A JSON answer; the decimals the connector sent come back as the same numbers."""
    return httpx.Response(
        status, content=json_body(body), headers={"Content-Type": "application/json"}
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_where(where: str, variables: dict[str, str]) -> dict[str, str] | None:
    """`field → value` of a conjunction of equalities (one level of nesting, as in
    `supplyChannel(id = :channel)`), or None when the predicate does not parse."""
    found: dict[str, str] = {}
    for part in re.split(r"\band\b", where):
        m = _TERM.fullmatch(part)
        if not m:
            return None
        if m.group(1):
            field, raw = m.group(1), m.group(2)
        else:
            field, raw = f"{m.group(3)}.{m.group(4)}", m.group(5)
        if raw.startswith(":"):
            if raw[1:] not in variables:
                return None
            found[field] = variables[raw[1:]]
        else:
            found[field] = re.sub(r"\\(.)", r"\1", raw[1:-1])
    return found


def _found(resource: dict[str, Any] | None) -> httpx.Response:
    if resource is None:
        return _error(404, "ResourceNotFound", "The Resource was not found.")
    return _json(200, resource)


class FakeCommercetools(Ruled):
    RULES: ClassVar[dict[str, str]] = {
        "integer-quantity": "LineItemImportDraft.quantity is an Int "
        "(docs.commercetools.com/api/projects/orders-import#lineitemimportdraft)",
        "cent-amount": "Money.centAmount is an Int in the currency's minor unit "
        "(docs.commercetools.com/api/types#money)",
        "key-pattern": "key fields match ^[A-Za-z0-9_-]+$, 2 to 256 characters "
        "(docs.commercetools.com/api/general-concepts#keys-and-ids)",
        "slug-pattern": "CustomLineItem slug matches ^[A-Za-z0-9_-]+$ "
        "(docs.commercetools.com/api/projects/carts#customlineitemdraft)",
        "duplicate-order-number": "orderNumber is unique in a project: DuplicateField "
        "(docs.commercetools.com/api/projects/orders-import#create-order-by-import)",
        "duplicate-payment-key": "a second Payment with the same key: DuplicateField "
        "(docs.commercetools.com/api/projects/payments#create-payment)",
        "concurrent-modification": "an update with a stale version: 409 "
        "ConcurrentModification carrying currentVersion "
        "(docs.commercetools.com/api/errors#concurrentmodification)",
        "line-item-limit": "at most 256 (custom) line items per cart or order "
        "(docs.commercetools.com/api/limits#carts)",
        "tax-rate": "TaxRate.amount is a number from 0 to 1 and TaxRate.country is required "
        "(docs.commercetools.com/api/projects/taxCategories#taxrate)",
        "custom-type": "custom fields name an existing Type: ReferencedResourceNotFound "
        "(docs.commercetools.com/api/projects/custom-fields#customfieldsdraft)",
        "where-syntax": "a malformed query predicate is refused: InvalidInput "
        "(docs.commercetools.com/api/predicates/query)",
        "state-values": "orderState and paymentState take only their documented values "
        "(docs.commercetools.com/api/projects/orders#orderstate)",
        "return-payment-state": "a ReturnItem's paymentState is a ReturnPaymentState of an "
        "existing returnItemId; a Returned item starts Initial "
        "(docs.commercetools.com/api/projects/orders#set-returnpaymentstate)",
        "scopes": "each endpoint needs its OAuth scope, else 403 insufficient_scope "
        "(docs.commercetools.com/api/scopes; commercetools/sphere-order-export#94)",
        "delivery-items": "a DeliveryItem names a (custom) line item of the order by id, with "
        "an Int quantity (docs.commercetools.com/api/projects/orders#deliveryitem)",
        "delivery-key": "a Delivery's key is unique among the order's deliveries and matches "
        "the key pattern: DuplicateField (docs.commercetools.com/api/projects/orders#delivery; "
        "docs.commercetools.com/api/releases/2023-05-17-introduced-key-field-on-delivery)",
        "shipment-state-values": "shipmentState takes only a ShipmentState value "
        "(docs.commercetools.com/api/projects/orders#shipmentstate)",
    }

    def __init__(
        self,
        *,
        without: Iterable[str] = (),
        client_scopes: Iterable[str] = (f"manage_project:{PROJECT}",),
    ) -> None:
        self._init_rules(without)
        self.client_scopes = set(client_scopes)
        """The scopes the API client holds: a token asks for some of them, or gets all."""
        self.token_requests = 0
        self.secrets = [CLIENT_SECRET]
        self._valid: dict[str, set[str]] = {}
        self.scopes_asked: list[str] = []
        self._ids = itertools.count(1)
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.channels = {"berlin-mitte-supply": {"id": "ch-supply", "key": "berlin-mitte-supply"}}
        self.inventory: dict[str, dict[str, Any]] = {}
        self.types = {"tillbridge-pos-line", "tillbridge-pos-stock"}
        self.correlation_ids: list[str] = []
        self.imports = 0
        self._fail: list[tuple[int, dict[str, str], str]] = []
        self._drop = False

    # -- fault hooks ----------------------------------------------------------------------

    def fail_next_write(
        self, status: int, *, headers: dict[str, str] | None = None, message: str = ""
    ) -> None:
        self._fail.append((status, headers or {}, message))

    def drop_answer_to_next_write(self) -> None:
        self._drop = True

    def expire_token(self) -> None:
        self._valid.clear()

    def change_inventory_behind_our_back(self, routed: Routed) -> None:
        record = routed.record
        assert isinstance(record, Inventory)
        for entry in self.inventory.values():
            if entry["sku"] == routed.skus.get(record.sku, record.sku):
                entry["version"] += 1
                entry["quantityOnStock"] += 5

    # -- what the suite reads -------------------------------------------------------------

    def stored(self, routed: Routed) -> int:
        kind = routed.record.kind
        if kind in ("sale", "cancel"):
            # A cancelled basket is an order imported as Cancelled (a sale may be
            # Cancelled later, by its void).
            return sum(
                1
                for o in self.orders.values()
                if o["orderNumber"] == order_number(routed.key)
                and (kind == "sale" or o["orderState"] == "Cancelled")
            )
        if kind in ("return", "void"):
            tracking = key_digest(routed.key, 32)
            returns = sum(
                1
                for o in self.orders.values()
                for info in o.get("returnInfo", [])
                if info["returnTrackingId"] == tracking
            )
            return (
                returns
                if kind == "return"
                else int(any(o["orderState"] == "Cancelled" for o in self.orders.values()))
            )
        record = routed.record
        assert isinstance(record, Inventory)
        return sum(1 for e in self.inventory.values() if e["sku"] == routed.skus.get(record.sku))

    def payments_of(self, routed: Routed) -> int:
        return sum(
            len(o["paymentInfo"]["payments"])
            for o in self.orders.values()
            if o["orderNumber"] == order_number(routed.key)
        )

    def order_total(self, routed: Routed) -> Decimal:
        """Line prices times quantities plus custom lines, as commercetools adds them up;
        they must equal the totalPrice the import stated."""
        (order,) = (o for o in self.orders.values() if o["orderNumber"] == order_number(routed.key))
        cents = sum(
            li["price"]["value"]["centAmount"] * li["quantity"] for li in order["lineItems"]
        )
        cents += sum(c["money"]["centAmount"] * c["quantity"] for c in order["customLineItems"])
        assert cents == order["totalPrice"]["centAmount"], (cents, order["totalPrice"])
        return Decimal(cents) / 100

    def inventory_level(self, routed: Routed) -> Decimal | None:
        record = routed.record
        assert isinstance(record, Inventory)
        for entry in self.inventory.values():
            if entry["sku"] == routed.skus.get(record.sku, record.sku):
                return Decimal(entry["quantityOnStock"])
        return None

    # -- the API --------------------------------------------------------------------------

    def headers(self, scopes: Iterable[str] = (f"manage_project:{PROJECT}",)) -> dict[str, str]:
        """A valid bearer token with `scopes`, for probes."""
        token = f"tok-probe-{len(self._valid)}"
        self._valid[token] = set(scopes)
        return {"Authorization": f"Bearer {token}"}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        scopes: Iterable[str] = (f"manage_project:{PROJECT}",),
        **params: str,
    ) -> httpx.Response:
        """One request straight to the handler, as a probe sends it."""
        request = httpx.Request(
            method,
            f"https://api.ct.test/{PROJECT}{path}",
            params=params,
            headers=self.headers(scopes),
            content=json.dumps(body).encode() if body is not None else None,
        )
        return self.handler(request)

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/oauth/token":
            return self._token(request)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self._valid:
            return _error(401, "invalid_token", "invalid_token")
        self.correlation_ids.append(request.headers.get("x-correlation-id", ""))
        prefix = f"/{PROJECT}"
        assert path.startswith(prefix), path
        path = path.removeprefix(prefix)
        needed = SCOPES[(request.method, "/" + path.split("/")[1])]
        if not granted(self._valid[token], needed) and self.enforces("scopes"):
            return _error(403, "insufficient_scope", "Insufficient scope")
        if request.method == "POST":
            if self._fail:
                status, headers, message = self._fail.pop(0)
                response = _error(status, "InvalidInput", message)
                response.headers.update(headers)
                return response
            response = self._write(request, path)
            if self._drop:
                self._drop = False
                raise httpx.ReadTimeout("answer lost", request=request)
            return response
        return self._read(request, path)

    def _token(self, request: httpx.Request) -> httpx.Response:
        expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return httpx.Response(401, json={"error": "invalid_client"})
        form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
        assert form["grant_type"] == "client_credentials"
        # The client may hold every scope; the token has what was asked for.
        asked = unquote(form.get("scope", "").replace("+", " "))
        self.scopes_asked.append(asked)
        beyond = [
            scope
            for scope in asked.split()
            if not granted(self.client_scopes, (scope.removesuffix(f":{PROJECT}"),))
        ]
        if beyond and self.enforces("scopes"):
            return httpx.Response(
                400,
                json={
                    "statusCode": 400,
                    "message": f"Invalid scopes: {' '.join(beyond)}",
                    "error": "invalid_scope",
                    "error_description": f"Invalid scopes: {' '.join(beyond)}",
                },
            )
        self.token_requests += 1
        token = f"tok-{self.token_requests}-abcdef"
        self._valid[token] = set(asked.split()) or set(self.client_scopes)
        self.secrets.append(token)
        return httpx.Response(
            200, json={"access_token": token, "expires_in": 172800, "token_type": "Bearer"}
        )

    def _read(self, request: httpx.Request, path: str) -> httpx.Response:
        if m := re.fullmatch(r"/orders/order-number=(.+)", path):
            number = unquote(m.group(1))
            for order in self.orders.values():
                if order["orderNumber"] == number:
                    return _json(200, order)
            return _error(404, "ResourceNotFound", f"no order {number}")
        if m := re.fullmatch(r"/orders/([\w-]+)", path):
            order = self.orders.get(m.group(1))
            return _found(order)
        if m := re.fullmatch(r"/payments/([\w-]+)", path):
            by_id = {p["id"]: p for p in self.payments.values()}
            return _found(by_id.get(m.group(1)))
        if m := re.fullmatch(r"/payments/key=(.+)", path):
            payment = self.payments.get(unquote(m.group(1)))
            return _json(200, payment) if payment else _error(404, "ResourceNotFound", "")
        if m := re.fullmatch(r"/channels/key=(.+)", path):
            channel = self.channels.get(unquote(m.group(1)))
            return _json(200, channel) if channel else _error(404, "ResourceNotFound", "")
        if path == "/inventory":
            params = request.url.params
            variables = {k[4:]: v for k, v in params.items() if k.startswith("var.")}
            where = parse_where(params["where"], variables)
            if where is None:
                if self.enforces("where-syntax"):
                    return _error(
                        400, "InvalidInput", f"Malformed parameter: where: {params['where']}"
                    )
                # Without the check, a broken predicate is read as far as it goes.
                m = re.match(r'\s*sku\s*=\s*"([^"]*)"', params["where"])
                where = {"sku": m.group(1) if m else ""}
            found = [
                e
                for e in self.inventory.values()
                if e["sku"] == where.get("sku")
                and e["supplyChannel"]["id"]
                == where.get("supplyChannel.id", e["supplyChannel"]["id"])
            ]
            return _json(200, {"results": found, "total": len(found)})
        raise AssertionError(f"unexpected GET {path}")

    def _write(self, request: httpx.Request, path: str) -> httpx.Response:
        body = json.loads(request.content, parse_float=Decimal)
        if path == "/orders/import":
            return self._import(body)
        if m := re.fullmatch(r"/orders/([\w-]+)", path):
            return self._update_order(m.group(1), body)
        if path == "/payments":
            if self.enforces("key-pattern") and not KEY.fullmatch(body.get("key", "")):
                return _error(400, "InvalidJsonInput", f"'{body.get('key')}' is not a valid key.")
            if body["key"] in self.payments and self.enforces("duplicate-payment-key"):
                return _error(
                    400,
                    "DuplicateField",
                    f"A duplicate value '{body['key']}' exists for field 'key'.",
                )
            assert body["transactions"][0]["type"] in ("Charge", "Refund")
            if refused := self._money_refused(body["amountPlanned"]):
                return refused
            payment = {"id": f"pay-{next(self._ids)}", "version": 1, **body}
            self.payments[body["key"]] = payment
            return _json(201, payment)
        if m := re.fullmatch(r"/payments/([\w-]+)", path):
            by_id = {p["id"]: p for p in self.payments.values()}
            payment = by_id[m.group(1)]
            if body["version"] != payment["version"] and self.enforces("concurrent-modification"):
                return self._conflict(payment)
            for action in body["actions"]:
                assert action["action"] == "addTransaction", action
                transaction = action["transaction"]
                assert transaction["type"] in ("Charge", "Refund"), transaction
                if refused := self._money_refused(transaction["amount"]):
                    return refused
                payment["transactions"].append({"id": f"tx-{next(self._ids)}", **transaction})
            payment["version"] += 1
            return _json(200, payment)
        if path == "/inventory":
            entry = {"id": f"inv-{next(self._ids)}", "version": 1, **body}
            if self.enforces("integer-quantity") and not _is_int(body["quantityOnStock"]):
                return _error(400, "InvalidJsonInput", "quantityOnStock: not a whole number")
            if refused := self._custom_refused(body.get("custom")):
                return refused
            self.inventory[entry["id"]] = entry
            return _json(201, entry)
        if m := re.fullmatch(r"/inventory/([\w-]+)", path):
            entry = self.inventory[m.group(1)]
            if body["version"] != entry["version"] and self.enforces("concurrent-modification"):
                return self._conflict(entry)
            changed = json.loads(json.dumps(entry, default=str))  # all or nothing
            for action in body["actions"]:
                if action["action"] == "changeQuantity":
                    if self.enforces("integer-quantity") and not _is_int(action["quantity"]):
                        return _error(400, "InvalidJsonInput", "quantity: not a whole number")
                    changed["quantityOnStock"] = action["quantity"]
                elif action["action"] == "setCustomType":
                    custom = {"type": action["type"], "fields": action.get("fields") or {}}
                    if refused := self._custom_refused(custom):
                        return refused
                    changed["custom"] = custom
                elif action["action"] == "setCustomField":
                    if "custom" not in changed:
                        return _error(400, "InvalidOperation", "The resource has no custom type.")
                    changed["custom"]["fields"][action["name"]] = action["value"]
                else:
                    raise AssertionError(action)
            changed["version"] += 1
            self.inventory[entry["id"]] = changed
            return _json(200, changed)
        raise AssertionError(f"unexpected POST {path}")

    def _delivery_refused(
        self, order: dict[str, Any], action: dict[str, Any]
    ) -> httpx.Response | None:
        lines = {li["id"] for li in [*order["lineItems"], *order.get("customLineItems", [])]}
        if self.enforces("delivery-items"):
            for item in action.get("items") or []:
                if item.get("id") not in lines:
                    return _error(
                        400, "InvalidOperation", f"No line item with id '{item.get('id')}'."
                    )
                if not _is_int(item.get("quantity")):
                    return _error(400, "InvalidJsonInput", "items -> quantity: not an Int")
        key = action.get("deliveryKey")
        if key is not None and self.enforces("delivery-key"):
            if not KEY.fullmatch(key):
                return _error(400, "InvalidJsonInput", f"'{key}' is not a valid key.")
            held = ((order.get("shippingInfo") or {}).get("deliveries")) or []
            if any(d.get("key") == key for d in held):
                return _error(
                    400, "DuplicateField", f"A duplicate value '{key}' exists for field 'key'."
                )
        return None

    def _conflict(self, resource: dict[str, Any]) -> httpx.Response:
        return _error(
            409,
            "ConcurrentModification",
            f"Object {resource['id']} has a different version than expected. "
            f"Expected: {resource['version'] - 1}. Actual: {resource['version']}.",
            currentVersion=resource["version"],
        )

    def _money_refused(self, money: dict[str, Any]) -> httpx.Response | None:
        if self.enforces("cent-amount") and not _is_int(money.get("centAmount")):
            return _error(400, "InvalidJsonInput", "centAmount: not a whole number of cents")
        return None

    def _tax_refused(self, rate: dict[str, Any] | None) -> httpx.Response | None:
        if rate is None or not self.enforces("tax-rate"):
            return None
        amount = rate.get("amount")
        if (
            isinstance(amount, bool)
            or not isinstance(amount, int | Decimal)
            or not 0 <= amount <= 1
        ):
            return _error(400, "InvalidJsonInput", f"taxRate.amount {amount} is not in [0..1]")
        if not re.fullmatch(r"[A-Z]{2}", str(rate.get("country", ""))):
            return _error(400, "InvalidJsonInput", "taxRate.country: Missing required value")
        return None

    def _custom_refused(self, custom: dict[str, Any] | None) -> httpx.Response | None:
        if custom is None or not self.enforces("custom-type"):
            return None
        key = custom["type"].get("key")
        if key not in self.types:
            return _error(
                400,
                "ReferencedResourceNotFound",
                f"The referenced object of type 'type' with key '{key}' was not found.",
                typeId="type",
            )
        return None

    def _import(self, draft: dict[str, Any]) -> httpx.Response:
        for name in ("orderNumber", "totalPrice", "lineItems"):
            if name not in draft:
                return _error(400, "InvalidJsonInput", f"Missing required field '{name}'.")
        if self.enforces("duplicate-order-number") and any(
            o["orderNumber"] == draft["orderNumber"] for o in self.orders.values()
        ):
            return _error(
                400,
                "DuplicateField",
                f"A duplicate value '\"{draft['orderNumber']}\"' exists for field 'orderNumber'.",
            )
        if self.enforces("state-values") and (
            draft.get("orderState", "Open") not in ORDER_STATES
            or draft.get("paymentState", "Paid") not in PAYMENT_STATES
        ):
            return _error(400, "InvalidJsonInput", "orderState or paymentState: unknown value")
        assert draft["store"]["typeId"] == "store"
        custom_lines = draft.get("customLineItems", [])
        if self.enforces("line-item-limit") and (
            len(draft["lineItems"]) > LINE_ITEM_LIMIT or len(custom_lines) > LINE_ITEM_LIMIT
        ):
            return _error(
                400, "MaxResourceLimitExceeded", f"At most {LINE_ITEM_LIMIT} line items per order."
            )
        moneys = [draft["totalPrice"]]
        if taxed := draft.get("taxedPrice"):
            moneys += [taxed["totalNet"], taxed["totalGross"]]
            moneys += [p["amount"] for p in taxed.get("taxPortions", [])]
        lines = []
        for item in draft["lineItems"]:
            assert set(item) >= {"name", "variant", "price", "quantity"}, item
            if self.enforces("integer-quantity") and not _is_int(item["quantity"]):
                return _error(
                    400,
                    "InvalidJsonInput",
                    f"Request body does not contain valid JSON. lineItems -> quantity: "
                    f"{item['quantity']} is not an Int",
                )
            moneys.append(item["price"]["value"])
            if taxed := item.get("taxedPrice"):
                moneys += [taxed["totalNet"], taxed["totalGross"], taxed["totalTax"]]
            refused = self._tax_refused(item.get("taxRate")) or self._custom_refused(
                item.get("custom")
            )
            if refused:
                return refused
            lines.append({"id": f"li-{next(self._ids)}", **item})
        for custom in custom_lines:
            if self.enforces("slug-pattern") and not KEY.fullmatch(custom.get("slug", "")):
                return _error(400, "InvalidJsonInput", f"slug '{custom.get('slug')}' is not valid")
            moneys.append(custom["money"])
        for money in moneys:
            if refused := self._money_refused(money):
                return refused
        self.imports += 1
        order = {
            "id": f"ord-{next(self._ids)}",
            "version": 1,
            **draft,
            "lineItems": lines,
            "customLineItems": [{"id": f"cli-{next(self._ids)}", **c} for c in custom_lines],
            "paymentInfo": {"payments": []},
            "returnInfo": [],
        }
        self.orders[order["id"]] = order
        return _json(201, order)

    def _update_order(self, order_id: str, body: dict[str, Any]) -> httpx.Response:
        order = self.orders[order_id]
        if body["version"] != order["version"] and self.enforces("concurrent-modification"):
            return self._conflict(order)
        for action in body["actions"]:
            if action["action"] == "addPayment":
                order["paymentInfo"]["payments"].append(
                    {"typeId": "payment", "id": action["payment"]["id"]}
                )
            elif action["action"] == "addReturnInfo":
                known = {li["id"] for li in order["lineItems"]}
                assert all(i["lineItemId"] in known for i in action["items"])
                items = [
                    {
                        "id": f"ri-{next(self._ids)}",
                        "paymentState": (
                            "Initial" if i["shipmentState"] == "Returned" else "NonRefundable"
                        ),
                        **i,
                    }
                    for i in action["items"]
                ]
                order["returnInfo"].append(
                    {"items": items, "returnTrackingId": action["returnTrackingId"]}
                )
            elif action["action"] == "setReturnPaymentState":
                by_id = {i["id"]: i for r in order["returnInfo"] for i in r["items"]}
                item = by_id.get(action["returnItemId"])
                state = action["paymentState"]
                if self.enforces("return-payment-state"):
                    if item is None:
                        return _error(
                            400,
                            "InvalidOperation",
                            f"No ReturnItem with id '{action['returnItemId']}' found.",
                        )
                    if state not in RETURN_PAYMENT_STATES:
                        return _error(400, "InvalidJsonInput", f"paymentState {state}")
                if item is not None:
                    item["paymentState"] = state
            elif action["action"] == "changeOrderState":
                if self.enforces("state-values") and action["orderState"] not in ORDER_STATES:
                    return _error(400, "InvalidJsonInput", f"orderState {action['orderState']}")
                order["orderState"] = action["orderState"]
            elif action["action"] == "addDelivery":
                if refused := self._delivery_refused(order, action):
                    return refused
                info = order.get("shippingInfo")
                if info is None:
                    return _error(400, "InvalidOperation", "Resource has no shipping info")
                delivery = {"id": f"del-{next(self._ids)}", "items": action["items"]}
                if "deliveryKey" in action:
                    delivery["key"] = action["deliveryKey"]
                if "parcels" in action:
                    delivery["parcels"] = [
                        {"id": f"par-{next(self._ids)}", **p} for p in action["parcels"]
                    ]
                info.setdefault("deliveries", []).append(delivery)
            elif action["action"] == "changeShipmentState":
                state = action["shipmentState"]
                if self.enforces("shipment-state-values") and state not in SHIPMENT_STATES:
                    return _error(400, "InvalidJsonInput", f"shipmentState {state}")
                order["shipmentState"] = state
            elif action["action"] == "changePaymentState":
                if self.enforces("state-values") and action["paymentState"] not in PAYMENT_STATES:
                    return _error(400, "InvalidJsonInput", f"paymentState {action['paymentState']}")
                order["paymentState"] = action["paymentState"]
            else:
                raise AssertionError(action)
        order["version"] += 1
        return _json(200, order)
