"""commercetools as an order source: orders changed after the cursor, read in the order
of `lastModifiedAt` (then `id`, so orders changed in the same millisecond are neither
skipped nor read twice), each turned into the store's `OnlineOrder` — or its
`OrderCancel` once the platform cancelled it.

The query (docs.commercetools.com/api/projects/orders#query-orders): `where` predicates
on `lastModifiedAt` and `id`, `sort=lastModifiedAt asc` and `sort=id asc`, `limit`,
`withTotal=false` (no count is needed, and it costs the platform), and the shipping
method and payments expanded (docs.commercetools.com/api/general-concepts#reference-
expansion). The cursor is `lastModifiedAt|id` of the last order read.

Which orders go down: a pickup or ship-from-store order by the key of its shipping method
(`pickup_methods`, `ship_from_store_methods`) or the custom field `fulfilment_field`;
others are not for a store. The store is the order's `store` key (or `store_field`),
mapped to the POS store; each line's SKU is mapped back to the POS item.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from pydantic import ValidationError

from contract import (
    OnlineOrder,
    OrderAddress,
    OrderCancel,
    OrderLine,
    OrderPayment,
    currency_exponent,
)

from ..connectors._base import ConnectorError
from ..connectors.commercetools.connector import CommercetoolsConnector
from ._base import Page, Refusal, SkuMap, SourceError, StoreMap, cents
from ._settings import OrderSourceSettings

__all__ = ["CommercetoolsSource", "cursor_of", "order_predicate"]


def _stamp(moment: datetime) -> str:
    """An instant as commercetools writes `lastModifiedAt` (UTC, milliseconds, Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def cursor_of(order: dict[str, Any]) -> str:
    return f"{order['lastModifiedAt']}|{order['id']}"


def order_predicate(cursor: str | None, start: datetime) -> str:
    """The `where` that reads orders after `cursor` (or changed since `start`)."""
    if cursor is None:
        return f'lastModifiedAt > "{_stamp(start)}"'
    at, _, last = cursor.partition("|")
    return f'lastModifiedAt > "{at}" or (lastModifiedAt = "{at}" and id > "{last}")'


class CommercetoolsSource:
    """Reads one commercetools project's orders through its target's connector (the
    same credentials and token)."""

    def __init__(
        self,
        name: str,
        settings: OrderSourceSettings,
        connector: CommercetoolsConnector,
        stores: StoreMap,
        skus: SkuMap,
        *,
        locale: str = "en",
    ) -> None:
        self.name = name
        self._s = settings
        self._api = connector
        self._stores = stores
        self._skus = skus
        self._locale = locale

    @property
    def store_map(self) -> StoreMap:
        """The platform's store → the POS store (the runner refreshes its tables)."""
        return self._stores

    async def aclose(self) -> None:
        await self._api.aclose()

    async def page(self, cursor: str | None, now: datetime) -> Page:
        start = now - timedelta(hours=self._s.first_run_hours)
        settled = now - timedelta(seconds=self._s.lag_seconds)
        params: list[tuple[str, str | int]] = [
            ("where", order_predicate(cursor, start)),
            ("where", f'lastModifiedAt < "{_stamp(settled)}"'),
            ("sort", "lastModifiedAt asc"),
            ("sort", "id asc"),
            ("limit", self._s.page_size),
            ("withTotal", "false"),
            ("expand", "shippingInfo.shippingMethod"),
            ("expand", "paymentInfo.payments[*]"),
        ]
        try:
            response = await self._api.request("GET", "/orders", params=params)
        except (ConnectorError, httpx.HTTPError) as exc:
            raise SourceError(f"orders cannot be read: {exc}") from None
        if response.status_code != 200:
            raise SourceError(f"GET /orders answered {response.status_code}: {response.text[:300]}")
        orders: list[dict[str, Any]] = response.json().get("results") or []
        page = Page(
            cursor=cursor_of(orders[-1]) if orders else None,
            more=len(orders) >= self._s.page_size,
        )
        skipped = 0
        for order in orders:
            try:
                found = self.convert(order)
            except _Refused as refused:
                page.refusals.append(
                    Refusal(_number(order), f"{self.name}: {refused}", refused.store)
                )
                continue
            if found is None:
                skipped += 1
            else:
                page.messages.append(found)
        return Page(page.messages, page.refusals, skipped, page.cursor, page.more)

    # -- one order ------------------------------------------------------------------------

    def fulfilment(self, order: dict[str, Any]) -> str | None:
        """pickup, ship_from_store, or None when the order is not for a store."""
        if self._s.fulfilment_field:
            fields = (order.get("custom") or {}).get("fields") or {}
            value = fields.get(self._s.fulfilment_field)
            if value in ("pickup", "ship_from_store"):
                return str(value)
        method = (order.get("shippingInfo") or {}).get("shippingMethod") or {}
        key = (method.get("obj") or {}).get("key") or method.get("key")
        if key in self._s.pickup_methods:
            return "pickup"
        if key in self._s.ship_from_store_methods:
            return "ship_from_store"
        return None

    def convert(self, order: dict[str, Any]) -> OnlineOrder | OrderCancel | None:
        """The message for the store, None for an order that is not a store's to act on;
        `_Refused` for one that is but cannot go."""
        fulfilment = self.fulfilment(order)
        if fulfilment is None:
            return None
        number = _number(order)
        store = self._store(order, number)
        state = order.get("orderState")
        if state == "Cancelled":
            return OrderCancel(
                source="commercetools",
                target=self._s.target,
                order_id=order["id"],
                order_number=number,
                version=int(order["version"]),
                store=store,
                reason="cancelled in commercetools",
            )
        if state == "Complete" or order.get("shipmentState") in ("Shipped", "Delivered"):
            return None  # nothing left for the store to do
        currency = order["totalPrice"]["currencyCode"]
        try:
            lines = [self._line(li, currency) for li in order.get("lineItems") or []]
            lines += [self._custom_line(c, currency) for c in order.get("customLineItems") or []]
        except _Refused as exc:
            raise _Refused(f"order {number}, {exc}", store) from None
        included = [
            bool((li.get("taxRate") or {}).get("includedInPrice"))
            for li in [*(order.get("lineItems") or []), *(order.get("customLineItems") or [])]
            if li.get("taxRate")
        ]
        taxed = order.get("taxedPrice") or {}
        shipping_info = order.get("shippingInfo") or {}
        try:
            return OnlineOrder(
                source="commercetools",
                target=self._s.target,
                order_id=order["id"],
                order_number=number,
                version=int(order["version"]),
                store=store,
                fulfilment=fulfilment,
                created_at=order["createdAt"],
                promised_by=self._promised(order),
                currency=currency,
                taxed="excluded" if included and not any(included) else "included",
                lines=lines,
                shipping=_money(shipping_info.get("price"), currency),
                tax_total=_money(taxed.get("totalTax"), currency)
                if taxed.get("totalTax")
                else sum(
                    (_money(p.get("amount"), currency) for p in taxed.get("taxPortions") or []),
                    Decimal(0),
                ),
                total=_money(taxed.get("totalGross") or order["totalPrice"], currency),
                payments=self._payments(order, currency),
                customer_name=_name(order.get("shippingAddress") or order.get("billingAddress")),
                customer_ref=order.get("customerId"),
                ship_to=self._ship_to(order, number) if fulfilment == "ship_from_store" else None,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise _Refused(f"order {number} cannot be read: {where}: {err['msg']}", store) from None

    def _store(self, order: dict[str, Any], number: str) -> str:
        if self._s.store_field:
            fields = (order.get("custom") or {}).get("fields") or {}
            value = fields.get(self._s.store_field)
            if value:
                return str(value)
        key = (order.get("store") or {}).get("key")
        if not key:
            where = f"custom field {self._s.store_field} or " if self._s.store_field else ""
            raise _Refused(f"order {number} names no store (no {where}store key)")
        try:
            return self._stores.store_for(str(key))
        except ValueError as exc:
            raise _Refused(f"order {number}: store {exc}") from None

    def _promised(self, order: dict[str, Any]) -> str | None:
        if not self._s.promised_field:
            return None
        value = ((order.get("custom") or {}).get("fields") or {}).get(self._s.promised_field)
        return str(value) if value else None

    def _pos_sku(self, sku: str | None, what: str) -> str:
        if not sku:
            raise _Refused(f"{what} has no SKU")
        try:
            return self._skus.pos_sku(sku)
        except ValueError as exc:
            raise _Refused(f"{what}: {exc}") from None

    def _line(self, li: dict[str, Any], currency: str) -> OrderLine:
        sku = self._pos_sku((li.get("variant") or {}).get("sku"), f"line {li.get('id')}")
        price = li.get("price") or {}
        unit = _money(price.get("value"), currency)
        return self._order_line(li, sku, unit, currency)

    def _custom_line(self, li: dict[str, Any], currency: str) -> OrderLine:
        sku = self._pos_sku(li.get("slug"), f"custom line {li.get('id')}")
        return self._order_line(li, sku, _money(li.get("money"), currency), currency)

    def _order_line(self, li: dict[str, Any], sku: str, unit: Decimal, currency: str) -> OrderLine:
        quantity = Decimal(int(li["quantity"]))
        amount = _money(li.get("totalPrice"), currency)
        taxed = li.get("taxedPrice") or {}
        rate = li.get("taxRate") or {}
        tax = (
            _money(taxed.get("totalTax"), currency)
            if taxed.get("totalTax")
            else _money(taxed.get("totalGross"), currency) - _money(taxed.get("totalNet"), currency)
        )
        names = li.get("name") or {}
        return OrderLine(
            line_id=li["id"],
            sku=sku,
            description=str(names.get(self._locale) or next(iter(names.values()), ""))[:500],
            quantity=quantity,
            unit_price=unit,
            discount=max(unit * quantity - amount, Decimal(0)),
            tax=tax,
            tax_rate=(Decimal(str(rate["amount"])) * 100).normalize()
            if rate.get("amount") is not None
            else None,
            amount=amount,
        )

    def _payments(self, order: dict[str, Any], currency: str) -> list[OrderPayment]:
        found = []
        for ref in (order.get("paymentInfo") or {}).get("payments") or []:
            payment = ref.get("obj")
            if not payment:
                continue
            info = payment.get("paymentMethodInfo") or {}
            charged = [
                _money(t.get("amount"), currency)
                for t in payment.get("transactions") or []
                if t.get("type") == "Charge" and t.get("state") == "Success"
            ]
            found.append(
                OrderPayment(
                    method=str(info.get("method") or info.get("paymentInterface") or "online"),
                    amount=sum(charged, Decimal(0))
                    if charged
                    else _money(payment.get("amountPlanned"), currency),
                    reference=str(payment.get("interfaceId") or payment["id"])[:128],
                    captured=bool(charged),
                )
            )
        return found

    def _ship_to(self, order: dict[str, Any], number: str) -> OrderAddress:
        address = order.get("shippingAddress") or {}
        street = " ".join(str(address[k]) for k in ("streetName", "streetNumber") if address.get(k))
        lines = [x for x in (street, address.get("additionalStreetInfo")) if x]
        if not lines or not address.get("city") or not address.get("country"):
            raise _Refused(f"order {number} is shipped from the store but has no full address")
        return OrderAddress(
            name=_name(address) or "",
            lines=lines,
            postal_code=address.get("postalCode") or "",
            city=address["city"],
            region=address.get("region") or address.get("state") or "",
            country=address["country"],
            phone=address.get("phone") or address.get("mobile"),
        )


class _Refused(Exception):
    def __init__(self, reason: str, store: str | None = None) -> None:
        super().__init__(reason)
        self.store = store


def _number(order: dict[str, Any]) -> str:
    return str(order.get("orderNumber") or order["id"])


def _money(value: dict[str, Any] | None, currency: str) -> Decimal:
    if not value:
        return Decimal(0)
    digits = value.get("fractionDigits", currency_exponent(currency))
    return cents(value["centAmount"], digits)


def _name(address: dict[str, Any] | None) -> str | None:
    if not address:
        return None
    name = " ".join(str(address[k]) for k in ("firstName", "lastName") if address.get(k))
    return name or None
