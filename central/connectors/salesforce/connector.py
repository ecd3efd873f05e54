"""Salesforce: POS sales and returns as Orders and OrderItems upserted by external id
through sObject Collections (at most 200 per call, `allOrNone: false`, so each record
gets its own verdict), and the POS customer matched to a Contact by a configurable
rule — loyalty id, then POS customer id, then email, then phone by default.

A return of a sale Salesforce holds is a reduction order (`IsReductionOrder`,
`OriginalOrderId`, each item's `OriginalOrderItemId`, negative quantities); a void sets
the original order's status. Weighed items keep their decimal quantity. Fields
Salesforce takes only on create (an item's order and price book entry, a reduction
order's links) are left out when an upsert meets an existing row. A basket abandoned
before tender is an order in `cancel_status`, without payments. Each tender can
become a payment row in a configured object. Every answer's `Sforce-Limit-Info` is
read: near the org's daily limit, or when Salesforce says it is reached, delivery is
held (not retried) until `limit_wait_seconds` have passed.

Every call names the record it writes in `Sforce-Call-Options: client=tillbridge/<id>`
(the record's correlation id): the one request header the REST API documents for
identifying a caller, whose `client` value Salesforce keeps in its logs (Event
Monitoring's `CLIENT_NAME`). A collection carries the records of one correlation id
(a POS file's records share one), so each call names exactly what it writes.

Which system owns the profile is configurable: when Salesforce owns it, a matched
Contact is only linked, never overwritten; when the POS owns it, the match is updated.
An external id that matches several records (300 Multiple Choices) is refused with the
candidates named: nothing is guessed. `UNABLE_TO_LOCK_ROW` is retried. Tokens come
from the OAuth client-credentials flow (on the org's My Domain) or the JWT bearer flow;
the token answer's `instance_url` is where the API calls go. The connected app needs one
OAuth scope, `api` ("Manage user data via APIs"), and no other (no `full`, no
`refresh_token`: both flows get a new token when one expires); a token without it is
refused here with that said, before any call. An Order has no tax of its own: with
`order_tax_field` the tax the POS charged on top of its prices goes into that field, and
with `order_total_field` the orders' totals as Salesforce states them are read back for
reconciliation.

This module wires the parts: the token and the daily limit (`_session`), the Contact
match (`_contacts`), payment rows (`_payments`), reduction orders' item links
(`_returns`) and the totals read back (`_totals`).
"""

# ruff: noqa: S608  (SOQL here is joined from configured names and soql_quote()d values)
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from contract import (
    CustomerRecord,
    Transaction,
)

from .._base import (
    ConnectorError,
    DeliveryResult,
    Exchange,
    Outcome,
    Routed,
    Traced,
    Unfit,
    correlation,
    outcome_for,
    settle,
)
from ._contacts import matched_contact
from ._items import priced_lines, tax_outside
from ._payments import payment_rows
from ._returns import original_items
from ._session import CALL_OPTIONS, Session, call_client, patch, soql_quote
from ._session import answer as _answer
from ._session import reason as _reason
from ._settings import SalesforceSettings
from ._totals import confirm_totals

__all__ = [
    "SalesforceConnector",
    "SalesforceSettings",
    "call_client",
    "dry_run_response",
    "soql_quote",
]

COLLECTION_LIMIT = 200
CREATE_ONLY_ORDER = ("IsReductionOrder", "OriginalOrderId")
# Set when an order is created, never again: a repeat must not undo a void's status.
FIRST_ONLY_ORDER = (*CREATE_ONLY_ORDER, "Status")
RETRYABLE_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "REQUEST_LIMIT_EXCEEDED", "SERVER_UNAVAILABLE"})


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
        http = Traced(
            client,
            keep_full=settings.dry_run,
            correlation_header=CALL_OPTIONS,
            correlation_value=call_client,
        )
        self._session = Session(settings, http, clock)
        self._api = self._session.api
        self._entries: dict[tuple[str, str], str] = {}

    async def aclose(self) -> None:
        return None

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """An authorised call to the org's REST API outside delivery (`path` after
        /services/data/vXX.X): the customer feed reads with the target's credentials."""
        return await self._api(method, path, [], **kwargs)

    # -- the seam -------------------------------------------------------------------------

    async def deliver(self, records: Sequence[Routed]) -> DeliveryResult:
        result = DeliveryResult()
        orders: list[_Order] = []
        for routed in records:
            trace: list[Exchange] = []
            correlation.set(routed.correlation_id)
            try:
                if isinstance(routed.record, CustomerRecord):
                    contact = await matched_contact(
                        self._api, self._s, routed.record.customer, trace
                    )
                    if contact is None:
                        raise Unfit("the customer has nothing the match rule can use")
                    result.accepted.append(
                        Outcome(routed.id, status=200, ref=contact, exchanges=trace)
                    )
                    continue
                if routed.kind == "void":
                    ref = await self._void(routed, trace)
                    result.accepted.append(Outcome(routed.id, status=200, ref=ref, exchanges=trace))
                    continue
                orders.append(await self._prepare(routed, trace))
            except (ConnectorError, httpx.HTTPError) as exc:
                settle(result, routed, trace, exc)
        by_correlation: dict[str, list[_Order]] = {}
        for order in orders:
            by_correlation.setdefault(order.routed.correlation_id, []).append(order)
        for correlation_id, group in by_correlation.items():
            correlation.set(correlation_id)
            for start in range(0, len(group), COLLECTION_LIMIT):
                result.extend(await self._upsert_orders(group[start : start + COLLECTION_LIMIT]))
        return result

    async def _void(self, routed: Routed, trace: list[Exchange]) -> str:
        """A void sets its original order's status: the order stays, as the POS's did."""
        if not routed.original_ref:
            raise Unfit("a void of a sale Salesforce never received")
        obj = self._s.order_object
        await patch(
            self._api,
            f"/sobjects/{obj}/{routed.original_ref}",
            {"Status": self._s.void_status},
            trace,
        )
        return routed.original_ref

    async def _prepare(self, routed: Routed, trace: list[Exchange]) -> _Order:
        record = routed.record
        if not isinstance(record, Transaction) or record.kind not in ("sale", "return", "cancel"):
            raise Unfit(f"Salesforce takes sales, returns, voids and cancels, not {record.kind}")
        reduction = record.kind == "return" and bool(routed.original_ref)
        if not reduction and not self._s.negative_quantities:
            # An item void (the line and its reversal, both voided) sends no item.
            negative = [
                line.number for line in record.lines if line.quantity < 0 and not line.voided
            ]
            if negative:
                raise Unfit(
                    f"line {negative[0]}: a negative quantity needs the original sale in "
                    "Salesforce (a reduction order), or negative_quantities where the org "
                    "allows them"
                )
        contact = (
            await matched_contact(self._api, self._s, record.customer, trace)
            if record.customer
            else None
        )
        account = self._s.account_id
        if not account:
            raise Unfit("orders need an account: set account_id for this target")
        order: dict[str, Any] = {
            "attributes": {"type": self._s.order_object},
            self._s.order_external_id: routed.key,
            "AccountId": account,
            "EffectiveDate": record.business_date.isoformat(),
            "Status": self._s.cancel_status if record.kind == "cancel" else self._s.order_status,
            "Pricebook2Id": routed.route["price_book"],
            "Description": f"POS {record.kind} {record.store}/{record.register or '-'}/"
            f"{record.transaction_id}",
        }
        if contact:
            order["BillToContactId"] = contact
        if self._s.order_tax_field:
            order[self._s.order_tax_field] = tax_outside(record)
        if self._s.order_location_field:
            location = routed.route.get("location")
            if not location:
                raise Unfit(f"store {record.store} has no salesforce.location in [central.stores]")
            order[self._s.order_location_field] = location
        originals: dict[str, str] = {}
        if reduction:
            assert routed.original_ref is not None
            order["IsReductionOrder"] = True
            order["OriginalOrderId"] = routed.original_ref
            originals = await original_items(self._api, self._s, routed, record, trace)
        entries = await self._pricebook_entries(routed, record, trace)
        items = []
        for line, (quantity, unit, note) in priced_lines(record):
            sku = routed.skus.get(line.sku, line.sku)
            item: dict[str, Any] = {
                "attributes": {"type": self._s.order_item_object},
                self._s.order_item_external_id: f"{routed.key}#{line.number}",
                "Order": {self._s.order_external_id: routed.key},
                "PricebookEntryId": entries[sku],
                "Quantity": quantity,
                "UnitPrice": unit,
            }
            if note:
                item["Description"] = note
            items.append(item)
            if reduction:
                item["OriginalOrderItemId"] = originals[line.number]
                item["Quantity"] = -abs(quantity)
        payments = payment_rows(self._s, routed, record)
        return _Order(routed, order, items, payments, trace)

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

    async def _existing(
        self, obj: str, field: str, keys: list[str], trace: list[Exchange]
    ) -> set[str]:
        """Which of `keys` already name a row of `obj`."""
        found: set[str] = set()
        for start in range(0, len(keys), COLLECTION_LIMIT):
            chunk = ", ".join(soql_quote(k) for k in keys[start : start + COLLECTION_LIMIT])
            query = f"SELECT {field} FROM {obj} WHERE {field} IN ({chunk})"
            response = await self._api("GET", "/query", trace, params={"q": query})
            if response.status_code != 200:
                raise _answer(response)
            found |= {str(r[field]) for r in response.json().get("records", [])}
        return found

    async def _upsert_orders(self, batch: list[_Order]) -> DeliveryResult:
        result = DeliveryResult()
        shared: list[Exchange] = []
        s = self._s
        try:
            # Fields Salesforce takes only on create are left out for rows that exist.
            again = [o.routed.key for o in batch if o.routed.attempts]
            held = await self._existing(s.order_object, s.order_external_id, again, shared)
            orders = [_without(o.order, FIRST_ONLY_ORDER, o.routed.key in held) for o in batch]
            response = await self._upsert(s.order_object, s.order_external_id, orders, shared)
        except (ConnectorError, httpx.HTTPError) as exc:
            for o in batch:
                settle(result, o.routed, o.trace + shared, exc)
            return result
        if response.status_code != 200:
            for o in batch:
                result.add(*outcome_for(o.routed, response, o.trace + shared, _reason(response)))
            return result
        placed: list[tuple[_Order, str, bool]] = []
        for o, answer in zip(batch, response.json(), strict=True):
            verdict = _verdict(answer)
            if verdict is None:
                placed.append((o, str(answer["id"]), bool(answer.get("created"))))
            else:
                result.add(verdict[0], self._failed(o, verdict, o.trace + shared))
        try:
            existing = await self._existing(
                s.order_item_object,
                s.order_item_external_id,
                [i[s.order_item_external_id] for o, _, new in placed if not new for i in o.items],
                shared,
            )
        except (ConnectorError, httpx.HTTPError) as exc:
            for o, _, _ in placed:
                settle(result, o.routed, o.trace + shared, exc)
            return result
        create_only = ("Order", "OrderId", "PricebookEntryId", "OriginalOrderItemId")
        # (object, external id field, row, which placed order it belongs to)
        rows: list[tuple[str, str, dict[str, Any], int]] = []
        for n, (o, _, _) in enumerate(placed):
            for item in o.items:
                known = item[s.order_item_external_id] in existing
                row = _without(item, create_only, known)
                rows.append((s.order_item_object, s.order_item_external_id, row, n))
            rows += [(s.payment_object, s.payment_external_id, p, n) for p in o.payments]
        answers: dict[int, list[dict[str, Any]]] = {n: [] for n in range(len(placed))}
        for obj, field in dict.fromkeys((r[0], r[1]) for r in rows):
            of_kind = [(row, n) for o_, f_, row, n in rows if (o_, f_) == (obj, field)]
            for start in range(0, len(of_kind), COLLECTION_LIMIT):
                chunk = of_kind[start : start + COLLECTION_LIMIT]
                try:
                    answer = await self._upsert(obj, field, [row for row, _ in chunk], shared)
                except (ConnectorError, httpx.HTTPError) as exc:
                    for o, _, _ in placed:
                        settle(result, o.routed, o.trace + shared, exc)
                    return result
                if answer.status_code != 200:
                    for o, _, _ in placed:
                        result.add(*outcome_for(o.routed, answer, o.trace + shared))
                    return result
                for (_, n), one in zip(chunk, answer.json(), strict=True):
                    answers[n].append(one)
        for n, (o, order_id, _) in enumerate(placed):
            mine = answers[n]
            failed = [v for v in (_verdict(a) for a in mine) if v is not None]
            if failed:
                worst: Literal["retry", "rejected"] = (
                    "retry" if any(v[0] == "retry" for v in failed) else "rejected"
                )
                reason = "; ".join(v[1] for v in failed)
                result.add(
                    worst, self._failed(o, (worst, f"order items: {reason}"), o.trace + shared)
                )
            else:
                outcome = Outcome(o.routed.id, status=200, ref=order_id, exchanges=o.trace + shared)
                result.accepted.append(outcome)
        routed = [o.routed for o in batch]
        await confirm_totals(self._api, self._s, routed, result.accepted, shared)
        return result

    def _failed(
        self, o: _Order, verdict: tuple[Literal["retry", "rejected"], str], trace: list[Exchange]
    ) -> Outcome:
        held = "REQUEST_LIMIT_EXCEEDED" in verdict[1]
        if held:
            self._session.hold("daily API request limit reached (REQUEST_LIMIT_EXCEEDED)")
        return Outcome(
            o.routed.id,
            reason=verdict[1],
            status=_STATUS[verdict[0]],
            exchanges=trace,
            retry_after=self._s.limit_wait_seconds if held else None,
            hold=held,
        )


@dataclass
class _Order:
    """A transaction ready to upsert: its order row, item rows and payment rows."""

    routed: Routed
    order: dict[str, Any]
    items: list[dict[str, Any]]
    payments: list[dict[str, Any]]
    trace: list[Exchange]


def _without(row: dict[str, Any], names: Sequence[str], existing: bool) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in names} if existing else row


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
    if request.method == "PATCH" and re.fullmatch(r".*/sobjects/\w+/\w+", path):
        return httpx.Response(204)  # an update by id (a void's status) answers no content
    return httpx.Response(201, json={"id": "dry-run", "success": True, "errors": []})
