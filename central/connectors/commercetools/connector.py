"""commercetools: POS sales as imported orders in the store's context (the draft, to
the cent, is `_orders`), each tender as a Payment attached to its order;
returns and voids as Refund transactions on the sale's payments, a return with return
info whose items are marked refunded, a void with the order cancelled; a cancelled
basket as an order imported in state `Cancelled`, without payments; inventory levels
and movements on the SKU's entry for the store's (or the location's) supply channel
(`_inventory`); what a store did with an online order (a `fulfillment`) as a delivery
and the order's shipment and order state (`_fulfilment`). Every call carries the
record's correlation id in `X-Correlation-ID`.

Scopes: the token asks for the least the configured kinds need (the endpoints' scopes in
docs.commercetools.com/api/scopes): `manage_orders` for orders, `manage_payments` for
the tenders and refunds, `manage_products` for inventory entries (it also reads the
supply channel); `scopes` overrides it.

Idempotency is ours, not the platform's: an order's `orderNumber` and a payment's `key`
are derived from the record key, and after an attempt that may have arrived
(`Routed.attempts > 0`, or a `DuplicateField` answer) the connector looks them up before
creating anything; a refund transaction is found again by its `interactionId`. Versioned
updates re-read on 409 `ConcurrentModification`, a bounded number of times. OAuth
client-credentials tokens are cached and refreshed a minute before they expire, and once
more after a 401.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote

import httpx
from pydantic import Field, SecretStr

from contract import (
    Fulfillment,
    Inventory,
    Transaction,
    currency_exponent,
    key_digest,
)

from .._base import (
    Answered,
    DeliveryResult,
    Exchange,
    Routed,
    TargetSettings,
    Traced,
    Unfit,
    correlation,
    deliver_each,
)
from ._fulfilment import Fulfilments
from ._inventory import Inventories
from ._orders import OrderDrafts, money, order_number, tax_added

__all__ = [
    "CommercetoolsConnector",
    "CommercetoolsSettings",
    "dry_run_response",
    "least_scopes",
    "order_number",
]

CONFLICT_REREADS = 3
REFRESH_MARGIN = 60.0


class CommercetoolsSettings(TargetSettings):
    type: Literal["commercetools"] = "commercetools"
    api_url: str = Field(
        pattern=r"^https?://",
        description="API host, e.g. https://api.europe-west1.gcp.commercetools.com",
    )
    auth_url: str = Field(
        pattern=r"^https?://",
        description="Auth host, e.g. https://auth.europe-west1.gcp.commercetools.com",
    )
    project_key: str = Field(min_length=1, description="The project key.")
    client_id: str = Field(min_length=1, description="API client id.")
    client_secret: SecretStr | None = Field(default=None, description="API client secret.")
    client_secret_file: str | None = Field(default=None, description="File holding the secret.")
    scopes: str = Field(
        default="",
        description="Token scopes, space-separated; default: the least the kinds need "
        "(manage_orders, manage_payments, manage_products, each :{project_key}).",
    )
    locale: str = Field(default="en", description="Locale of line item and payment names.")
    payment_interface: str = Field(
        default="tillbridge-pos", description="paymentMethodInfo.paymentInterface of POS payments."
    )
    line_item_type: str = Field(
        default="tillbridge-pos-line",
        description="Key of the custom type (resourceTypeIds: line-item) whose String fields "
        "posQuantity, posUnitPrice and posDiscount keep a weighed line's measured quantity, "
        "its unit price and its discount; empty: weighed lines are refused.",
    )
    inventory_entry_type: str = Field(
        default="tillbridge-pos-stock",
        description="Key of the custom type (resourceTypeIds: inventory-entry) whose Set of "
        "String field posMovements keeps the stock movements already applied to an entry, "
        "so a resend applies none twice; empty: movements are refused, levels still go.",
    )
    return_payment_state: bool = Field(
        default=True,
        description="Mark each returned item Refunded (setReturnPaymentState) once the POS "
        "refund is on the sale's payment; off only for a server without that action.",
    )

    def missing(self) -> list[str]:
        return [] if self.dry_run or self.client_secret else ["client_secret_file"]


ORDER_KINDS = frozenset({"sale", "return", "void", "cancel", "fulfillment"})
PAYMENT_KINDS = frozenset({"sale", "return", "void"})


def least_scopes(settings: CommercetoolsSettings) -> str:
    """The scopes the configured kinds need, and no more (docs.commercetools.com/api/scopes):
    orders, payments for tenders and refunds, products for inventory entries."""
    kinds = set(settings.kinds)
    wanted = []
    if kinds & ORDER_KINDS:
        wanted.append("manage_orders")
    if kinds & PAYMENT_KINDS:
        wanted.append("manage_payments")
    if "inventory" in kinds:
        wanted.append("manage_products")
    return " ".join(f"{scope}:{settings.project_key}" for scope in wanted)


def _payment_key(record_key: str, suffix: str) -> str:
    return f"pos-{key_digest(record_key, 32)}-{suffix}"


class CommercetoolsConnector:
    name = "commercetools"
    required_route: tuple[str, ...] = ("store", "supply_channel")

    def __init__(
        self,
        settings: CommercetoolsSettings,
        client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._s = settings
        self._http = Traced(
            client, keep_full=settings.dry_run, correlation_header="X-Correlation-ID"
        )
        self._clock = clock
        self._api = f"{settings.api_url.rstrip('/')}/{settings.project_key}"
        self._token: str | None = None
        self._expires = 0.0
        self._stock = Inventories(self._call, _answer, settings.inventory_entry_type)
        self._drafts = OrderDrafts(settings.locale, settings.line_item_type)
        self._fulfilments = Fulfilments(
            self._call, self._update_order, _answer, dry_run=settings.dry_run
        )
        self._stated: dict[int, Decimal] = {}
        """Per record id: the order total commercetools answered for a sale."""

    async def aclose(self) -> None:
        return None

    # -- plumbing -------------------------------------------------------------------------

    async def _bearer(self, fresh: bool = False) -> str:
        if fresh or self._token is None or self._clock() >= self._expires - REFRESH_MARGIN:
            secret = self._s.client_secret.get_secret_value() if self._s.client_secret else ""
            scope = self._s.scopes or least_scopes(self._s)
            response = await self._http.request(
                "POST",
                f"{self._s.auth_url.rstrip('/')}/oauth/token",
                None,  # a token answer never goes into the audit trail
                data={"grant_type": "client_credentials", "scope": scope},
                headers={"Authorization": httpx.BasicAuth(self._s.client_id, secret)._auth_header},
            )
            if response.status_code != 200:
                reason = f"token refused: {_oauth_error(response)}"
                # A client without the scopes is fixed by a person, as a wrong secret is:
                # retried like a 403, not a rejection of the records waiting on it.
                if "invalid_scope" in reason:
                    raise Answered(httpx.Response(403, request=response.request), reason)
                raise Answered(response, reason)
            body = response.json()
            self._token = str(body["access_token"])
            self._expires = self._clock() + float(body.get("expires_in", 3600))
        return self._token

    async def _call(
        self, method: str, path: str, trace: list[Exchange], **kwargs: Any
    ) -> httpx.Response:
        url = path if path.startswith("http") else f"{self._api}{path}"
        return await self._http.authorized(method, url, trace, self._bearer, **kwargs)

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authorised call to the project's API outside delivery: the order source
        reads orders with the target's credentials and token."""
        return await self._call(method, path, [], **kwargs)

    # -- the seam -------------------------------------------------------------------------

    async def deliver(self, records: Sequence[Routed]) -> DeliveryResult:
        return await deliver_each(
            records,
            self._one,
            self._stated,
            before=lambda routed: correlation.set(routed.correlation_id),
        )

    async def _one(self, routed: Routed, trace: list[Exchange]) -> str:
        record = routed.record
        if isinstance(record, Inventory):
            return await self._stock.apply(routed, record, trace)
        if isinstance(record, Fulfillment):
            return await self._fulfilments.post(routed, record, trace)
        if not isinstance(record, Transaction):
            raise Unfit(f"commercetools takes no {record.kind} records")
        if record.kind in ("sale", "cancel") or (
            record.kind == "return" and not routed.original_ref
        ):
            return await self._sale(routed, record, trace)
        if record.kind in ("return", "void"):
            return await self._refund(routed, record, trace)
        raise Unfit(f"commercetools takes no {record.kind} transactions")

    # -- sales ----------------------------------------------------------------------------

    async def _find_order(self, number: str, trace: list[Exchange]) -> dict[str, Any] | None:
        response = await self._call("GET", f"/orders/order-number={quote(number, safe='')}", trace)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise _answer(response)
        found: dict[str, Any] = response.json()
        return found

    async def _sale(self, routed: Routed, record: Transaction, trace: list[Exchange]) -> str:
        number = order_number(routed.key)
        order = await self._find_order(number, trace) if routed.attempts else None
        if order is None:
            response = await self._call(
                "POST", "/orders/import", trace, json=self._drafts.order(routed, record)
            )
            if _duplicate(response):
                order = await self._find_order(number, trace)
            elif response.status_code not in (200, 201):
                raise _answer(response)
            else:
                order = response.json()
        if order is None:  # pragma: no cover - a duplicate that cannot be found
            raise Unfit(f"order {number} reported as duplicate but not found")
        # The gross is taxedPrice's; totalPrice is the gross only where no tax was added
        # to the prices. An answer without taxedPrice for a sale taxed on top (as the npm
        # mock gives when only the receipt carries the tax) states no gross at all.
        gross = (order.get("taxedPrice") or {}).get("totalGross")
        if gross is None and not tax_added(record):
            gross = order.get("totalPrice")
        if gross:
            digits = int(gross.get("fractionDigits", currency_exponent(record.currency)))
            self._stated[routed.id] = Decimal(int(gross["centAmount"])).scaleb(-digits)
        # A cancelled basket was never paid: the order records it, no payment follows.
        for index, tender in enumerate(record.tenders if record.kind != "cancel" else ()):
            net = tender.amount - (tender.change or Decimal(0))
            kind = "Refund" if net < 0 else "Charge"
            payment = await self._payment(
                routed,
                _payment_key(routed.key, f"t{index}"),
                f"{routed.key}#{index}",
                tender.type.value,
                tender.method,
                kind,
                abs(net),
                record.currency,
                tender.auth_code,
                trace,
            )
            order = await self._attach(order, payment, trace)
        return number

    async def _payment(
        self,
        routed: Routed,
        key: str,
        interface_id: str,
        tender_type: str,
        method_name: str,
        kind: str,
        amount: Decimal,
        currency: str,
        interaction: str | None,
        trace: list[Exchange],
    ) -> str:
        """The id of the payment with `key`, created if it does not exist yet."""
        if routed.attempts:
            found = await self._call("GET", f"/payments/key={quote(key, safe='')}", trace)
            if found.status_code == 200:
                return str(found.json()["id"])
            if found.status_code != 404:
                raise _answer(found)
        transaction: dict[str, Any] = {
            "type": kind,
            "amount": money(amount, currency),
            "state": "Success",
            "timestamp": routed.record.occurred_at.isoformat(),
        }
        if interaction:
            transaction["interactionId"] = interaction
        draft = {
            "key": key,
            "interfaceId": interface_id,
            "amountPlanned": money(amount, currency),
            "paymentMethodInfo": {
                "paymentInterface": self._s.payment_interface,
                "method": routed.payments.get(tender_type, tender_type),
                "name": {self._s.locale: method_name or tender_type},
            },
            "transactions": [transaction],
        }
        response = await self._call("POST", "/payments", trace, json=draft)
        if _duplicate(response):
            found = await self._call("GET", f"/payments/key={quote(key, safe='')}", trace)
            if found.status_code != 200:
                raise _answer(found)
            return str(found.json()["id"])
        if response.status_code not in (200, 201):
            raise _answer(response)
        return str(response.json()["id"])

    async def _update_order(
        self,
        order: dict[str, Any],
        actions: Callable[[dict[str, Any]], list[dict[str, Any]]],
        trace: list[Exchange],
    ) -> dict[str, Any]:
        """Apply the actions `actions(order)` still needs; re-read on a version conflict."""
        for _ in range(CONFLICT_REREADS + 1):
            wanted = actions(order)
            if not wanted:
                return order
            response = await self._call(
                "POST",
                f"/orders/{order['id']}",
                trace,
                json={"version": order["version"], "actions": wanted},
            )
            if response.status_code == 200:
                updated: dict[str, Any] = response.json()
                return updated
            if response.status_code != 409:
                raise _answer(response)
            reread = await self._call("GET", f"/orders/{order['id']}", trace)
            if reread.status_code != 200:
                raise _answer(reread)
            order = reread.json()
        raise _answer(response, "the order kept changing under us (409 after re-reading)")

    async def _attach(
        self, order: dict[str, Any], payment_id: str, trace: list[Exchange]
    ) -> dict[str, Any]:
        def needed(current: dict[str, Any]) -> list[dict[str, Any]]:
            held = {p.get("id") for p in (current.get("paymentInfo") or {}).get("payments", [])}
            if payment_id in held:
                return []
            return [{"action": "addPayment", "payment": {"typeId": "payment", "id": payment_id}}]

        return await self._update_order(order, needed, trace)

    # -- returns and voids ----------------------------------------------------------------

    async def _refund(self, routed: Routed, record: Transaction, trace: list[Exchange]) -> str:
        number = routed.original_ref
        if not number:
            raise Unfit(f"a {record.kind} of a sale commercetools never received")
        order = await self._find_order(number, trace)
        if order is None:
            raise Unfit(f"original order {number} is not in commercetools")
        tracking = key_digest(routed.key, 32)
        # Each tender's refund is a Refund transaction on the sale's payment of the same
        # method (the platform's way), found by its interactionId on a repeat.
        refunds = [
            (t.type.value, abs(t.amount - (t.change or Decimal(0))), t.auth_code)
            for t in record.tenders
        ] or [("other", abs(record.total), None)]
        payments = await self._payments_of(order, trace)
        for index, (tender_type, amount, auth) in enumerate(refunds):
            method = routed.payments.get(tender_type, tender_type)
            target = next(
                (p for p in payments if (p.get("paymentMethodInfo") or {}).get("method") == method),
                payments[0] if payments else None,
            )
            interaction = f"{tracking}-{index}"
            if target is None:
                # The sale came without payments: the refund is a payment of its own.
                payment = await self._payment(
                    routed,
                    _payment_key(routed.key, f"r{index}"),
                    f"{routed.key}#{index}",
                    tender_type,
                    record.kind,
                    "Refund",
                    amount,
                    record.currency,
                    auth,
                    trace,
                )
                order = await self._attach(order, payment, trace)
                continue
            transaction = {
                "type": "Refund",
                "amount": money(amount, record.currency),
                "state": "Success",
                "timestamp": record.occurred_at.isoformat(),
                "interactionId": interaction,
            }
            await self._add_transaction(target, transaction, trace)
        tracking = key_digest(routed.key, 32)
        if record.kind == "return":

            def returned(current: dict[str, Any]) -> list[dict[str, Any]]:
                if any(
                    i.get("returnTrackingId") == tracking for i in current.get("returnInfo") or []
                ):
                    return []
                by_sku = {
                    (li.get("variant") or {}).get("sku"): li["id"]
                    for li in current.get("lineItems", [])
                }
                items = []
                for line in record.lines:
                    sku = routed.skus.get(line.sku, line.sku)
                    if sku not in by_sku:
                        raise Unfit(f"line {line.number}: SKU {sku} is not on order {number}")
                    quantity = abs(line.quantity)
                    whole = quantity == quantity.to_integral_value()
                    comment = f"POS return {record.transaction_id}"
                    items.append(
                        {
                            # A weighed line went as one unit: it comes back as one.
                            "quantity": int(quantity) if whole else 1,
                            "lineItemId": by_sku[sku],
                            "shipmentState": "Returned",
                            "comment": comment if whole else f"{comment}: {quantity}",
                        }
                    )
                return [
                    {
                        "action": "addReturnInfo",
                        "items": items,
                        "returnTrackingId": tracking,
                        "returnDate": record.occurred_at.isoformat(),
                    }
                ]

            order = await self._update_order(order, returned, trace)
            if self._s.return_payment_state:
                # The till paid the money back: the returned items are Refunded (they start
                # Initial), docs.commercetools.com/api/projects/orders#set-returnpaymentstate.
                def refunded(current: dict[str, Any]) -> list[dict[str, Any]]:
                    return [
                        {
                            "action": "setReturnPaymentState",
                            "returnItemId": item["id"],
                            "paymentState": "Refunded",
                        }
                        for info in current.get("returnInfo") or []
                        if info.get("returnTrackingId") == tracking
                        for item in info.get("items") or []
                        if item.get("paymentState") != "Refunded"
                    ]

                await self._update_order(order, refunded, trace)
        else:

            def cancelled(current: dict[str, Any]) -> list[dict[str, Any]]:
                if current.get("orderState") == "Cancelled":
                    return []
                return [{"action": "changeOrderState", "orderState": "Cancelled"}]

            await self._update_order(order, cancelled, trace)
        return f"{number}/{tracking}"

    async def _payments_of(
        self, order: dict[str, Any], trace: list[Exchange]
    ) -> list[dict[str, Any]]:
        found = []
        for ref in (order.get("paymentInfo") or {}).get("payments", []):
            response = await self._call("GET", f"/payments/{ref['id']}", trace)
            if response.status_code != 200:
                raise _answer(response)
            found.append(response.json())
        return found

    async def _add_transaction(
        self, payment: dict[str, Any], transaction: dict[str, Any], trace: list[Exchange]
    ) -> None:
        """Add `transaction` to `payment` unless one with its interactionId is there;
        re-read on a version conflict."""
        for _ in range(CONFLICT_REREADS + 1):
            held = {t.get("interactionId") for t in payment.get("transactions", [])}
            if transaction["interactionId"] in held:
                return
            response = await self._call(
                "POST",
                f"/payments/{payment['id']}",
                trace,
                json={
                    "version": payment["version"],
                    "actions": [{"action": "addTransaction", "transaction": transaction}],
                },
            )
            if response.status_code == 200:
                return
            if response.status_code != 409:
                raise _answer(response)
            reread = await self._call("GET", f"/payments/{payment['id']}", trace)
            if reread.status_code != 200:
                raise _answer(reread)
            payment = reread.json()
        raise _answer(response, "the payment kept changing under us (409 after re-reading)")


def _answer(response: httpx.Response, reason: str = "") -> Answered:
    return Answered(response, reason or _reason(response))


def _errors(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors or [] if isinstance(e, dict)]


def _oauth_error(response: httpx.Response) -> str:
    """`status error: description` of a refused token request (it names no secret); an
    `invalid_scope` says which scopes the API client lacks."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        described = f": {body['error_description']}" if body.get("error_description") else ""
        hint = (
            " (the API client must hold the scopes asked for: see scopes and kinds)"
            if body["error"] == "invalid_scope"
            else ""
        )
        return f"{response.status_code} {body['error']}{described}{hint}"
    return str(response.status_code)


def _duplicate(response: httpx.Response) -> bool:
    return response.status_code == 400 and any(
        e.get("code") == "DuplicateField" for e in _errors(response)
    )


def _reason(response: httpx.Response) -> str:
    """`code: message` of commercetools' error body."""
    request = response.request
    details = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in _errors(response))
    if not details:
        try:
            details = str(response.json().get("message", ""))
        except (ValueError, AttributeError):
            details = response.text[:200]
    return f"{request.method} {request.url.path} answered {response.status_code}: {details}"


def dry_run_response(request: httpx.Request) -> httpx.Response:
    """What a dry run pretends commercetools answered: nothing exists yet, writes succeed."""
    path = request.url.path
    if path.endswith("/oauth/token"):
        return httpx.Response(200, json={"access_token": "dry-run", "expires_in": 3600})
    if request.method == "GET":
        if "/channels/key=" in path:
            return httpx.Response(200, json={"id": "dry-run-channel", "version": 1})
        if path.endswith("/inventory"):
            return httpx.Response(200, json={"results": [], "total": 0})
        return httpx.Response(404, json={"statusCode": 404, "message": "dry run", "errors": []})
    body: dict[str, Any] = {"id": "dry-run", "version": 1}
    if path.endswith("/orders/import"):
        body |= {"orderNumber": "dry-run", "paymentInfo": {"payments": []}, "lineItems": []}
    if "/orders/" in path:
        body["paymentInfo"] = {"payments": []}
    return httpx.Response(200, json=body)
