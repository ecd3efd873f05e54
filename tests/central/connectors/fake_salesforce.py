"""An in-memory Salesforce REST API, written from the documented shapes: the OAuth token
endpoint (client credentials on the org's My Domain, JWT bearer; `instance_url` in the
answer), SOQL `/query`, sObject rows by id and by external id (GET, upsert by PATCH,
300 Multiple Choices), and sObject Collections upsert (`allOrNone`, one result each) —
with `Sforce-Limit-Info` on every answer and the faults the contract suite injects.

Every rule in `RULES` is enforced where the real org enforces it, and can be switched
off (`without=`) so a test can show the contract suite notices.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote

import httpx

from central.connectors import Routed
from central.connectors._base import json_body

from .rules import Ruled

CLIENT_ID = "3MVG9-pos-relay"
CLIENT_SECRET = "sf-secret-9876543210"
MY_DOMAIN = "https://acme.my.salesforce.test"
LOGIN = "https://login.salesforce.test"
INSTANCE = "https://acme.my.salesforce.test"
API = "/services/data/v62.0"
COLLECTION_CAP = 200
CREATE_ONLY = {
    "Order": {"IsReductionOrder", "OriginalOrderId"},
    "OrderItem": {"Order", "OrderId", "PricebookEntryId", "OriginalOrderItemId"},
}


def _errors(status: int, code: str, message: str) -> httpx.Response:
    return httpx.Response(status, json=[{"message": message, "errorCode": code, "fields": []}])


def _failure(code: str, message: str) -> dict[str, Any]:
    return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": []}]}


def _json(status: int, body: Any) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    return httpx.Response(status, content=json_body(body), headers=headers)


def _literals(text: str) -> list[str]:
    return [
        v.replace("\\'", "'").replace("\\\\", "\\")
        for v in re.findall(r"'((?:[^'\\]|\\.)*)'", text)
    ]


def _call_options(value: str) -> dict[str, str] | None:
    """The fields of a Sforce-Call-Options value, or None when it is not as documented."""
    fields: dict[str, str] = {}
    for part in re.split(r"[;,]", value):
        name, sep, field = part.strip().partition("=")
        if not sep or name not in ("client", "defaultNamespace") or name in fields:
            return None
        if not re.fullmatch(r"[A-Za-z0-9_./-]+", field):
            return None
        fields[name] = field
    return fields


class FakeSalesforce(Ruled):
    RULES: ClassVar[dict[str, str]] = {
        "my-domain-client-credentials": "the client-credentials flow works only on the "
        "org's My Domain: 'request not supported on this domain' (help.salesforce.com, "
        "Configure the OAuth 2.0 Client Credentials Flow)",
        "jwt-audience": "the JWT bearer assertion's aud is login.salesforce.com or "
        "test.salesforce.com, not the My Domain URL (help.salesforce.com, OAuth 2.0 JWT "
        "Bearer Flow for Server-to-Server Integration)",
        "invalid-session": "a call with an expired or unknown token: 401 INVALID_SESSION_ID "
        "(developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm)",
        "api-scope": "a token of a connected app without the api scope ('Manage user data "
        "via APIs') is refused by the REST API: 401 'This session is not valid for use with "
        "the REST API' (help.salesforce.com/s/articleView?id=005226515)",
        "request-limit": "past the org's daily API request limit: 403 REQUEST_LIMIT_EXCEEDED "
        "(developer.salesforce.com/docs/atlas.en-us.salesforce_app_limits_cheatsheet.meta/"
        "salesforce_app_limits_cheatsheet/salesforce_app_limits_platform_api.htm)",
        "collection-cap": "an sObject Collections request holds at most 200 records: "
        "EXCEEDED_ID_LIMIT (developer.salesforce.com/docs/atlas.en-us.api_rest.meta/"
        "api_rest/resources_composite_sobjects_collections_upsert.htm)",
        "create-only-fields": "OrderItem.PricebookEntryId, OrderId and OriginalOrderItemId, "
        "Order.IsReductionOrder and OriginalOrderId are create-only: updating them is "
        "INVALID_FIELD_FOR_INSERT_UPDATE (developer.salesforce.com/docs/"
        "atlas.en-us.object_reference.meta/object_reference/"
        "sforce_api_objects_orderitem.htm, field properties: Create, no Update)",
        "negative-quantity": "a negative OrderItem.Quantity needs the org setting 'Enable "
        "Negative Quantity', except on a reduction order's items "
        "(help.salesforce.com, Reduction Orders; Order Settings)",
        "call-options": "Sforce-Call-Options holds name=value fields, client and "
        "defaultNamespace, separated by ';' (',' in older examples); the fake refuses any "
        "other shape with 400 so a malformed header is noticed, what an org answers to one "
        "being undocumented (developer.salesforce.com/docs/atlas.en-us.api_rest.meta/"
        "api_rest/headers_calloptions.htm)",
        "reduction-links": "a reduction order item's OriginalOrderItemId is an item of the "
        "order named in OriginalOrderId (developer.salesforce.com/docs/"
        "atlas.en-us.object_reference.meta/object_reference/"
        "sforce_api_objects_orderitem.htm)",
    }

    def __init__(
        self,
        public_key: Any = None,
        *,
        without: Iterable[str] = (),
        daily_limit: int = 100_000,
        negative_quantities: bool = False,
        scopes: str = "api",
    ) -> None:
        self._init_rules(without)
        self.public_key = public_key
        self.daily_limit = daily_limit
        self.negative_quantities = negative_quantities
        self.used = 0
        self.token_requests = 0
        self.secrets = [CLIENT_SECRET]
        self._valid: set[str] = set()
        self.app_scopes = scopes
        """The connected app's OAuth scopes: every token it issues has them."""
        self._scopes: dict[str, set[str]] = {}
        self._ids = itertools.count(1)
        self.rows: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self.created: dict[str, int] = {}
        self.entries = {
            "SKU-PEN-BLUE": "01u000000000001",
            "SKU-PEN-RED": "01u000000000002",
            "SKU-APPLES": "01u000000000003",
        }
        self._fail: list[tuple[int, dict[str, str], str]] = []
        self._drop = False
        self.formulas: dict[str, tuple[str, ...]] = {}
        """Formula fields of the org: each the sum of the fields it names."""
        self.call_clients: list[str | None] = []
        """The `client` of each API call's Sforce-Call-Options (None: no header)."""

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
        if routed.kind == "void":
            order = self.rows["Order"].get(routed.original_ref or "")
            return int(bool(order) and order["Status"] == "Cancelled")  # type: ignore[index]
        return self.created.get(routed.key, 0)

    def payments_of(self, routed: Routed) -> int:
        """Payment rows of the record: any object's row whose external id is the
        record key with a tender suffix (`KEY#t0`)."""
        prefix = f"{routed.key}#t"
        return sum(
            1
            for table in self.rows.values()
            for row in table.values()
            if any(isinstance(v, str) and v.startswith(prefix) for v in row.values())
        )

    def order_total(self, routed: Routed) -> Decimal:
        """Each item's Quantity × UnitPrice to the cent, added up, as Order.TotalAmount."""
        return sum(
            (
                (Decimal(i["Quantity"]) * Decimal(i["UnitPrice"])).quantize(
                    Decimal("0.01"), ROUND_HALF_UP
                )
                for i in self.items_of(routed.key)
            ),
            Decimal(0),
        )

    def contact(self, **match: str) -> dict[str, Any] | None:
        for row in self.rows["Contact"].values():
            if all(row.get(k) == v for k, v in match.items()):
                return row
        return None

    def items_of(self, order_key: str) -> list[dict[str, Any]]:
        order = next(o for o in self.rows["Order"].values() if o.get("POS_Key__c") == order_key)
        return [i for i in self.rows["OrderItem"].values() if i["OrderId"] == order["Id"]]

    # -- the API --------------------------------------------------------------------------

    def session(self) -> str:
        """A valid token for probes."""
        token = f"00D!probe-{len(self._valid)}"
        self._valid.add(token)
        return token

    def call(self, method: str, path: str, body: Any = None, **params: str) -> httpx.Response:
        """One API request straight to the handler, as a probe sends it."""
        return self.handler(
            httpx.Request(
                method,
                f"{INSTANCE}{API}{path}",
                params=params,
                headers={"Authorization": f"Bearer {self.session()}"},
                content=json.dumps(body).encode() if body is not None else None,
            )
        )

    def handler(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/services/oauth2/token":
            return self._token(request)
        assert str(request.url).startswith(INSTANCE), request.url
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self._valid and self.enforces("invalid-session"):
            return _errors(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if "api" not in self._scopes.get(token, {"api"}) and self.enforces("api-scope"):
            return _errors(
                401, "INVALID_SESSION_ID", "This session is not valid for use with the REST API"
            )
        options = request.headers.get("sforce-call-options")
        fields = _call_options(options) if options is not None else {}
        if fields is None and self.enforces("call-options"):
            return _errors(400, "INVALID_HEADER", f"Sforce-Call-Options: {options!r}")
        self.call_clients.append((fields or {}).get("client"))
        if self.used >= self.daily_limit and self.enforces("request-limit"):
            return _errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
        self.used += 1
        response = self._api(request, path.removeprefix(API))
        response.headers["Sforce-Limit-Info"] = f"api-usage={self.used}/{self.daily_limit}"
        return response

    def _api(self, request: httpx.Request, path: str) -> httpx.Response:
        if request.method == "GET":
            return self._read(request, path)
        if self._fail and path.startswith("/composite/"):
            status, headers, message = self._fail.pop(0)
            if status >= 429 or status == 408:
                response = _errors(status, "SERVER_UNAVAILABLE", message)
                response.headers.update(headers)
                return response
            body = json.loads(request.content, parse_float=Decimal)
            return self._collection(path, body, failing=message)
        body = json.loads(request.content, parse_float=Decimal)
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
            host = request.url.host
            if host.startswith(("login.", "test.")) and self.enforces(
                "my-domain-client-credentials"
            ):
                return httpx.Response(
                    400,
                    json={
                        "error": "unsupported_grant_type",
                        "error_description": "request not supported on this domain",
                    },
                )
            if (form.get("client_id"), form.get("client_secret")) != (CLIENT_ID, CLIENT_SECRET):
                return httpx.Response(400, json={"error": "invalid_client"})
        else:
            assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
            claims = self._verify(form["assertion"])
            if claims["aud"] != LOGIN and self.enforces("jwt-audience"):
                return httpx.Response(
                    400, json={"error": "invalid_grant", "error_description": "audience is invalid"}
                )
        self.token_requests += 1
        token = f"00D!session-{self.token_requests}"
        self._valid.add(token)
        self._scopes[token] = set(self.app_scopes.split())
        self.secrets.append(token)
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "instance_url": INSTANCE,
                "token_type": "Bearer",
                "scope": self.app_scopes,
            },
        )

    def _verify(self, assertion: str) -> dict[str, Any]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header, claims, signature = assertion.split(".")
        pad = lambda part: base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))  # noqa: E731
        self.public_key.verify(
            pad(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
        )
        body: dict[str, Any] = json.loads(pad(claims))
        assert body["iss"] == CLIENT_ID
        return body

    def _read(self, request: httpx.Request, path: str) -> httpx.Response:
        if path == "/query":
            return self._query(request.url.params["q"])
        m = re.fullmatch(r"/sobjects/(\w+)/(\w+)/(.+)", path)
        assert m, path
        obj, field, value = m.group(1), m.group(2), unquote(m.group(3))
        found = [r for r in self.rows[obj].values() if r.get(field) == value]
        if len(found) > 1:
            return httpx.Response(300, json=[f"{API}/sobjects/{obj}/{r['Id']}" for r in found])
        if not found:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        return _json(200, found[0])

    def _query(self, query: str) -> httpx.Response:
        if m := re.fullmatch(
            r"SELECT Id, Product2\.StockKeepingUnit FROM PricebookEntry WHERE Pricebook2Id = "
            r"'([^']+)' AND Product2\.StockKeepingUnit IN \((.+)\)",
            query,
        ):
            skus = _literals(m.group(2))
            rows = [
                {"Id": self.entries[s], "Product2": {"StockKeepingUnit": s}}
                for s in skus
                if s in self.entries
            ]
        elif m := re.fullmatch(
            r"SELECT ([\w., ]+) FROM (\w+) WHERE (\w+) (=|IN) (.+?)( LIMIT \d+)?", query
        ):
            fields = [f.strip() for f in m.group(1).split(",")]
            values = _literals(m.group(5))
            matching = [r for r in self.rows[m.group(2)].values() if r.get(m.group(3)) in values]
            rows = [self._select(r, fields) for r in matching]
            if m.group(6):
                rows = rows[: int(m.group(6).split()[1])]
        else:
            raise AssertionError(f"unexpected SOQL: {query}")
        return _json(200, {"totalSize": len(rows), "done": True, "records": rows})

    def _select(self, row: dict[str, Any], fields: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        sku_of = {v: k for k, v in self.entries.items()}
        for field in fields:
            if field == "Product2.StockKeepingUnit":
                out["Product2"] = {"StockKeepingUnit": sku_of.get(row.get("PricebookEntryId"))}
            elif field in self.formulas:
                # A formula field the org's admin made: the sum of the fields it names.
                parts = self._select(row, list(self.formulas[field]))
                out[field] = sum((Decimal(str(v or 0)) for v in parts.values()), Decimal(0))
            elif field == "TotalAmount":
                # A roll-up of its items' TotalPrice, each Quantity × UnitPrice to the cent.
                items = [i for i in self.rows["OrderItem"].values() if i["OrderId"] == row["Id"]]
                out[field] = sum(
                    (
                        (Decimal(str(i["Quantity"])) * Decimal(str(i["UnitPrice"]))).quantize(
                            Decimal("0.01"), ROUND_HALF_UP
                        )
                        for i in items
                    ),
                    Decimal(0),
                )
            else:
                out[field] = row.get(field)
        return out

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
        row = self.rows[m.group(1)].get(m.group(2))
        if row is None:
            return _errors(404, "NOT_FOUND", "The requested resource does not exist")
        row.update(body)
        return httpx.Response(204)

    def _collection(self, path: str, body: dict[str, Any], failing: str = "") -> httpx.Response:
        m = re.fullmatch(r"/composite/sobjects/(\w+)/(\w+)", path)
        assert m, path
        obj, field = m.group(1), m.group(2)
        assert body["allOrNone"] is False
        records = body["records"]
        if len(records) > COLLECTION_CAP and self.enforces("collection-cap"):
            return _errors(
                400,
                "EXCEEDED_ID_LIMIT",
                "record limit reached. cannot submit more than 200 records into this call",
            )
        answers = []
        for index, record in enumerate(records):
            assert record["attributes"]["type"] == obj
            if failing and index == 0:
                answers.append(_failure("FIELD_CUSTOM_VALIDATION_EXCEPTION", failing))
                continue
            answers.append(self._upsert_one(obj, field, record))
        return _json(200, answers)

    def _upsert_one(self, obj: str, field: str, record: dict[str, Any]) -> dict[str, Any]:
        key = record[field]
        existing = next((r for r in self.rows[obj].values() if r.get(field) == key), None)
        values = {k: v for k, v in record.items() if k != "attributes"}
        if existing is not None and self.enforces("create-only-fields"):
            fixed = sorted(set(values) & CREATE_ONLY.get(obj, set()))
            if fixed:
                return _failure(
                    "INVALID_FIELD_FOR_INSERT_UPDATE",
                    f"Unable to create/update fields: {', '.join(fixed)}. Please check the "
                    "security settings of this field and verify that it is read/write for "
                    "your profile or permission set.",
                )
        if obj == "OrderItem":
            refused = self._item_refused(values, existing)
            if refused:
                return refused
        if existing is None:
            row_id = f"801{next(self._ids):012d}"
            existing = self.rows[obj][row_id] = {"Id": row_id}
            if obj == "Order":
                self.created[key] = self.created.get(key, 0) + 1
            created = True
        else:
            created = False
        existing.update(values)
        return {"id": existing["Id"], "success": True, "errors": [], "created": created}

    def _item_refused(
        self, values: dict[str, Any], existing: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        if existing is None:
            parent_key = values.pop("Order")["POS_Key__c"]
            parent = next(o for o in self.rows["Order"].values() if o["POS_Key__c"] == parent_key)
            values["OrderId"] = parent["Id"]
            assert values["PricebookEntryId"] in self.entries.values()
        else:
            parent = self.rows["Order"][existing["OrderId"]]
        quantity = values.get("Quantity", existing and existing["Quantity"])
        reduction = bool(parent.get("IsReductionOrder"))
        if (
            quantity < 0
            and not reduction
            and not self.negative_quantities
            and self.enforces("negative-quantity")
        ):
            return _failure(
                "FIELD_INTEGRITY_EXCEPTION",
                "Quantity: negative quantities are not enabled for orders in this org",
            )
        original = values.get("OriginalOrderItemId")
        if reduction and existing is None and self.enforces("reduction-links"):
            item = self.rows["OrderItem"].get(original or "")
            if item is None or item["OrderId"] != parent.get("OriginalOrderId"):
                return _failure(
                    "FIELD_INTEGRITY_EXCEPTION",
                    "OriginalOrderItemId: the item is not on the original order",
                )
        return None
