"""Adobe Commerce (Magento 2 REST): stock levels as MSI source items, POS sales as
orders, returns and voids as offline credit memos, a basket abandoned before tender as
an order saved in state `canceled`, never invoiced.

Why the order repository (`POST /V1/orders`) and not the cart flow: a POS sale is
already complete — priced, taxed and paid at the till. The cart flow
(`/V1/carts/…/payment-information`) runs checkout again: Magento re-prices and re-taxes
the items, needs a configured payment method per tender, and places a stock reservation
that the next count from the store would then contradict. The repository stores the
order as the POS states it (totals, tax, split tenders in the payment's additional
information); an offline invoice (`POST /V1/order/{id}/invoice`, `capture: false`)
marks it paid, which also makes credit memos possible. Returns and voids are credit
memos (`POST /V1/order/{id}/refund`, offline) for the POS refund amount; a void refunds
everything, because an invoiced order can no longer be cancelled. By default a memo
refunds that amount as an adjustment and names the returned items in its comment: a
memo with item quantities makes MSI write a compensating reservation for items it never
shipped, and the salable quantity would drift above the POS's own stock level, which
reaches Magento as source items. For the same reason a cancelled basket is saved as
canceled rather than saved and then cancelled (`POST /V1/orders/{id}/cancel`): the
cancellation would compensate a reservation the order never placed.

Stock movements (deltas) are written as the level they lead to, computed from the last
level the relay confirmed for the item, so a resend writes the same level and never
counts twice (`_stock`).

Amounts go as the POS computed them, order and `base_*` alike (the POS currency is the
store's base currency), as exact decimals. A weighed line keeps its decimal quantity with
`is_qty_decimal` set on the order item: without it, invoices and credit memos cast the
quantity to a whole number. A credit memo carries the POS refund amount: what Magento
would compute from the items is corrected by an adjustment.

Least access: the integration needs the ACL resources of the routes it calls and no
others: Sales (`Magento_Sales::sales` with the order, invoice and credit memo actions
under it, and the ship and cancel actions where it takes fulfilments and is an order
source) for sales, returns, voids, cancels and fulfilments, and
`Magento_InventoryApi::stock_source_item_assign` (source items) for inventory, and
`Magento_InventoryApi::source` where stores send movements (the quantity is read before
the first); a missing one is named in the refusal.

Authentication: an integration's access token is sent OAuth 1.0a-signed (HMAC-SHA256),
or as a bearer token where the shop allows that (Stores > Configuration > Services >
OAuth > "Allow OAuth Access Tokens to be used as standalone Bearer tokens"); an admin
user's token only where two-factor authentication is off.

What a store did with an online order (a `fulfillment`) becomes a shipment or a
cancellation of the order it came from (`_fulfilment`).

Correlation: the Magento REST API documents no request header for a caller's
correlation id, so none is sent; the record's id is written into the order's status
history comment and the credit memo's comment, beside the record key, and every call is
in the relay's audit trail under the record.

Idempotency: the order's `increment_id` is derived from the record key (`P` + a digest,
within Magento's 32 characters) and looked up before creating after a possible earlier
attempt; a credit memo carries `tillbridge:<digest>` in its comment and is looked for
among the order's credit memos before refunding. Source items are absolute quantities,
sent at most 20 per request (the default input limit since 2.4.3); a batch Magento
refuses is split so each record gets its own verdict.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from contract import Fulfillment, Inventory, Transaction, currency_exponent

from .._base import (
    Answered,
    ConnectorError,
    DeliveryResult,
    Exchange,
    Outcome,
    Routed,
    TargetSettings,
    Traced,
    Unfit,
    deliver_each,
    for_location,
    outcome_for,
    settle,
    transport_failure,
)
from ._fulfilment import Fulfilments
from ._orders import increment_id, mark_of, order_entity
from ._stock import BEFORE, level_in, level_ref, noted_ref, source_item_query

__all__ = [
    "AdobeCommerceConnector",
    "AdobeCommerceSettings",
    "dry_run_response",
    "increment_id",
    "oauth1_signature",
]

ADMIN_TOKEN_SECONDS = 4 * 3600.0
TWO_FACTOR = "2fa provider-specific endpoints"


class AdobeCommerceSettings(TargetSettings):
    type: Literal["adobe_commerce"] = "adobe_commerce"
    base_url: str = Field(
        pattern=r"^https?://", description="Shop URL; the API is {base_url}/rest."
    )
    store_code: str = Field(default="all", description="Store code in /rest/{store_code}/V1.")
    token: SecretStr | None = Field(default=None, description="Integration access token.")
    token_file: str | None = Field(default=None, description="File holding the token.")
    integration_auth: Literal["oauth1", "bearer"] = Field(
        default="oauth1",
        description="oauth1: sign each call with the integration's four credentials; "
        "bearer: send the access token alone (only where the shop allows it).",
    )
    consumer_key: str = Field(default="", description="Integration consumer key (oauth1).")
    consumer_secret: SecretStr | None = Field(default=None, description="Consumer secret.")
    consumer_secret_file: str | None = Field(default=None, description="File holding it.")
    token_secret: SecretStr | None = Field(
        default=None, description="Integration access token secret (oauth1)."
    )
    token_secret_file: str | None = Field(default=None, description="File holding it.")
    username: str | None = Field(default=None, description="Admin user, when no token is given.")
    password: SecretStr | None = Field(default=None, description="Admin password.")
    password_file: str | None = Field(default=None, description="File holding the password.")
    source_items_batch: int = Field(
        default=20,
        ge=1,
        le=500,
        description="Source items per request; Magento takes at most 20 list entries "
        "per request unless the shop raised its input limit.",
    )
    guest_email: str = Field(
        default="pos-sales@example.invalid",
        description="customer_email of POS orders without a customer (Magento requires one).",
    )
    return_to_stock: bool = Field(
        default=False,
        description="With refund_items: put returned items back to stock with the memo.",
    )
    refund_items: bool = Field(
        default=False,
        description="Credit memos list the returned items and quantities. Magento then "
        "writes a compensating MSI reservation for items it never shipped, which lifts the "
        "salable quantity above the POS's level (magento/inventory#2773); off: the memo "
        "refunds the POS amount as an adjustment and names the items in its comment, and "
        "stock follows the POS's levels.",
    )

    def missing(self) -> list[str]:
        if self.dry_run or (self.username and self.password and not self.token):
            return []
        if self.token:
            if self.integration_auth == "bearer":
                return []
            wanted = {
                "consumer_key": self.consumer_key,
                "consumer_secret_file": self.consumer_secret,
                "token_secret_file": self.token_secret,
            }
            return [k for k, v in wanted.items() if not v]
        return ["token_file"] if not self.username else ["password_file"]


class AdobeCommerceConnector:
    name = "adobe_commerce"
    required_route: tuple[str, ...] = ("source_code", "store_id")

    def __init__(
        self,
        settings: AdobeCommerceSettings,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._s = settings
        self._http = Traced(client, keep_full=settings.dry_run)
        self._clock = clock
        self._wall = wall
        self._rest = f"{settings.base_url.rstrip('/')}/rest/{settings.store_code}/V1"
        self._static = settings.token.get_secret_value() if settings.token else None
        self._admin: str | None = None
        self._stated: dict[int, Decimal] = {}
        """Per record id: the grand total Magento answered for a sale (the POS's sign)."""
        self._admin_until = 0.0
        self._fulfilments = Fulfilments(self._send, _answer, _read, dry_run=settings.dry_run)

    async def aclose(self) -> None:
        return None

    async def _auth(self, renew: bool) -> str:
        if self._static is not None:
            return self._static
        if renew or self._admin is None or self._clock() >= self._admin_until:
            password = self._s.password.get_secret_value() if self._s.password else ""
            response = await self._http.request(
                "POST",
                f"{self._rest}/integration/admin/token",
                None,  # the answer is the token itself: it never goes into the audit
                json={"username": self._s.username or "", "password": password},
            )
            if response.status_code != 200:
                if TWO_FACTOR in response.text:
                    raise _answer(
                        response,
                        "admin tokens are refused while two-factor authentication is on: "
                        "use an integration's token (token_file) instead of username and "
                        "password",
                    )
                raise _answer(response, f"admin token refused: {response.status_code}")
            self._admin = str(response.json())
            self._admin_until = self._clock() + ADMIN_TOKEN_SECONDS - 300
        return self._admin

    async def _send(
        self, method: str, path: str, trace: list[Exchange], **kwargs: Any
    ) -> httpx.Response:
        url = f"{self._rest}{path}"
        if self._static is not None and self._s.integration_auth == "oauth1":
            params: Mapping[str, str] = kwargs.pop("params", None) or {}
            headers = {"Authorization": self._oauth1(method, url, params)}
            return await self._http.request(
                method, url, trace, params=params, headers=headers, **kwargs
            )
        return await self._http.authorized(method, url, trace, self._auth, **kwargs)

    def _oauth1(self, method: str, url: str, params: Mapping[str, str]) -> str:
        """An OAuth 1.0a `Authorization` header (RFC 5849, HMAC-SHA256) for one call with
        the integration's consumer and access token credentials."""
        consumer = self._s.consumer_secret.get_secret_value() if self._s.consumer_secret else ""
        secret = self._s.token_secret.get_secret_value() if self._s.token_secret else ""
        oauth = {
            "oauth_consumer_key": self._s.consumer_key,
            "oauth_nonce": secrets.token_hex(16),
            "oauth_signature_method": "HMAC-SHA256",
            "oauth_timestamp": str(int(self._wall())),
            "oauth_token": self._static or "",
            "oauth_version": "1.0",
        }
        oauth["oauth_signature"] = oauth1_signature(
            method, url, {**params, **oauth}, consumer, secret
        )
        return "OAuth " + ", ".join(f'{k}="{_pct(v)}"' for k, v in sorted(oauth.items()))

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authorised call to the shop's REST API outside delivery: the order source
        reads orders with the target's credentials."""
        return await self._send(method, path, [], **kwargs)

    # -- the seam -------------------------------------------------------------------------

    async def deliver(self, records: Sequence[Routed]) -> DeliveryResult:
        result = DeliveryResult()
        stock = [r for r in records if isinstance(r.record, Inventory)]
        for start in range(0, len(stock), self._s.source_items_batch):
            batch = stock[start : start + self._s.source_items_batch]
            result.extend(await self._source_items(batch))
        transactions = (r for r in records if not isinstance(r.record, Inventory))
        return await deliver_each(transactions, self._transaction, self._stated, result)

    # -- inventory ------------------------------------------------------------------------

    async def _source_items(self, batch: Sequence[Routed]) -> DeliveryResult:
        result = DeliveryResult()
        items: list[dict[str, Any]] = []
        refs: dict[int, str] = {}
        sendable: list[Routed] = []
        for routed in batch:
            record = routed.record
            assert isinstance(record, Inventory)
            sku = routed.skus.get(record.sku, record.sku)
            source = for_location(routed.route, "source_code", record.location)
            level = record.quantity
            if record.mode == "delta":
                base = level_in(routed.level_ref, source, sku)
                if base is None and routed.noted and routed.noted.startswith(BEFORE):
                    base = level_in(routed.noted.removeprefix(BEFORE), source, sku)
                if base is None:
                    await self._note_level(routed, source, sku, result)
                    continue
                level = base + record.quantity
            items.append(
                {
                    "sku": sku,
                    "source_code": source,
                    "quantity": level,
                    # Magento refuses "In Stock" at a quantity of zero or less.
                    "status": 1 if level > 0 else 0,
                }
            )
            refs[routed.id] = level_ref(source, sku, level)
            sendable.append(routed)
        if not sendable:
            return result
        trace: list[Exchange] = []
        try:
            response = await self._send(
                "POST", "/inventory/source-items", trace, json={"sourceItems": items}
            )
        except Answered as refused:
            for routed in sendable:
                result.add(*outcome_for(routed, refused.response, list(trace), refused.reason))
            return result
        except httpx.HTTPError as exc:
            for routed in sendable:
                result.retry.append(transport_failure(routed, exc, list(trace)))
            return result
        if response.status_code == 400 and len(sendable) > 1:
            # All or nothing: send one by one, so only the bad item is refused.
            for routed in sendable:
                result.extend(await self._source_items([routed]))
            return result
        for routed in sendable:
            reason = _reason_or_empty(response)
            verdict, outcome = outcome_for(routed, response, list(trace), reason)
            if verdict == "accepted":
                outcome.ref = refs[routed.id]
            result.add(verdict, outcome)
        return result

    async def _note_level(
        self, routed: Routed, source: str, sku: str, result: DeliveryResult
    ) -> None:
        """Before the first movement of an item the relay never confirmed a level of:
        read the quantity Magento holds and note it (a hold, no write; see `_stock`)."""
        trace: list[Exchange] = []
        try:
            response = await self._send(
                "GET", "/inventory/source-items", trace, params=source_item_query(source, sku)
            )
            if response.status_code != 200:
                raise _answer(response)
        except (ConnectorError, httpx.HTTPError) as exc:
            settle(result, routed, trace, exc)
            return
        found = [
            i
            for i in _read(response).get("items") or []
            if (i.get("source_code"), i.get("sku")) == (source, sku)
        ]
        quantity = _dec(found[0].get("quantity")) if found else Decimal(0)
        outcome = Outcome(
            routed.id,
            reason=f"noted the quantity Magento holds ({quantity}) before the first movement",
            status=response.status_code,
            ref=noted_ref(source, sku, quantity),
            retry_after=0,
            exchanges=trace,
        )
        outcome.hold = True
        result.retry.append(outcome)

    # -- sales, returns, voids ------------------------------------------------------------

    async def _transaction(self, routed: Routed, trace: list[Exchange]) -> str:
        record = routed.record
        if isinstance(record, Fulfillment):
            return await self._fulfilments.post(routed, record, trace)
        if not isinstance(record, Transaction):
            raise Unfit(f"Adobe Commerce takes no {record.kind} records")
        if record.kind in ("sale", "cancel") or (
            record.kind == "return" and not routed.original_ref
        ):
            return await self._sale(routed, record, trace)
        if record.kind in ("return", "void"):
            return await self._credit_memo(routed, record, trace)
        raise Unfit(f"Adobe Commerce takes no {record.kind} transactions")  # pragma: no cover

    async def _find_order(self, number: str, trace: list[Exchange]) -> dict[str, Any] | None:
        params = {
            "searchCriteria[filter_groups][0][filters][0][field]": "increment_id",
            "searchCriteria[filter_groups][0][filters][0][value]": number,
            "searchCriteria[filter_groups][0][filters][0][condition_type]": "eq",
        }
        response = await self._send("GET", "/orders", trace, params=params)
        if response.status_code != 200:
            raise _answer(response)
        items = _read(response).get("items") or []
        return items[0] if items else None

    def _entity(self, routed: Routed, record: Transaction) -> dict[str, Any]:
        return order_entity(routed, record, self._s.guest_email)

    async def _sale(self, routed: Routed, record: Transaction, trace: list[Exchange]) -> str:
        number = increment_id(routed.key)
        order = await self._find_order(number, trace) if routed.attempts else None
        if order is None:
            response = await self._send("POST", "/orders", trace, json=self._entity(routed, record))
            if response.status_code != 200:
                raise _answer(response)
            order = _read(response)
        if order.get("grand_total") is not None:
            sign = -1 if record.total < 0 else 1
            self._stated[routed.id] = sign * _dec(order["grand_total"])
        invoiced = Decimal(str(order.get("total_invoiced") or 0))
        if record.kind != "cancel" and invoiced < Decimal(str(order.get("grand_total") or 0)):
            response = await self._send(
                "POST",
                f"/order/{order['entity_id']}/invoice",
                trace,
                json={"capture": False, "notify": False},
            )
            if response.status_code != 200:
                raise _answer(response)
        return number

    async def _credit_memo(self, routed: Routed, record: Transaction, trace: list[Exchange]) -> str:
        assert routed.original_ref is not None
        order = await self._find_order(routed.original_ref, trace)
        if order is None:
            raise Unfit(f"original order {routed.original_ref} is not in Adobe Commerce")
        order_id = order["entity_id"]
        marker = mark_of(routed.key)
        params = {
            "searchCriteria[filter_groups][0][filters][0][field]": "order_id",
            "searchCriteria[filter_groups][0][filters][0][value]": str(order_id),
        }
        found = await self._send("GET", "/creditmemos", trace, params=params)
        if found.status_code != 200:
            raise _answer(found)
        for memo in found.json().get("items") or []:
            if any(marker in (c.get("comment") or "") for c in memo.get("comments") or []):
                return f"{routed.original_ref}/creditmemo/{memo['entity_id']}"
        by_sku = {i.get("sku"): i for i in order.get("items") or []}
        refunds: list[tuple[dict[str, Any], Decimal]] = []
        if record.kind == "void":
            refunds = [(i, _dec(i.get("qty_ordered"))) for i in order.get("items") or []]
        for line in record.lines if record.kind == "return" else []:
            sku = routed.skus.get(line.sku, line.sku)
            if sku not in by_sku:
                where = f"order {routed.original_ref}"
                raise Unfit(f"line {line.number}: SKU {sku} is not on {where}")
            refunds.append((by_sku[sku], abs(line.quantity)))
        returned = ", ".join(f"{item.get('sku')} x {qty}" for item, qty in refunds)
        if self._s.refund_items:
            items = [{"order_item_id": item["item_id"], "qty": qty} for item, qty in refunds]
            # What Magento computes from the items, corrected to what the POS paid back.
            computed = sum(
                (
                    (_dec(i.get("row_total_incl_tax")) - _dec(i.get("discount_amount")))
                    * qty
                    / _dec(i.get("qty_ordered"))
                    for i, qty in refunds
                    if _dec(i.get("qty_ordered"))
                ),
                Decimal(0),
            )
        else:
            # The POS amount as an adjustment, no item quantity: Magento writes no
            # compensating reservation, so the salable quantity stays the POS's level.
            items = [{"order_item_id": i["item_id"], "qty": 0} for i in order.get("items") or []]
            computed = Decimal(0)
        exponent = Decimal(1).scaleb(-currency_exponent(record.currency))
        adjustment = abs(record.total) - computed.quantize(exponent)
        restock = [i["order_item_id"] for i in items if i["qty"]] if self._s.return_to_stock else []
        body = {
            "items": items,
            "notify": False,
            "appendComment": True,
            "comment": {
                "comment": f"{marker} POS {record.kind} {record.transaction_id}: {returned} "
                f"(correlation {routed.correlation_id})",
                "is_visible_on_front": 0,
            },
            "arguments": {
                "shipping_amount": 0,
                "adjustment_positive": max(adjustment, Decimal(0)),
                "adjustment_negative": max(-adjustment, Decimal(0)),
                "extension_attributes": {"return_to_stock_items": restock},
            },
        }
        response = await self._send("POST", f"/order/{order_id}/refund", trace, json=body)
        if response.status_code != 200:
            raise _answer(response)
        return f"{routed.original_ref}/creditmemo/{response.json()}"


def _read(response: httpx.Response) -> Any:
    """A JSON answer with its numbers as decimals."""
    return json.loads(response.content, parse_float=Decimal)


def _dec(value: Any) -> Decimal:
    """A number Magento answered, exactly as written (answers are read with decimals)."""
    return Decimal(str(value)) if value is not None else Decimal(0)


def oauth1_signature(
    method: str, url: str, params: Mapping[str, str], consumer_secret: str, token_secret: str
) -> str:
    """The HMAC-SHA256 signature of RFC 5849 section 3.4 over the method, the URL without
    its query, and every query and oauth_ parameter, sorted."""
    pairs = sorted((_pct(k), _pct(v)) for k, v in params.items())
    normalized = "&".join(f"{k}={v}" for k, v in pairs)
    base = "&".join(_pct(p) for p in (method.upper(), url.split("?", 1)[0], normalized))
    key = f"{_pct(consumer_secret)}&{_pct(token_secret)}".encode()
    digest = hmac.new(key, base.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _pct(value: str) -> str:
    return quote(value, safe="-._~")


def _render(message: str, parameters: Any) -> str:
    """Magento's `%1`/`%name` placeholders filled from `parameters`."""
    if isinstance(parameters, list):
        for index, value in enumerate(parameters, start=1):
            message = message.replace(f"%{index}", str(value))
    elif isinstance(parameters, dict):
        for name, value in parameters.items():
            message = message.replace(f"%{name}", str(value))
    return message


def _answer(response: httpx.Response, reason: str = "") -> Answered:
    return Answered(response, reason or _reason(response))


def _reason(response: httpx.Response) -> str:
    request = response.request
    status = response.status_code
    return f"{request.method} {request.url.path} answered {status}: {_message(response)}"


def _reason_or_empty(response: httpx.Response) -> str:
    return "" if 200 <= response.status_code < 300 else _reason(response)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "message" in body:
        message = _render(str(body["message"]), body.get("parameters"))
        if "isn't authorized to access" in message:
            message += " (grant that resource to the integration: System > Integrations)"
        return message
    return response.text[:200]


def dry_run_response(request: httpx.Request) -> httpx.Response:
    """What a dry run pretends Magento answered: nothing exists yet, writes succeed."""
    path = request.url.path
    if path.endswith("/integration/admin/token"):
        return httpx.Response(200, json="dry-run")
    if request.method == "GET":
        return httpx.Response(200, json={"items": [], "total_count": 0})
    if path.endswith("/V1/orders"):
        return httpx.Response(200, json={"entity_id": 1, "grand_total": 0, "total_invoiced": 0})
    if path.endswith("/inventory/source-items"):
        return httpx.Response(200, json=[])
    if path.endswith("/cancel"):
        return httpx.Response(200, json=True)
    return httpx.Response(200, json=1)
