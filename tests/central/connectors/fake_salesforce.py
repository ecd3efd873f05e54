"""An in-memory Salesforce REST API, written from the documented shapes: OAuth token
endpoint (client credentials and JWT bearer, `instance_url` in the answer), SOQL
`/query`, sObject rows by external id (GET, upsert by PATCH, 300 Multiple Choices),
and sObject Collections upsert (`allOrNone`, at most 200 records, one result each) —
with the faults the contract suite injects."""

from __future__ import annotations

import base64
import itertools
import json
import re
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, unquote

import httpx

from central.connectors import Routed

CLIENT_ID = "3MVG9-pos-relay"
CLIENT_SECRET = "sf-secret-9876543210"
INSTANCE = "https://acme.my.salesforce.test"
API = "/services/data/v62.0"


def _errors(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json=[{"message": message, "errorCode": code, "fields": []}])


def _rows(rows: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, json={"totalSize": len(rows), "done": True, "records": rows})


class FakeSalesforce:
    def __init__(self, public_key: Any = None) -> None:
        self.public_key = public_key
        self.token_requests = 0
        self.secrets = [CLIENT_SECRET]
        self._valid: set[str] = set()
        self._ids = itertools.count(1)
        self.rows: dict[str, dict[str, dict[str, Any]]] = {
            "Order": {},
            "OrderItem": {},
            "Contact": {},
        }
        self.created: dict[str, int] = {}
        self.entries = {"SKU-PEN-BLUE": "01u000000000001", "SKU-PEN-RED": "01u000000000002"}
        self._fail: list[tuple[int, dict[str, str], str]] = []
        self._drop = False

    # -- fault hooks and reads ------------------------------------------------------------

    def fail_next_write(
        self, status: int, *, headers: dict[str, str] | None = None, message: str = ""
    ) -> None:
        self._fail.append((status, headers or {}, message))

    def drop_answer_to_next_write(self) -> None:
        self._drop = True

    def expire_token(self) -> None:
        self._valid.clear()

    def change_inventory_behind_our_back(self, routed: Routed) -> None:  # pragma: no cover
        raise NotImplementedError

    def inventory_level(self, routed: Routed) -> Decimal | None:  # pragma: no cover
        raise NotImplementedError

    def stored(self, routed: Routed) -> int:
        return self.created.get(routed.key, 0)

    def contact(self, **match: str) -> dict[str, Any] | None:
        for row in self.rows["Contact"].values():
            if all(row.get(k) == v for k, v in match.items()):
                return row
        return None

    # -- the API --------------------------------------------------------------------------

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/services/oauth2/token":
            return self._token(request)
        assert str(request.url).startswith(INSTANCE), request.url
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self._valid:
            return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        assert path.startswith(API), path
        path = path.removeprefix(API)
        if request.method == "GET":
            return self._read(request, path)
        if self._fail and path.startswith("/composite/"):
            status, headers, message = self._fail.pop(0)
            if status >= 429 or status == 408:
                response = _errors(status, "SERVER_UNAVAILABLE", message)
                response.headers.update(headers)
                return response
            return self._collection(path, json.loads(request.content), failing=message)
        body = json.loads(request.content)
        response = (
            self._collection(path, body)
            if path.startswith("/composite/")
            else self._row(path, body)
        )
        if self._drop:
            self._drop = False
            raise httpx.ReadTimeout("answer lost", request=request)
        return response

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        if form["grant_type"] == "client_credentials":
            if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                return httpx.Response(400, json={"error": "invalid_client"})
        else:
            assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
            self._verify(form["assertion"])
        self.token_requests += 1
        token = f"00D!session-{self.token_requests}"
        self._valid.add(token)
        self.secrets.append(token)
        return httpx.Response(
            200, json={"access_token": token, "instance_url": INSTANCE, "token_type": "Bearer"}
        )

    def _verify(self, assertion: str) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header, claims, signature = assertion.split(".")
        pad = lambda part: base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))  # noqa: E731
        self.public_key.verify(
            pad(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        body = json.loads(pad(claims))
        assert body["iss"] == CLIENT_ID
        assert body["aud"] == "https://login.salesforce.test"

    def _read(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == "/query":
            query = request.url.params["q"]
            if m := re.fullmatch(
                r"SELECT Id, Product2\.StockKeepingUnit FROM PricebookEntry WHERE Pricebook2Id = "
                r"'([^']+)' AND Product2\.StockKeepingUnit IN \((.+)\)",
                query,
            ):
                skus = [s.strip().strip("'") for s in m.group(2).split(",")]
                rows = [
                    {"Id": self.entries[s], "Product2": {"StockKeepingUnit": s}}
                    for s in skus
                    if s in self.entries
                ]
                return httpx.Response(
                    200, json={"totalSize": len(rows), "done": True, "records": rows}
                )
            m = re.fullmatch(
                r"SELECT Id FROM Contact WHERE (\w+) = '((?:[^'\\]|\\.)*)' LIMIT 2", query
            )
            assert m, f"unexpected SOQL: {query}"
            value = m.group(2).replace("\\'", "'").replace("\\\\", "\\")
            rows = [
                {"Id": r["Id"]} for r in self.rows["Contact"].values() if r.get(m.group(1)) == value
            ]
            return httpx.Response(
                200, json={"totalSize": len(rows), "done": True, "records": rows[:2]}
            )
        m = re.fullmatch(r"/sobjects/(\w+)/(\w+)/(.+)", path)
        assert m, path
        obj, field, value = m.group(1), m.group(2), unquote(m.group(3))
        found = [r for r in self.rows[obj].values() if r.get(field) == value]
        if len(found) > 1:
            return httpx.Response(300, json=[f"{API}/sobjects/{obj}/{r['Id']}" for r in found])
        if not found:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        return httpx.Response(200, json=found[0])

    def _row(self, path: str, body: dict[str, Any]) -> httpx.Response:
        if m := re.fullmatch(r"/sobjects/(\w+)/(\w+)/(.+)", path):
            obj, field, value = m.group(1), m.group(2), unquote(m.group(3))
            assert field not in body, "the external id goes in the URL, not the body"
            row_id = f"003{next(self._ids):012d}"
            self.rows[obj][row_id] = {"Id": row_id, field: value, **body}
            return httpx.Response(
                201, json={"id": row_id, "success": True, "errors": [], "created": True}
            )
        m = re.fullmatch(r"/sobjects/(\w+)/(\w+)", path)
        assert m, path
        self.rows[m.group(1)][m.group(2)].update(body)
        return httpx.Response(204)

    def _collection(self, path: str, body: dict[str, Any], failing: str = "") -> httpx.Response:
        m = re.fullmatch(r"/composite/sobjects/(\w+)/(\w+)", path)
        assert m, path
        obj, field = m.group(1), m.group(2)
        assert body["allOrNone"] is False
        records = body["records"]
        if len(records) > 200:
            return _errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        answers = []
        for index, record in enumerate(records):
            assert record["attributes"]["type"] == obj
            if failing and index == 0:
                answers.append(
                    {
                        "success": False,
                        "errors": [
                            {
                                "statusCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                "message": failing,
                                "fields": [],
                            }
                        ],
                    }
                )
                continue
            if obj == "OrderItem":
                parent = record["Order"]["POS_Key__c"]
                assert any(o["POS_Key__c"] == parent for o in self.rows["Order"].values())
                assert record["PricebookEntryId"] in self.entries.values()
            key = record[field]
            existing = next((r for r in self.rows[obj].values() if r.get(field) == key), None)
            if existing is None:
                row_id = f"801{next(self._ids):012d}"
                existing = self.rows[obj][row_id] = {"Id": row_id}
                if obj == "Order":
                    self.created[key] = self.created.get(key, 0) + 1
                created = True
            else:
                created = False
            existing.update({k: v for k, v in record.items() if k != "attributes"})
            answers.append(
                {"id": existing["Id"], "success": True, "errors": [], "created": created}
            )
        return httpx.Response(200, json=answers)
