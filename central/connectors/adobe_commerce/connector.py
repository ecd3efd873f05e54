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

This module wires the parts: settings (`_settings`), tokens and OAuth 1.0a signing
(`_auth`), reading Magento's answers (`_answers`), order entities (`_orders`), credit
memos (`_credit_memos`), stock levels (`_stock`) and fulfilments (`_fulfilment`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import httpx

from contract import Fulfillment, Inventory, Transaction

from .._base import (
    Answered,
    ConnectorError,
    DeliveryResult,
    Exchange,
    Outcome,
    Routed,
    Traced,
    Unfit,
    deliver_each,
    for_location,
    outcome_for,
    settle,
    transport_failure,
)
from ._answers import answer as _answer
from ._answers import dec as _dec
from ._answers import read as _read
from ._answers import reason_or_empty as _reason_or_empty
from ._auth import Session, oauth1_signature
from ._credit_memos import CreditMemos
from ._fulfilment import Fulfilments
from ._orders import increment_id, order_entity
from ._settings import AdobeCommerceSettings
from ._stock import BEFORE, level_in, level_ref, noted_ref, source_item_query

__all__ = [
    "AdobeCommerceConnector",
    "AdobeCommerceSettings",
    "dry_run_response",
    "increment_id",
    "oauth1_signature",
]


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
        http = Traced(client, keep_full=settings.dry_run)
        self._send = Session(settings, http, clock=clock, wall=wall).send
        self._stated: dict[int, Decimal] = {}
        """Per record id: the grand total Magento answered for a sale (the POS's sign)."""
        self._fulfilments = Fulfilments(self._send, _answer, _read, dry_run=settings.dry_run)
        self._credit_memos = CreditMemos(
            self._send,
            self._find_order,
            refund_items=settings.refund_items,
            return_to_stock=settings.return_to_stock,
        )

    async def aclose(self) -> None:
        return None

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
            return await self._credit_memos.post(routed, record, trace)
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
