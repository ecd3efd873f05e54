"""An in-memory Adobe Commerce (Magento 2 REST), written from the documented routes:
`POST /V1/orders` (salesOrderRepositoryV1 save, refusing a second order with the same
increment_id), `GET /V1/orders` with searchCriteria, offline invoices, credit memos by
`POST /V1/order/{id}/refund` and their list, MSI `POST /V1/inventory/source-items`
(all or nothing), bearer tokens — and the faults the contract suite injects."""

from __future__ import annotations

import itertools
import json
import re
from decimal import Decimal
from typing import Any

import httpx

from agent.contract import Inventory
from central.connectors import Routed
from central.connectors.adobe_commerce import _marker, increment_id

TOKEN = "magento-integration-token-42"


def _error(status: int, message: str, parameters: Any = None) -> httpx.Response:
    body: dict[str, Any] = {"message": message}
    if parameters is not None:
        body["parameters"] = parameters
    return httpx.Response(status, json=body)


def _criteria(request: httpx.Request) -> dict[str, str]:
    """field → value of the first filter group, as Magento reads searchCriteria."""
    fields: dict[str, str] = {}
    values: dict[str, str] = {}
    for name, value in request.url.params.multi_items():
        m = re.fullmatch(r"searchCriteria\[filter_groups\]\[0\]\[filters\]\[(\d+)\]\[(\w+)\]", name)
        assert m, f"not searchCriteria: {name}"
        if m.group(2) == "field":
            fields[m.group(1)] = value
        elif m.group(2) == "value":
            values[m.group(1)] = value
    return {fields[i]: values[i] for i in fields}


class FakeAdobeCommerce:
    def __init__(self) -> None:
        self.token_requests = 0
        self.secrets = [TOKEN]
        self._valid = {TOKEN}
        self._ids = itertools.count(1)
        self.orders: dict[int, dict[str, Any]] = {}
        self.creditmemos: dict[int, dict[str, Any]] = {}
        self.source_items: dict[tuple[str, str], Decimal] = {}
        self.known_skus = {"SKU-PEN-BLUE", "SKU-PEN-RED"}
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
        if record.kind == "sale":
            number = increment_id(routed.key)
            return sum(1 for o in self.orders.values() if o["increment_id"] == number)
        if record.kind in ("return", "void"):
            marker = _marker(routed.key)
            return sum(
                1
                for m in self.creditmemos.values()
                if any(marker in c["comment"] for c in m["comments"])
            )
        assert isinstance(record, Inventory)
        return int((routed.route["source_code"], routed.skus[record.sku]) in self.source_items)

    def inventory_level(self, routed: Routed) -> Decimal | None:
        record = routed.record
        assert isinstance(record, Inventory)
        return self.source_items.get((routed.route["source_code"], routed.skus[record.sku]))

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return _error(
                401,
                "The consumer isn't authorized to access %resources.",
                {"resources": "Magento_Sales::sales"},
            )
        path = request.url.path
        assert path.startswith("/rest/all/V1/"), path
        path = path.removeprefix("/rest/all/V1")
        if request.method == "GET":
            return self._read(request, path)
        if self._fail:
            status, headers, message = self._fail.pop(0)
            response = _error(status, message)
            response.headers.update(headers)
            return response
        response = self._write(path, json.loads(request.content))
        if self._drop:
            self._drop = False
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    def _read(self, request: httpx.Request, path: str) -> httpx.Response:
        criteria = _criteria(request)
        if path == "/orders":
            found = [
                o for o in self.orders.values() if o["increment_id"] == criteria["increment_id"]
            ]
            return httpx.Response(200, json={"items": found, "total_count": len(found)})
        if path == "/creditmemos":
            order_id = int(criteria["order_id"])
            found = [m for m in self.creditmemos.values() if m["order_id"] == order_id]
            return httpx.Response(200, json={"items": found, "total_count": len(found)})
        raise AssertionError(f"unexpected GET {path}")

    def _write(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if path == "/orders":
            entity = body["entity"]
            for name in ("increment_id", "store_id", "customer_email", "items", "payment"):
                if name not in entity:
                    return _error(
                        400, '"%fieldName" is required. Enter and try again.', {"fieldName": name}
                    )
            if any(o["increment_id"] == entity["increment_id"] for o in self.orders.values()):
                return _error(400, "Unique constraint violation found")
            if len(entity["increment_id"]) > 32:
                return _error(400, "increment_id is too long")
            order_id = next(self._ids)
            items = [{"item_id": next(self._ids), **i} for i in entity["items"]]
            order = {**entity, "entity_id": order_id, "items": items, "total_invoiced": 0}
            self.orders[order_id] = order
            return httpx.Response(200, json=order)
        if m := re.fullmatch(r"/order/(\d+)/invoice", path):
            order = self.orders[int(m.group(1))]
            assert body["capture"] is False
            order["total_invoiced"] = order["grand_total"]
            order["state"] = order["status"] = "complete"
            return httpx.Response(200, json=next(self._ids))
        if m := re.fullmatch(r"/order/(\d+)/refund", path):
            order = self.orders[int(m.group(1))]
            if not order["total_invoiced"]:
                return _error(400, "We can't create creditmemo for the order.")
            known = {i["item_id"] for i in order["items"]}
            assert all(i["order_item_id"] in known for i in body["items"])
            memo_id = next(self._ids)
            self.creditmemos[memo_id] = {
                "entity_id": memo_id,
                "order_id": order["entity_id"],
                "items": body["items"],
                "comments": [body["comment"]],
            }
            return httpx.Response(200, json=memo_id)
        if path == "/inventory/source-items":
            items = body["sourceItems"]
            for item in items:
                if item["sku"] not in self.known_skus:
                    return _error(400, "Product that you are trying to add is not exists.")
            for item in items:
                key = (item["source_code"], item["sku"])
                self.source_items[key] = Decimal(str(item["quantity"]))
            return httpx.Response(200, json=[])
        raise AssertionError(f"unexpected POST {path}")
