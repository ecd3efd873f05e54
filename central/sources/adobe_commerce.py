"""Adobe Commerce as an order source: `GET /V1/orders` with searchCriteria on
`updated_at` (developer.adobe.com/commerce/webapi/rest/use-rest/performing-searches/),
sorted by `updated_at` then `entity_id`, each in-store pickup or ship-from-store order
turned into the store's `OnlineOrder`, or its `OrderCancel` once the shop cancelled it.

`updated_at` has whole seconds, so many orders share one: the query reads from the
cursor's second on (`gteq`) and passes over what the cursor (`updated_at|entity_id`)
already covers; a page of nothing but such orders reads the next page. In-store pickup
(Magento_InventoryInStorePickup) keeps the pickup location, an MSI source code, in the
order's `extension_attributes.pickup_location_code`; that names the store.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from pydantic import ValidationError

from contract import OnlineOrder, OrderAddress, OrderCancel, OrderLine, OrderPayment

from ..connectors._base import ConnectorError
from ..connectors.adobe_commerce.connector import AdobeCommerceConnector
from ._base import Page, Refusal, SkuMap, SourceError, StoreMap
from ._settings import OrderSourceSettings

__all__ = ["AdobeCommerceSource", "parse_time"]

MAX_TIE_PAGES = 50
"""Pages of orders all changed in the cursor's second read in one poll, at most."""


def parse_time(value: str) -> datetime:
    """Magento's `YYYY-MM-DD HH:MM:SS` (UTC in the REST API) as an aware datetime."""
    return datetime.fromisoformat(value.replace(" ", "T")).replace(tzinfo=UTC)


def magento_time(moment: datetime) -> str:
    """A moment as Magento writes `updated_at`: UTC, whole seconds, no zone."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def updated_between(
    since: str, condition: str, settled: str, page: int, page_size: int
) -> dict[str, str]:
    """searchCriteria for one page of entities with `updated_at` `condition` (gt, gteq)
    `since` and before `settled`, oldest first then by `entity_id` (Magento's REST
    search: filter groups are ANDed, the filters inside one ORed)."""
    f = "searchCriteria[filter_groups]"
    return {
        f"{f}[0][filters][0][field]": "updated_at",
        f"{f}[0][filters][0][value]": since,
        f"{f}[0][filters][0][condition_type]": condition,
        f"{f}[1][filters][0][field]": "updated_at",
        f"{f}[1][filters][0][value]": settled,
        f"{f}[1][filters][0][condition_type]": "lt",
        "searchCriteria[sortOrders][0][field]": "updated_at",
        "searchCriteria[sortOrders][0][direction]": "ASC",
        "searchCriteria[sortOrders][1][field]": "entity_id",
        "searchCriteria[sortOrders][1][direction]": "ASC",
        "searchCriteria[pageSize]": str(page_size),
        "searchCriteria[currentPage]": str(page),
    }


def _after(order: dict[str, Any], cursor: tuple[str, int] | None) -> bool:
    if cursor is None:
        return True
    return (str(order["updated_at"]), int(order["entity_id"])) > cursor


class AdobeCommerceSource:
    """Reads one shop's orders through its target's connector (the same credentials)."""

    def __init__(
        self,
        name: str,
        settings: OrderSourceSettings,
        connector: AdobeCommerceConnector,
        stores: StoreMap,
        skus: SkuMap,
    ) -> None:
        self.name = name
        self._s = settings
        self._api = connector
        self._stores = stores
        self._skus = skus

    @property
    def store_map(self) -> StoreMap:
        """The platform's store → the POS store (the runner refreshes its tables)."""
        return self._stores

    async def aclose(self) -> None:
        await self._api.aclose()

    async def page(self, cursor: str | None, now: datetime) -> Page:
        settled = magento_time(now - timedelta(seconds=self._s.lag_seconds))
        last: tuple[str, int] | None = None
        if cursor is None:
            since, condition = magento_time(now - timedelta(hours=self._s.first_run_hours)), "gt"
        else:
            at, _, entity = cursor.partition("|")
            since, condition, last = at, "gteq", (at, int(entity))
        for number in range(1, MAX_TIE_PAGES + 1):
            params = updated_between(since, condition, settled, number, self._s.page_size)
            try:
                response = await self._api.request("GET", "/orders", params=params)
            except (ConnectorError, httpx.HTTPError) as exc:
                raise SourceError(f"orders cannot be read: {exc}") from None
            if response.status_code != 200:
                raise SourceError(
                    f"GET /V1/orders answered {response.status_code}: {response.text[:300]}"
                )
            items: list[dict[str, Any]] = (
                json.loads(response.content, parse_float=Decimal).get("items") or []
            )
            fresh = [o for o in items if _after(o, last)]
            full = len(items) >= self._s.page_size
            if fresh or not full:
                return self._page(fresh, more=full)
        raise SourceError(
            f"more than {MAX_TIE_PAGES * self._s.page_size} orders changed in the second "
            f"{since}: raise page_size"
        )

    def _page(self, orders: list[dict[str, Any]], *, more: bool) -> Page:
        page = Page(
            cursor=f"{orders[-1]['updated_at']}|{orders[-1]['entity_id']}" if orders else None,
            more=more,
        )
        skipped = 0
        for order in orders:
            try:
                found = self.convert(order)
            except _Refused as refused:
                number = str(order.get("increment_id") or order.get("entity_id"))
                page.refusals.append(Refusal(number, f"{self.name}: {refused}", refused.store))
                continue
            if found is None:
                skipped += 1
            else:
                page.messages.append(found)
        return Page(page.messages, page.refusals, skipped, page.cursor, page.more)

    # -- one order ------------------------------------------------------------------------

    def _assignment(self, order: dict[str, Any]) -> dict[str, Any]:
        assignments = (order.get("extension_attributes") or {}).get("shipping_assignments")
        return ((assignments or [{}])[0] or {}).get("shipping") or {}

    def fulfilment(self, order: dict[str, Any]) -> str | None:
        method = self._assignment(order).get("method") or order.get("shipping_method")
        pickup_code = (order.get("extension_attributes") or {}).get("pickup_location_code")
        if method in self._s.pickups or (pickup_code and not self._s.pickup_methods):
            return "pickup"
        if method in self._s.ship_from_store_methods:
            return "ship_from_store"
        return None

    def convert(self, order: dict[str, Any]) -> OnlineOrder | OrderCancel | None:
        fulfilment = self.fulfilment(order)
        if fulfilment is None:
            return None
        number = str(order["increment_id"])
        store = self._store(order, number)
        version = int(parse_time(str(order["updated_at"])).timestamp())
        state = order.get("state")
        if state == "canceled":
            return OrderCancel(
                source="adobe_commerce",
                target=self._s.target,
                order_id=str(order["entity_id"]),
                order_number=number,
                version=version,
                store=store,
                reason="canceled in Adobe Commerce",
            )
        if state in ("complete", "closed"):
            return None
        try:
            lines = [
                self._line(item)
                for item in order.get("items") or []
                if not item.get("parent_item_id")
                and _dec(item.get("qty_ordered")) - _dec(item.get("qty_canceled")) > 0
            ]
        except _Refused as exc:
            raise _Refused(f"order {number}, {exc}", store) from None
        address = self._assignment(order).get("address") or {}
        payment = order.get("payment") or {}
        paid = _dec(payment.get("amount_paid"))
        try:
            return OnlineOrder(
                source="adobe_commerce",
                target=self._s.target,
                order_id=str(order["entity_id"]),
                order_number=number,
                version=version,
                store=store,
                fulfilment=fulfilment,
                created_at=parse_time(str(order["created_at"])),
                currency=order["order_currency_code"],
                taxed="excluded",
                lines=lines,
                shipping=_dec(order.get("shipping_amount")),
                tax_total=_dec(order.get("tax_amount")),
                total=_dec(order.get("grand_total")),
                payments=[
                    OrderPayment(
                        method=str(payment.get("method") or "online"),
                        amount=paid or _dec(payment.get("amount_ordered")),
                        reference=str(payment.get("last_trans_id") or "")[:128],
                        captured=paid > 0,
                    )
                ]
                if payment
                else [],
                customer_name=_customer(order),
                customer_ref=str(order["customer_id"]) if order.get("customer_id") else None,
                ship_to=self._ship_to(address, number) if fulfilment == "ship_from_store" else None,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise _Refused(f"order {number} cannot be read: {where}: {err['msg']}", store) from None

    def _store(self, order: dict[str, Any], number: str) -> str:
        field = self._s.effective_store_field
        code = (order.get("extension_attributes") or {}).get(field)
        if not code:
            raise _Refused(f"order {number} has no {field}")
        try:
            return self._stores.store_for(str(code))
        except ValueError as exc:
            raise _Refused(f"order {number}: pickup location {exc}") from None

    def _line(self, item: dict[str, Any]) -> OrderLine:
        sku = item.get("sku")
        if not sku:
            raise _Refused(f"item {item.get('item_id')} has no SKU")
        try:
            pos = self._skus.pos_sku(str(sku))
        except ValueError as exc:
            raise _Refused(f"item {item.get('item_id')}: {exc}") from None
        quantity = _dec(item.get("qty_ordered")) - _dec(item.get("qty_canceled"))
        discount = _dec(item.get("discount_amount"))
        return OrderLine(
            line_id=str(item["item_id"]),
            sku=pos,
            description=str(item.get("name") or "")[:500],
            quantity=quantity,
            unit_price=_dec(item.get("price")),
            discount=discount,
            tax=_dec(item.get("tax_amount")),
            tax_rate=_dec(item["tax_percent"]) if item.get("tax_percent") is not None else None,
            amount=_dec(item.get("row_total")) - discount,
        )

    def _ship_to(self, address: dict[str, Any], number: str) -> OrderAddress:
        street = [str(s) for s in address.get("street") or [] if s][:4]
        if not street or not address.get("city") or not address.get("country_id"):
            raise _Refused(f"order {number} is shipped from the store but has no full address")
        name = " ".join(str(address[k]) for k in ("firstname", "lastname") if address.get(k))
        return OrderAddress(
            name=name,
            lines=street,
            postal_code=str(address.get("postcode") or ""),
            city=str(address["city"]),
            region=str(address.get("region") or ""),
            country=str(address["country_id"]),
            phone=address.get("telephone"),
        )


class _Refused(Exception):
    def __init__(self, reason: str, store: str | None = None) -> None:
        super().__init__(reason)
        self.store = store


def _customer(order: dict[str, Any]) -> str | None:
    names = (order.get(k) for k in ("customer_firstname", "customer_lastname"))
    return " ".join(str(n) for n in names if n) or None


def _dec(value: Any) -> Decimal:
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)
