"""An in-memory commercetools, written from the documented HTTP API: client-credentials
tokens, `orders/import` (refusing a second order with the same number, as the real API
does with `DuplicateField`), order lookup by number, versioned order updates
(`addPayment`, `addReturnInfo`, `changeOrderState`), payments by key, channels by key and
inventory entries with `changeQuantity` — plus the faults the contract suite injects."""

from __future__ import annotations

import base64
import itertools
import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

import httpx

from agent.contract import Inventory, key_digest
from central.connectors import Routed
from central.connectors.commercetools import order_number

PROJECT = "acme-test"
CLIENT_ID = "pos-relay"
CLIENT_SECRET = "ct-secret-0123456789"


def _error(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={
            "statusCode": status,
            "message": message,
            "errors": [{"code": code, "message": message}],
        },
    )


def _found(resource: dict[str, Any] | None) -> httpx.Response:
    if resource is None:
        return _error(404, "ResourceNotFound", "The Resource was not found.")
    return httpx.Response(200, json=resource)


class FakeCommercetools:
    def __init__(self) -> None:
        self.token_requests = 0
        self.secrets = [CLIENT_SECRET]
        self._valid: set[str] = set()
        self._ids = itertools.count(1)
        self.orders: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.channels = {"berlin-mitte-supply": {"id": "ch-supply", "key": "berlin-mitte-supply"}}
        self.inventory: dict[str, dict[str, Any]] = {}
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
        if kind == "sale":
            return sum(
                1 for o in self.orders.values() if o["orderNumber"] == order_number(routed.key)
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

    def inventory_level(self, routed: Routed) -> Decimal | None:
        record = routed.record
        assert isinstance(record, Inventory)
        for entry in self.inventory.values():
            if entry["sku"] == routed.skus.get(record.sku, record.sku):
                return Decimal(entry["quantityOnStock"])
        return None

    # -- the API --------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/oauth/token":
            return self._token(request)
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self._valid:
            return _error(401, "invalid_token", "invalid_token")
        prefix = f"/{PROJECT}"
        assert path.startswith(prefix), path
        path = path.removeprefix(prefix)
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
        assert unquote(form["scope"]) == f"manage_project:{PROJECT}"
        self.token_requests += 1
        token = f"tok-{self.token_requests}-abcdef"
        self._valid.add(token)
        self.secrets.append(token)
        return httpx.Response(
            200, json={"access_token": token, "expires_in": 172800, "token_type": "Bearer"}
        )

    def _read(self, request: httpx.Request, path: str) -> httpx.Response:
        if m := re.fullmatch(r"/orders/order-number=(.+)", path):
            number = unquote(m.group(1))
            for order in self.orders.values():
                if order["orderNumber"] == number:
                    return httpx.Response(200, json=order)
            return _error(404, "ResourceNotFound", f"no order {number}")
        if m := re.fullmatch(r"/orders/([\w-]+)", path):
            order = self.orders.get(m.group(1))
            return _found(order)
        if m := re.fullmatch(r"/payments/key=(.+)", path):
            payment = self.payments.get(unquote(m.group(1)))
            return (
                httpx.Response(200, json=payment)
                if payment
                else _error(404, "ResourceNotFound", "")
            )
        if m := re.fullmatch(r"/channels/key=(.+)", path):
            channel = self.channels.get(unquote(m.group(1)))
            return (
                httpx.Response(200, json=channel)
                if channel
                else _error(404, "ResourceNotFound", "")
            )
        if path == "/inventory":
            where = request.url.params["where"]
            m = re.fullmatch(r'sku="(.+)" and supplyChannel\(id="(.+)"\)', where)
            assert m, where
            found = [
                e
                for e in self.inventory.values()
                if e["sku"] == m.group(1) and e["supplyChannel"]["id"] == m.group(2)
            ]
            return httpx.Response(200, json={"results": found, "total": len(found)})
        raise AssertionError(f"unexpected GET {path}")

    def _write(self, request: httpx.Request, path: str) -> httpx.Response:
        body = json.loads(request.content)
        if path == "/orders/import":
            return self._import(body)
        if m := re.fullmatch(r"/orders/([\w-]+)", path):
            return self._update_order(m.group(1), body)
        if path == "/payments":
            if body["key"] in self.payments:
                return _error(
                    400,
                    "DuplicateField",
                    f"A duplicate value '{body['key']}' exists for field 'key'.",
                )
            assert body["transactions"][0]["type"] in ("Charge", "Refund")
            payment = {"id": f"pay-{next(self._ids)}", "version": 1, **body}
            self.payments[body["key"]] = payment
            return httpx.Response(201, json=payment)
        if path == "/inventory":
            entry = {"id": f"inv-{next(self._ids)}", "version": 1, **body}
            assert isinstance(body["quantityOnStock"], int)
            self.inventory[entry["id"]] = entry
            return httpx.Response(201, json=entry)
        if m := re.fullmatch(r"/inventory/([\w-]+)", path):
            entry = self.inventory[m.group(1)]
            if body["version"] != entry["version"]:
                return _error(409, "ConcurrentModification", "Object has a different version.")
            (action,) = body["actions"]
            assert action["action"] == "changeQuantity"
            entry["quantityOnStock"] = action["quantity"]
            entry["version"] += 1
            return httpx.Response(200, json=entry)
        raise AssertionError(f"unexpected POST {path}")

    def _import(self, draft: dict[str, Any]) -> httpx.Response:
        for name in ("orderNumber", "totalPrice", "lineItems"):
            if name not in draft:
                return _error(400, "InvalidJsonInput", f"Missing required field '{name}'.")
        if any(o["orderNumber"] == draft["orderNumber"] for o in self.orders.values()):
            return _error(
                400,
                "DuplicateField",
                f"A duplicate value '\"{draft['orderNumber']}\"' exists for field 'orderNumber'.",
            )
        assert isinstance(draft["totalPrice"]["centAmount"], int)
        assert draft["store"]["typeId"] == "store"
        lines = []
        for item in draft["lineItems"]:
            assert set(item) >= {"name", "variant", "price", "quantity"}, item
            assert isinstance(item["quantity"], int)
            lines.append({"id": f"li-{next(self._ids)}", **item})
        self.imports += 1
        order = {
            "id": f"ord-{next(self._ids)}",
            "version": 1,
            **draft,
            "lineItems": lines,
            "paymentInfo": {"payments": []},
            "returnInfo": [],
        }
        self.orders[order["id"]] = order
        return httpx.Response(201, json=order)

    def _update_order(self, order_id: str, body: dict[str, Any]) -> httpx.Response:
        order = self.orders[order_id]
        if body["version"] != order["version"]:
            return _error(409, "ConcurrentModification", "Object has a different version.")
        for action in body["actions"]:
            if action["action"] == "addPayment":
                order["paymentInfo"]["payments"].append(
                    {"typeId": "payment", "id": action["payment"]["id"]}
                )
            elif action["action"] == "addReturnInfo":
                known = {li["id"] for li in order["lineItems"]}
                assert all(i["lineItemId"] in known for i in action["items"])
                order["returnInfo"].append(
                    {"items": action["items"], "returnTrackingId": action["returnTrackingId"]}
                )
            elif action["action"] == "changeOrderState":
                order["orderState"] = action["orderState"]
            else:
                raise AssertionError(action)
        order["version"] += 1
        return httpx.Response(200, json=order)
