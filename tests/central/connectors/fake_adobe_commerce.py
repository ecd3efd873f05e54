"""An in-memory Adobe Commerce (Magento 2 REST), written from the documented routes:
`POST /V1/orders` (salesOrderRepositoryV1 save), `GET /V1/orders` with searchCriteria
(filter groups ANDed, condition types, sort orders, pages), `GET /V1/orders/{id}`,
offline invoices, credit memos by `POST /V1/order/{id}/refund` and their list,
shipments by `POST /V1/order/{id}/ship` and their list, cancellation, MSI
`POST /V1/inventory/source-items` (all or nothing), the admin token endpoint, and
integration tokens either OAuth 1.0a-signed or as bearer tokens — with the faults the
contract suite injects.

Every rule in `RULES` is enforced where the real shop enforces it, and can be switched
off (`without=`) so a test can show the contract suite notices.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote

import httpx

from central.connectors import Routed
from central.connectors._base import json_body
from central.connectors.adobe_commerce._orders import increment_id, mark_of
from central.connectors.adobe_commerce.connector import oauth1_signature
from contract import Inventory

from .rules import Ruled

TOKEN = "magento-integration-token-42"
TOKEN_SECRET = "magento-token-secret-77"
CONSUMER_KEY = "magento-consumer-key-1"
CONSUMER_SECRET = "magento-consumer-secret-99"
ADMIN_USER = "relay-admin"
ADMIN_PASSWORD = "admin-password-31"
INPUT_LIMIT = 20
REST = "/rest/all/V1"
SALES = "Magento_Sales::sales"
SOURCE_ITEMS = "Magento_InventoryApi::stock_source_item_assign"
SOURCE_READ = "Magento_InventoryApi::source"
CATALOG = "Magento_Catalog::products"


def _error(status: int, message: str, parameters: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"message": message}
    if parameters is not None:
        body["parameters"] = parameters
    return httpx.Response(status, json=body)


def _json_error(status: int, message: str, error: str, parameters: Any) -> httpx.Response:
    """A ValidationException as the REST API answers it: the message and each error."""
    body = {"message": message, "errors": [{"message": error, "parameters": parameters}]}
    return httpx.Response(status, json=body)


def _json(body: Any) -> httpx.Response:
    return httpx.Response(
        200, content=json_body(body), headers={"Content-Type": "application/json"}
    )


CONDITIONS = {
    "eq": lambda a, b: a == b,
    "gt": lambda a, b: a > b,
    "gteq": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "lteq": lambda a, b: a <= b,
    # "in": the value is a comma-separated list (performing-searches, condition types).
    "in": lambda a, b: str(a) in str(b).split(","),
}


def _search(request: httpx.Request) -> tuple[list[list[tuple[str, str, str]]], list[Any], int, int]:
    """searchCriteria as Magento reads it: filter groups (ANDed) of filters (ORed) with
    their condition types (default eq), sort orders, page size and current page
    (developer.adobe.com/commerce/webapi/rest/use-rest/performing-searches/)."""
    groups: dict[int, dict[int, dict[str, str]]] = {}
    sorts: dict[int, dict[str, str]] = {}
    size, page = 0, 1
    for name, value in request.url.params.multi_items():
        if m := re.fullmatch(
            r"searchCriteria\[filter_groups\]\[(\d+)\]\[filters\]\[(\d+)\]\[(\w+)\]", name
        ):
            group = groups.setdefault(int(m.group(1)), {})
            group.setdefault(int(m.group(2)), {})[m.group(3)] = value
        elif m := re.fullmatch(r"searchCriteria\[sortOrders\]\[(\d+)\]\[(\w+)\]", name):
            sorts.setdefault(int(m.group(1)), {})[m.group(2)] = value
        elif name == "searchCriteria[pageSize]":
            size = int(value)
        elif name == "searchCriteria[currentPage]":
            page = int(value)
        else:
            raise AssertionError(f"not searchCriteria: {name}")
    filters = [
        [(f["field"], f["value"], f.get("condition_type", "eq")) for _, f in sorted(g.items())]
        for _, g in sorted(groups.items())
    ]
    return filters, [sorts[i] for i in sorted(sorts)], size, page


def _field(row: dict[str, Any], name: str) -> Any:
    """A row's field as searchCriteria names it: a product answers its `entity_id` as
    `id` (catalog_product_entity.entity_id; ProductInterface::getId)."""
    return row.get(name, row.get("id") if name == "entity_id" else None)


def _sort_value(value: Any) -> Any:
    return int(value) if isinstance(value, int) or str(value).isdigit() else str(value)


class FakeAdobeCommerce(Ruled):
    RULES: ClassVar[dict[str, str]] = {
        "input-limit": "a list input holds at most 20 entities by default since 2.4.3 "
        "(experienceleague.adobe.com/docs/commerce-knowledge-base/kb/troubleshooting/"
        "known-issues-patches-attached/web-api-resources-limit.html)",
        "two-factor-admin-token": "with Magento_TwoFactorAuth (on by default in 2.4) the "
        "admin token endpoint refuses (developer.adobe.com/commerce/webapi/get-started/"
        "authentication/gs-authentication-token/#admin-and-customer-access-tokens)",
        "bearer-needs-setting": "an integration access token works as a bearer token only "
        "with 'Allow OAuth Access Tokens to be used as standalone Bearer tokens'; otherwise "
        "calls are OAuth 1.0a-signed (developer.adobe.com/commerce/webapi/get-started/"
        "authentication/gs-authentication-oauth/)",
        "oauth-signature": "an OAuth 1.0a call whose signature does not match is refused "
        "(RFC 5849 section 3.4; developer.adobe.com/commerce/webapi/get-started/"
        "authentication/gs-authentication-oauth/)",
        "unique-increment-id": "increment_id is unique per store: 'Unique constraint "
        "violation found' (app/code/Magento/Sales/etc/db_schema.xml, index "
        "SALES_ORDER_INCREMENT_ID_STORE_ID)",
        "increment-id-length": "increment_id is varchar(32) "
        "(app/code/Magento/Sales/etc/db_schema.xml, table sales_order)",
        "required-fields": "an order needs increment_id, store_id, customer_email, items and "
        "payment (adobe-commerce.redoc.ly/2.4.7-admin/tag/orders#operation/PostV1Orders)",
        "decimal-qty-flag": "an item's quantity is cast to a whole number by invoices and "
        "credit memos unless the item has is_qty_decimal "
        "(app/code/Magento/Sales/Model/Order/Invoice/Item.php, setQty)",
        "creditmemo-needs-invoice": "a credit memo needs an invoiced order: "
        "'We can't create creditmemo for the order.' "
        "(developer.adobe.com/commerce/webapi/rest/tutorials/orders/order-issue-refund/)",
        "refund-qty": "an item refunds at most what was ordered and not yet refunded "
        "(app/code/Magento/Sales/Model/Order/Creditmemo/Item.php, setQty)",
        "ship-qty": "POST /V1/order/{id}/ship validates the total shipped quantity of each "
        "item: no more than ordered and not yet shipped or canceled "
        "(developer.adobe.com/commerce/webapi/rest/tutorials/inventory/create-shipment/)",
        "cancel-state": "an order that cannot be canceled (complete, closed, already "
        "canceled) answers false to POST /V1/orders/{id}/cancel "
        "(app/code/Magento/Sales/Model/Service/OrderService.php, cancel: canCancel)",
        "condition-types": "a filter's condition_type is one of Magento's (eq, gt, gteq, lt, "
        "lteq, …); another is refused "
        "(developer.adobe.com/commerce/webapi/rest/use-rest/performing-searches/)",
        "acl-resources": "an integration reaches a route only with its ACL resource: 401 "
        "'The consumer isn't authorized to access %resources.' (magento/magento2 "
        "app/code/Magento/Sales/etc/webapi.xml at e59cdf44: Magento_Sales::sales, whose "
        "children later releases name per route; magento/inventory "
        "InventoryApi/etc/webapi.xml: Magento_InventoryApi::stock_source_item_assign to "
        "save source items, Magento_InventoryApi::source to read them)",
        "in-stock-above-zero": "a source item 'In Stock' at a quantity of zero or less is "
        'refused: \'Product cannot have "status" "In Stock" while product "quantity" '
        "equals or below zero' (magento/inventory Inventory/Model/SourceItem/Validator/"
        "StatusConsistencyValidator.php)",
    }

    def __init__(
        self,
        *,
        without: Iterable[str] = (),
        bearer_allowed: bool = False,
        two_factor: bool = True,
        resources: Iterable[str] = (SALES, SOURCE_ITEMS, SOURCE_READ, CATALOG),
    ) -> None:
        self._init_rules(without)
        self.resources = set(resources)
        """The ACL resources the integration was granted (an admin token has all)."""
        self.bearer_allowed = bearer_allowed
        self.two_factor = two_factor
        self.token_requests = 0
        self.secrets = [TOKEN, TOKEN_SECRET, CONSUMER_SECRET, ADMIN_PASSWORD]
        self._admin_tokens: set[str] = set()
        self._ids = itertools.count(1)
        self.orders: dict[int, dict[str, Any]] = {}
        self.creditmemos: dict[int, dict[str, Any]] = {}
        self.shipments: dict[int, dict[str, Any]] = {}
        self.source_items: dict[tuple[str, str], Decimal] = {}
        self.products: dict[int, dict[str, Any]] = {}
        self.reservations: dict[str, Decimal] = {}
        self.known_skus = {"SKU-PEN-BLUE", "SKU-PEN-RED", "SKU-APPLES"}
        self._fail: list[tuple[int, dict[str, str], str]] = []
        self._drop = False

    def fail_next_write(
        self, status: int, *, headers: dict[str, str] | None = None, message: str = ""
    ) -> None:
        self._fail.append((status, headers or {}, message))

    def drop_answer_to_next_write(self) -> None:
        self._drop = True

    def expire_token(self) -> None:  # pragma: no cover - integration tokens do not expire
        raise NotImplementedError

    def change_inventory_behind_our_back(self, routed: Routed) -> None:  # pragma: no cover
        raise NotImplementedError

    def stored(self, routed: Routed) -> int:
        record = routed.record
        if record.kind in ("sale", "cancel"):
            number = increment_id(routed.key)
            state = {"sale": None, "cancel": "canceled"}[record.kind]
            return sum(
                1
                for o in self.orders.values()
                if o["increment_id"] == number and state in (None, o["state"])
            )
        if record.kind in ("return", "void"):
            marker = mark_of(routed.key)
            return sum(
                1
                for m in self.creditmemos.values()
                if any(marker in c["comment"] for c in m["comments"])
            )
        assert isinstance(record, Inventory)
        return int((routed.route["source_code"], routed.skus[record.sku]) in self.source_items)

    def payments_of(self, routed: Routed) -> int:
        """Invoices paid against the order (an offline invoice marks it paid)."""
        number = increment_id(routed.key)
        return sum(
            1 for o in self.orders.values() if o["increment_id"] == number and o["total_invoiced"]
        )

    def order_total(self, routed: Routed) -> Decimal:
        """Rows plus tax less discount, as Magento totals an order; they must equal the
        grand total the order states."""
        number = increment_id(routed.key)
        (order,) = (o for o in self.orders.values() if o["increment_id"] == number)
        total = sum(
            (i["row_total"] + i["tax_amount"] - i["discount_amount"] for i in order["items"]),
            Decimal(0),
        )
        assert total == order["grand_total"], (total, order["grand_total"])
        return Decimal(total)

    def inventory_level(self, routed: Routed) -> Decimal | None:
        record = routed.record
        assert isinstance(record, Inventory)
        return self.source_items.get((routed.route["source_code"], routed.skus[record.sku]))

    def salable(self, sku: str) -> Decimal:
        """MSI's salable quantity on the one stock: its sources' quantities plus the
        reservations (negative for placed orders, positive for compensations). Orders
        saved through the repository place none."""
        on_hand = sum((q for (_, s), q in self.source_items.items() if s == sku), Decimal(0))
        return on_hand + self.reservations.get(sku, Decimal(0))

    # -- authentication -------------------------------------------------------------------

    def _refused_auth(self, request: httpx.Request) -> httpx.Response | None:
        unauthorized = _error(
            401,
            "The consumer isn't authorized to access %resources.",
            {"resources": "Magento_Sales::sales"},
        )
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            token = header.removeprefix("Bearer ")
            if token in self._admin_tokens:
                return None
            if token != TOKEN:
                return unauthorized
            if self.bearer_allowed or not self.enforces("bearer-needs-setting"):
                return None
            return unauthorized
        if header.startswith("OAuth "):
            oauth = {k: unquote(v) for k, v in re.findall(r'(\w+)="([^"]*)"', header)}
            if oauth.get("oauth_token") != TOKEN or oauth.get("oauth_consumer_key") != CONSUMER_KEY:
                return unauthorized
            signature = oauth.pop("oauth_signature", "")
            params = dict(parse_qsl(request.url.query.decode(), keep_blank_values=True))
            url = str(request.url.copy_with(query=None))
            expected = oauth1_signature(
                request.method, url, {**params, **oauth}, CONSUMER_SECRET, TOKEN_SECRET
            )
            if signature != expected and self.enforces("oauth-signature"):
                return _error(401, "The signature is invalid. Verify and try again.")
            return None
        return unauthorized

    def _admin_token(self, request: httpx.Request) -> httpx.Response:
        if self.two_factor and self.enforces("two-factor-admin-token"):
            return _error(401, "Please use the 2fa provider-specific endpoints to obtain a token.")
        body = json.loads(request.content)
        if (body.get("username"), body.get("password")) != (ADMIN_USER, ADMIN_PASSWORD):
            return _error(
                401,
                "The account sign-in was incorrect or your account is disabled temporarily. "
                "Please wait and try again later.",
            )
        self.token_requests += 1
        token = f"admin-token-{self.token_requests}-xyz"
        self._admin_tokens.add(token)
        self.secrets.append(token)
        return httpx.Response(200, json=token)

    # -- the API --------------------------------------------------------------------------

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """One request straight to the handler, as a probe sends it (bearer allowed)."""
        allowed, self.bearer_allowed = self.bearer_allowed, True
        try:
            return self.handler(
                httpx.Request(
                    method,
                    f"https://shop.test{REST}{path}",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    content=json.dumps(body).encode() if body is not None else None,
                )
            )
        finally:
            self.bearer_allowed = allowed

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        assert path.startswith(f"{REST}/"), path
        path = path.removeprefix(REST)
        if path == "/integration/admin/token":
            return self._admin_token(request)
        if refused := self._refused_auth(request):
            return refused
        header = request.headers.get("authorization", "")
        admin = header.removeprefix("Bearer ") in self._admin_tokens
        needed = SALES
        if path.startswith("/inventory/"):
            needed = SOURCE_READ if request.method == "GET" else SOURCE_ITEMS
        if path.startswith("/products"):
            needed = CATALOG  # Magento/Catalog/etc/webapi.xml: GET /V1/products
        if not admin and needed not in self.resources and self.enforces("acl-resources"):
            return _error(
                401, "The consumer isn't authorized to access %resources.", {"resources": needed}
            )
        if request.method == "GET":
            return self._read(request, path)
        if self._fail:
            status, headers, message = self._fail.pop(0)
            response = _error(status, message)
            response.headers.update(headers)
            return response
        response = self._write(path, json.loads(request.content or b"{}", parse_float=Decimal))
        if self._drop:
            self._drop = False
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    def _read(self, request: httpx.Request, path: str) -> httpx.Response:
        if m := re.fullmatch(r"/orders/(\d+)", path):
            order = self.orders.get(int(m.group(1)))
            if order is None:
                return _error(
                    404,
                    "The entity that was requested doesn't exist. Verify the entity and try again.",
                )
            return _json(order)
        filters, sorts, size, page = _search(request)
        for group in filters:
            for _, _, condition in group:
                if condition not in CONDITIONS and self.enforces("condition-types"):
                    return _error(400, f'Invalid condition type "{condition}".')
        stock = {
            key: {"sku": key[1], "source_code": key[0], "quantity": q, "status": int(q > 0)}
            for key, q in self.source_items.items()
        }
        pool = {
            "/inventory/source-items": stock,
            "/orders": self.orders,
            "/products": self.products,
            "/creditmemos": self.creditmemos,
            "/shipments": self.shipments,
        }[path]
        found = [
            row
            for row in pool.values()
            if all(
                any(
                    CONDITIONS.get(c, CONDITIONS["eq"])(_sort_value(_field(row, f)), _sort_value(v))
                    for f, v, c in group
                )
                for group in filters
            )
        ]
        for order in reversed(sorts):
            field = order["field"]
            found.sort(
                key=lambda row: _sort_value(_field(row, field)),
                reverse=order.get("direction", "ASC") == "DESC",
            )
        total = len(found)
        if size:
            found = found[(page - 1) * size : page * size]
        return _json({"items": found, "total_count": total})

    def _write(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if path == "/orders":
            return self._save_order(body["entity"])
        if m := re.fullmatch(r"/orders/(\d+)/cancel", path):
            return self._cancel(self.orders[int(m.group(1))])
        if m := re.fullmatch(r"/order/(\d+)/invoice", path):
            return self._invoice(self.orders[int(m.group(1))], body)
        if m := re.fullmatch(r"/order/(\d+)/refund", path):
            return self._refund(self.orders[int(m.group(1))], body)
        if m := re.fullmatch(r"/order/(\d+)/ship", path):
            return self._ship(self.orders[int(m.group(1))], body)
        if path == "/inventory/source-items":
            items = body["sourceItems"]
            if len(items) > INPUT_LIMIT and self.enforces("input-limit"):
                return _error(
                    400,
                    'Maximum items of type "%type" is %max',
                    {"type": "\\Magento\\InventoryApi\\Api\\Data\\SourceItemInterface", "max": 20},
                )
            for item in items:
                if item["sku"] not in self.known_skus:
                    return _error(400, "Product that you are trying to add is not exists.")
                quantity = Decimal(str(item["quantity"]))
                if (
                    quantity <= 0
                    and item.get("status") == 1
                    and self.enforces("in-stock-above-zero")
                ):
                    message = (
                        'Product cannot have "%status" "%in_stock" while product "%quantity" '
                        "equals or below zero"
                    )
                    parameters = {
                        "status": "status",
                        "in_stock": "In Stock",
                        "quantity": "quantity",
                    }
                    return _json_error(400, "Validation Failed", message, parameters)
            for item in items:
                key = (item["source_code"], item["sku"])
                self.source_items[key] = Decimal(str(item["quantity"]))
            return httpx.Response(200, json=[])
        raise AssertionError(f"unexpected POST {path}")

    def _save_order(self, entity: dict[str, Any]) -> httpx.Response:
        if self.enforces("required-fields"):
            for name in ("increment_id", "store_id", "customer_email", "items", "payment"):
                if name not in entity:
                    return _error(
                        400, '"%fieldName" is required. Enter and try again.', {"fieldName": name}
                    )
        if self.enforces("unique-increment-id") and any(
            o["increment_id"] == entity["increment_id"] and o["store_id"] == entity["store_id"]
            for o in self.orders.values()
        ):
            return _error(400, "Unique constraint violation found")
        if self.enforces("increment-id-length") and len(entity["increment_id"]) > 32:
            return _error(400, "Something went wrong while saving the order.")
        order_id = next(self._ids)
        items = [
            {"item_id": next(self._ids), "qty_invoiced": 0, "qty_refunded": 0, **i}
            for i in entity["items"]
        ]
        order = {**entity, "entity_id": order_id, "items": items, "total_invoiced": 0}
        self.orders[order_id] = order
        return _json(order)

    def _item_qty(self, item: dict[str, Any], qty: Decimal) -> Decimal:
        """The quantity Magento keeps on an invoice or credit memo item."""
        if item.get("is_qty_decimal") or not self.enforces("decimal-qty-flag"):
            return qty
        return Decimal(int(qty))

    def _cancel(self, order: dict[str, Any]) -> httpx.Response:
        """OrderManagementInterface::cancel. MSI compensates each item's open quantity
        with a positive reservation, whether or not the order ever placed one
        (magento/inventory InventorySales/Observer/CatalogInventory/
        CancelOrderItemObserver.php)."""
        if order.get("state") in ("complete", "closed", "canceled") and self.enforces(
            "cancel-state"
        ):
            return httpx.Response(200, json=False)
        for item in order["items"]:
            done = max(Decimal(str(item.get("qty_shipped", 0))), Decimal(str(item["qty_invoiced"])))
            open_qty = Decimal(str(item["qty_ordered"])) - done
            if open_qty:
                sku = item["sku"]
                self.reservations[sku] = self.reservations.get(sku, Decimal(0)) + open_qty
        order["state"] = order["status"] = "canceled"
        return httpx.Response(200, json=True)

    def _ship(self, order: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
        """ShipOrderInterface::execute: a shipment of the items named (all that remain when
        none are), each within what is left to ship."""
        refused = _error(
            400,
            "Shipment Document Validation Error(s):\nThe order does not allow a shipment "
            "to be created.",
        )
        by_id = {i["item_id"]: i for i in order["items"]}

        def left(item: dict[str, Any]) -> Decimal:
            return (
                Decimal(str(item["qty_ordered"]))
                - Decimal(str(item.get("qty_shipped", 0)))
                - Decimal(str(item.get("qty_canceled", 0)))
            )

        wanted = [
            (by_id[i["order_item_id"]], Decimal(str(i["qty"]))) for i in body.get("items") or []
        ]
        if not wanted:
            wanted = [(i, left(i)) for i in order["items"] if left(i) > 0]
        if self.enforces("ship-qty") and (
            order.get("state") == "canceled"
            or not wanted
            or any(qty <= 0 or qty > left(item) for item, qty in wanted)
        ):
            return refused
        for item, qty in wanted:
            item["qty_shipped"] = Decimal(str(item.get("qty_shipped", 0))) + qty
        shipment_id = next(self._ids)
        self.shipments[shipment_id] = {
            "entity_id": shipment_id,
            "order_id": order["entity_id"],
            "items": [{"order_item_id": i["item_id"], "qty": q} for i, q in wanted],
            "tracks": body.get("tracks") or [],
            "comments": [body["comment"]] if body.get("comment") else [],
            "source_code": ((body.get("arguments") or {}).get("extension_attributes") or {}).get(
                "source_code"
            ),
        }
        if all(left(i) <= 0 for i in order["items"]) and order.get("total_invoiced"):
            order["state"] = order["status"] = "complete"
        return httpx.Response(200, json=shipment_id)

    def _invoice(self, order: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
        assert body["capture"] is False
        for item in order["items"]:
            qty = self._item_qty(item, Decimal(str(item["qty_ordered"])))
            if qty <= 0:
                return _error(
                    400,
                    "The invoice can't be created without products. Add products and try again.",
                )
            item["qty_invoiced"] = qty
        order["total_invoiced"] = order["grand_total"]
        order["state"] = order["status"] = "complete"
        return httpx.Response(200, json=next(self._ids))

    def _refund(self, order: dict[str, Any], body: dict[str, Any]) -> httpx.Response:
        if not order["total_invoiced"] and self.enforces("creditmemo-needs-invoice"):
            return _error(400, "We can't create creditmemo for the order.")
        by_id = {i["item_id"]: i for i in order["items"]}
        lines = []
        for line in body["items"]:
            item = by_id[line["order_item_id"]]
            qty = self._item_qty(item, Decimal(str(line["qty"])))
            left = Decimal(str(item["qty_invoiced"])) - Decimal(str(item["qty_refunded"]))
            if self.enforces("refund-qty") and (qty < 0 or qty > left):
                return _error(
                    400, 'We found an invalid quantity to refund item "%1".', [item["sku"]]
                )
            lines.append((item, qty))
        total = Decimal(0)
        for item, qty in lines:
            if qty:
                # MSI compensates the reservation of refunded items it never shipped; an
                # order saved through the repository never had one, so salable rises
                # (magento/inventory#2773, github.com/magento-engcom/msi/wiki/Reservations).
                self.reservations[item["sku"]] = self.reservations.get(item["sku"], 0) + qty
            item["qty_refunded"] = Decimal(str(item["qty_refunded"])) + qty
            row = Decimal(str(item["row_total_incl_tax"])) - Decimal(str(item["discount_amount"]))
            total += row * qty / Decimal(str(item["qty_ordered"]))
        arguments = body.get("arguments") or {}
        total += Decimal(str(arguments.get("adjustment_positive", 0)))
        total -= Decimal(str(arguments.get("adjustment_negative", 0)))
        memo_id = next(self._ids)
        self.creditmemos[memo_id] = {
            "entity_id": memo_id,
            "order_id": order["entity_id"],
            "items": body["items"],
            "grand_total": total.quantize(Decimal("0.01")),
            "comments": [body["comment"]],
        }
        return httpx.Response(200, json=memo_id)
