"""Salesforce: POS sales and returns as Orders and OrderItems upserted by external id
through sObject Collections (at most 200 per call, `allOrNone: false`, so each record
gets its own verdict), and the POS customer matched to a Contact by a configurable
rule — loyalty id, then POS customer id, then email, then phone by default.

Which system owns the profile is configurable: when Salesforce owns it, a matched
Contact is only linked, never overwritten; when the POS owns it, the match is updated.
An external id that matches several records (300 Multiple Choices) is refused with the
candidates named: nothing is guessed. `REQUEST_LIMIT_EXCEEDED` and `UNABLE_TO_LOCK_ROW`
are retried. Tokens come from the OAuth client-credentials or JWT bearer flow; the
token answer's `instance_url` is where the API calls go.
"""

# ruff: noqa: S608  (SOQL here is joined from configured names and soql_quote()d values)
from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from agent.contract import Customer, CustomerRecord, Transaction

from ._base import (
    Answered,
    ConnectorError,
    DeliveryResult,
    Exchange,
    Outcome,
    Routed,
    TargetSettings,
    Traced,
    Unfit,
    outcome_for,
    retry_after_seconds,
    settle,
    transport_failure,
)

__all__ = ["SalesforceConnector", "SalesforceSettings", "dry_run_response", "soql_quote"]

COLLECTION_LIMIT = 200
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE"})
MatchKey = Literal["loyalty_id", "pos_customer_id", "email", "phone"]
_DEFAULT_RULE: tuple[MatchKey, ...] = ("loyalty_id", "pos_customer_id", "email", "phone")


class SalesforceSettings(TargetSettings):
    type: Literal["salesforce"] = "salesforce"
    kinds: list[str] = Field(
        default_factory=lambda: ["sale", "return", "customer"],
        description="Record kinds sent here.",
    )
    login_url: str = Field(
        default="https://login.salesforce.com", pattern=r"^https?://", description="OAuth host."
    )
    api_version: str = Field(
        default="v62.0", pattern=r"^v\d+\.\d$", description="REST API version."
    )
    auth_flow: Literal["client_credentials", "jwt"] = Field(
        default="client_credentials", description="OAuth flow."
    )
    client_id: str = Field(min_length=1, description="Connected app consumer key.")
    client_secret: SecretStr | None = Field(default=None, description="Consumer secret.")
    client_secret_file: str | None = Field(default=None, description="File holding it.")
    username: str = Field(default="", description="Integration user (JWT flow).")
    private_key_file: str | None = Field(default=None, description="PEM key (JWT flow).")
    account_id: str = Field(default="", description="Account of orders without a customer.")
    order_object: str = Field(default="Order", description="Order sObject.")
    order_external_id: str = Field(default="POS_Key__c", description="Order external id field.")
    order_item_object: str = Field(default="OrderItem", description="Order item sObject.")
    order_item_external_id: str = Field(
        default="POS_Line_Key__c", description="Order item external id field."
    )
    order_status: str = Field(default="Draft", description="Status of new orders.")
    order_location_field: str = Field(
        default="",
        description="Order field that takes the store's `location` route (e.g. "
        "Store_Location__c); empty: not sent.",
    )
    customer_object: str = Field(default="Contact", description="Customer sObject.")
    match_rule: list[MatchKey] = Field(
        default_factory=lambda: list(_DEFAULT_RULE),
        description="How a POS customer is matched, in order.",
    )
    match_fields: dict[str, str] = Field(
        default_factory=lambda: {
            "loyalty_id": "Loyalty_Id__c",
            "pos_customer_id": "POS_Customer_Id__c",
            "email": "Email",
            "phone": "Phone",
        },
        description="The customer object's field for each match key; the first two are "
        "external id fields.",
    )
    profile_owner: Literal["salesforce", "pos"] = Field(
        default="salesforce",
        description="salesforce: link to a matched Contact, never overwrite it; "
        "pos: update it from the POS.",
    )

    def missing(self) -> list[str]:
        if self.dry_run:
            return []
        if self.auth_flow == "jwt":
            return [k for k in ("username", "private_key_file") if not getattr(self, k)]
        return [] if self.client_secret else ["client_secret_file"]


def soql_quote(value: str) -> str:
    """A SOQL string literal: backslash and quote escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SalesforceConnector:
    name = "salesforce"
    required_route: tuple[str, ...] = ("price_book",)

    def __init__(
        self,
        settings: SalesforceSettings,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._http = Traced(client, keep_full=settings.dry_run)
        self._clock = clock
        self._token: str | None = None
        self._instance = ""
        self._entries: dict[tuple[str, str], str] = {}

    async def aclose(self) -> None:
        return None

    # -- auth -----------------------------------------------------------------------------

    def _assertion(self) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        if not self._s.private_key_file:
            raise Unfit("the JWT flow needs private_key_file")
        key = serialization.load_pem_private_key(
            Path(self._s.private_key_file).read_bytes(), password=None
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        header = _b64(json.dumps({"alg": "RS256"}).encode())
        claims = {
            "iss": self._s.client_id,
            "sub": self._s.username,
            "aud": self._s.login_url.rstrip("/"),
            "exp": int(self._clock()) + 180,
        }
        body = _b64(json.dumps(claims).encode())
        signature = key.sign(f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{header}.{body}.{_b64(signature)}"

    async def _bearer(self, fresh: bool) -> str:
        if self._token is None or fresh:
            if self._s.auth_flow == "jwt":
                form = {
                    "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                    "assertion": self._assertion(),
                }
            else:
                secret = self._s.client_secret.get_secret_value() if self._s.client_secret else ""
                form = {
                    "grant_type": "client_credentials",
                    "client_id": self._s.client_id,
                    "client_secret": secret,
                }
            response = await self._http.request(
                "POST", f"{self._s.login_url.rstrip('/')}/services/oauth2/token", None, data=form
            )
            if response.status_code != 200:
                raise _answer(response, f"token refused: {response.status_code}")
            body = response.json()
            self._token = str(body["access_token"])
            self._instance = str(body["instance_url"]).rstrip("/")
        return self._token

    async def _api(
        self, method: str, path: str, trace: list[Exchange], **kwargs: Any
    ) -> httpx.Response:
        await self._bearer(False)  # the instance URL comes with the token
        url = f"{self._instance}/services/data/{self._s.api_version}{path}"
        return await self._http.authorized(method, url, trace, self._bearer, **kwargs)

    # -- the seam -------------------------------------------------------------------------

    async def deliver(self, records: Sequence[Routed]) -> DeliveryResult:
        result = DeliveryResult()
        orders: list[tuple[Routed, dict[str, Any], list[dict[str, Any]], list[Exchange]]] = []
        for routed in records:
            trace: list[Exchange] = []
            try:
                if isinstance(routed.record, CustomerRecord):
                    contact = await self._contact(routed.record.customer, trace)
                    if contact is None:
                        raise Unfit("the customer has nothing the match rule can use")
                    result.accepted.append(
                        Outcome(routed.id, status=200, ref=contact, exchanges=trace)
                    )
                    continue
                order, items = await self._prepare(routed, trace)
            except (ConnectorError, httpx.HTTPError) as exc:
                settle(result, routed, trace, exc)
            else:
                orders.append((routed, order, items, trace))
        for start in range(0, len(orders), COLLECTION_LIMIT):
            result.extend(await self._upsert_orders(orders[start : start + COLLECTION_LIMIT]))
        return result

    async def _prepare(
        self, routed: Routed, trace: list[Exchange]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        record = routed.record
        if not isinstance(record, Transaction) or record.kind not in ("sale", "return"):
            raise Unfit(f"Salesforce takes sales and returns, not {record.kind}")
        contact = await self._contact(record.customer, trace) if record.customer else None
        account = self._s.account_id
        if not account:
            raise Unfit("orders need an account: set account_id for this target")
        order: dict[str, Any] = {
            "attributes": {"type": self._s.order_object},
            self._s.order_external_id: routed.key,
            "AccountId": account,
            "EffectiveDate": record.business_date.isoformat(),
            "Status": self._s.order_status,
            "Pricebook2Id": routed.route["price_book"],
            "Description": f"POS {record.kind} {record.store}/{record.register or '-'}/"
            f"{record.transaction_id}",
        }
        if contact:
            order["BillToContactId"] = contact
        if self._s.order_location_field:
            location = routed.route.get("location")
            if not location:
                raise Unfit(f"store {record.store} has no salesforce.location in [central.stores]")
            order[self._s.order_location_field] = location
        if record.kind == "return" and routed.original_ref:
            order["Description"] += f" returning {routed.original_ref}"
        entries = await self._pricebook_entries(routed, record, trace)
        items = []
        for line in record.lines:
            if line.voided or not line.sku:
                continue
            sku = routed.skus.get(line.sku, line.sku)
            unit = line.unit_price if line.unit_price is not None else line.amount / line.quantity
            items.append(
                {
                    "attributes": {"type": self._s.order_item_object},
                    self._s.order_item_external_id: f"{routed.key}#{line.number}",
                    "Order": {self._s.order_external_id: routed.key},
                    "PricebookEntryId": entries[sku],
                    "Quantity": float(line.quantity),
                    "UnitPrice": float(abs(unit)),
                }
            )
        return order, items

    async def _pricebook_entries(
        self, routed: Routed, record: Transaction, trace: list[Exchange]
    ) -> dict[str, str]:
        book = routed.route["price_book"]
        wanted = {routed.skus.get(line.sku, line.sku) for line in record.lines if line.sku}
        missing = sorted(s for s in wanted if (book, s) not in self._entries)
        if missing:
            skus = ", ".join(soql_quote(s) for s in missing)
            query = (
                "SELECT Id, Product2.StockKeepingUnit FROM PricebookEntry "
                f"WHERE Pricebook2Id = {soql_quote(book)} "
                f"AND Product2.StockKeepingUnit IN ({skus})"
            )
            response = await self._api("GET", "/query", trace, params={"q": query})
            if response.status_code != 200:
                raise _answer(response)
            for row in response.json().get("records", []):
                self._entries[(book, row["Product2"]["StockKeepingUnit"])] = row["Id"]
        unknown = sorted(s for s in wanted if (book, s) not in self._entries)
        if unknown:
            raise Unfit(f"no price book entry in {book} for SKU {', '.join(unknown)}")
        return {s: self._entries[(book, s)] for s in wanted}

    # -- customers ------------------------------------------------------------------------

    async def _contact(self, customer: Customer, trace: list[Exchange]) -> str | None:
        """The matched or created Contact's id, by the configured rule."""
        obj = self._s.customer_object
        profile = {
            k: v
            for k, v in {
                "FirstName": customer.first_name,
                "LastName": customer.last_name or "POS customer",
                self._s.match_fields["email"]: customer.email,
                self._s.match_fields["phone"]: customer.phone,
            }.items()
            if v
        }
        for key in self._s.match_rule:
            value = getattr(customer, key)
            if not value:
                continue
            field = self._s.match_fields[key]
            if key in ("loyalty_id", "pos_customer_id"):
                path = f"/sobjects/{obj}/{field}/{quote(value, safe='')}"
                found = await self._api("GET", path, trace)
                if found.status_code == 300:
                    raise Unfit(f"{field} {key} matches several {obj} records: {_ids(found)}")
                if found.status_code == 200:
                    contact = str(found.json()["Id"])
                    if self._s.profile_owner == "pos":
                        await self._patch(f"/sobjects/{obj}/{contact}", profile, trace)
                    return contact
                if found.status_code != 404:
                    raise _answer(found)
                # Upsert by the external id: creates the Contact under that id.
                created = await self._api("PATCH", path, trace, json=profile)
                if created.status_code not in (200, 201):
                    raise _answer(created)
                return str(created.json()["id"])
            query = f"SELECT Id FROM {obj} WHERE {field} = {soql_quote(value)} LIMIT 2"
            response = await self._api("GET", "/query", trace, params={"q": query})
            if response.status_code != 200:
                raise _answer(response)
            rows = response.json().get("records", [])
            if len(rows) > 1:
                ids = ", ".join(r["Id"] for r in rows)
                raise Unfit(f"{key} matches several {obj} records: {ids}")
            if rows:
                contact = str(rows[0]["Id"])
                if self._s.profile_owner == "pos":
                    await self._patch(f"/sobjects/{obj}/{contact}", profile, trace)
                return contact
        return None

    async def _patch(self, path: str, body: dict[str, Any], trace: list[Exchange]) -> None:
        response = await self._api("PATCH", path, trace, json=body)
        if response.status_code not in (200, 204):
            raise _answer(response)

    # -- orders ---------------------------------------------------------------------------

    async def _upsert(
        self, obj: str, field: str, rows: list[dict[str, Any]], trace: list[Exchange]
    ) -> httpx.Response:
        return await self._api(
            "PATCH",
            f"/composite/sobjects/{obj}/{field}",
            trace,
            json={"allOrNone": False, "records": rows},
        )

    async def _upsert_orders(
        self, batch: list[tuple[Routed, dict[str, Any], list[dict[str, Any]], list[Exchange]]]
    ) -> DeliveryResult:
        result = DeliveryResult()
        shared: list[Exchange] = []
        try:
            orders = [order for _, order, _, _ in batch]
            response = await self._upsert(
                self._s.order_object, self._s.order_external_id, orders, shared
            )
        except Answered as refused:
            for routed, _, _, trace in batch:
                result.add(*outcome_for(routed, refused.response, trace + shared, refused.reason))
            return result
        except httpx.HTTPError as exc:
            for routed, _, _, trace in batch:
                result.retry.append(transport_failure(routed, exc, trace + shared))
            return result
        if response.status_code != 200:
            for routed, _, _, trace in batch:
                result.add(*outcome_for(routed, response, trace + shared, _reason(response)))
            return result
        placed = []
        for (routed, _, items, trace), answer in zip(batch, response.json(), strict=True):
            verdict = _verdict(answer)
            if verdict is None:
                placed.append((routed, items, trace, str(answer["id"])))
            else:
                wait = retry_after_seconds(response) if verdict[0] == "retry" else None
                outcome = Outcome(
                    routed.id,
                    reason=verdict[1],
                    status=_STATUS[verdict[0]],
                    exchanges=trace + shared,
                    retry_after=wait,
                )
                result.add(verdict[0], outcome)
        rows = [item for _, items, _, _ in placed for item in items]
        item_answers: list[dict[str, Any]] = []
        for start in range(0, len(rows), COLLECTION_LIMIT):
            try:
                items_response = await self._upsert(
                    self._s.order_item_object,
                    self._s.order_item_external_id,
                    rows[start : start + COLLECTION_LIMIT],
                    shared,
                )
            except httpx.HTTPError as exc:
                for routed, _, trace, _ in placed:
                    result.retry.append(transport_failure(routed, exc, trace + shared))
                return result
            if items_response.status_code != 200:
                for routed, _, trace, _ in placed:
                    result.add(*outcome_for(routed, items_response, trace + shared))
                return result
            item_answers += items_response.json()
        position = 0
        for routed, items, trace, order_id in placed:
            answers = item_answers[position : position + len(items)]
            position += len(items)
            failed = [v for v in (_verdict(a) for a in answers) if v is not None]
            if failed:
                worst: Literal["retry", "rejected"] = (
                    "retry" if any(v[0] == "retry" for v in failed) else "rejected"
                )
                reason = "; ".join(v[1] for v in failed)
                outcome = Outcome(
                    routed.id,
                    reason=f"order items: {reason}",
                    status=_STATUS[worst],
                    exchanges=trace + shared,
                )
                result.add(worst, outcome)
            else:
                outcome = Outcome(routed.id, status=200, ref=order_id, exchanges=trace + shared)
                result.accepted.append(outcome)
        return result


# A collection answers 200 and puts each record's errors in its own result; the outcome
# carries the status the same error would have had alone.
_STATUS = {"retry": 503, "rejected": 400}


def _verdict(answer: dict[str, Any]) -> tuple[Literal["retry", "rejected"], str] | None:
    """None for a success; else the verdict and `statusCode: message` of its errors."""
    if answer.get("success"):
        return None
    errors = answer.get("errors") or []
    reason = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors) or "failed"
    codes = {e.get("statusCode") for e in errors}
    return ("retry" if codes & RETRYABLE_CODES else "rejected"), reason


def _ids(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, list):
        return ", ".join(str(url).rsplit("/", 1)[-1] for url in body)
    return str(body)


def _answer(response: httpx.Response, reason: str = "") -> Answered:
    return Answered(response, reason or _reason(response))


def _reason(response: httpx.Response) -> str:
    request = response.request
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, list) and body and isinstance(body[0], dict):
        detail = "; ".join(f"{e.get('errorCode')}: {e.get('message')}" for e in body)
    else:
        detail = response.text[:200]
    return f"{request.method} {request.url.path} answered {response.status_code}: {detail}"


def dry_run_response(request: httpx.Request) -> httpx.Response:
    """What a dry run pretends Salesforce answered: a token, prices for every SKU asked
    for, no matching contact, and every upserted record created."""
    path = request.url.path
    if path.endswith("/services/oauth2/token"):
        return httpx.Response(
            200, json={"access_token": "dry-run", "instance_url": "https://dry-run.invalid"}
        )
    if path.endswith("/query"):
        query = request.url.params.get("q", "")
        if "PricebookEntry" in query:
            skus = query.split("IN (", 1)[1].rstrip(")").split(", ")
            rows = [
                {"Id": f"01u-dry-{i}", "Product2": {"StockKeepingUnit": s.strip("'")}}
                for i, s in enumerate(skus)
            ]
            return httpx.Response(200, json={"totalSize": len(rows), "records": rows})
        return httpx.Response(200, json={"totalSize": 0, "records": []})
    if request.method == "GET":
        return httpx.Response(404, json=[{"errorCode": "NOT_FOUND", "message": "dry run"}])
    if "/composite/sobjects/" in path:
        rows = json.loads(request.content)["records"]
        answers = [
            {"id": f"dry-{i}", "success": True, "errors": [], "created": True}
            for i, _ in enumerate(rows)
        ]
        return httpx.Response(200, json=answers)
    return httpx.Response(201, json={"id": "dry-run", "success": True, "errors": []})
