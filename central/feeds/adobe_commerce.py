"""Adobe Commerce as a reference feed: products changed after the cursor, read by
`GET /V1/products` with searchCriteria on `updated_at`, sorted by `updated_at` then
`entity_id` (developer.adobe.com/commerce/webapi/rest/use-rest/performing-searches/),
each with a SKU an item: its name, its price in the feed's currency, whether it is
enabled, its plain custom attributes, and its MSI source items (`GET
/V1/inventory/source-items`, `sku` `in` the page's SKUs) as `stock@SOURCE` and
`stock_status@SOURCE` attributes, which the fan-out narrows to the store's own source.

`updated_at` has whole seconds: the query reads from the cursor's second on (`gteq`) and
passes over what the cursor (`updated_at|id`) already covers, as the order source does.
A source item's quantity changed without the product changing travels with the
product's next change or the store's next resync: source items carry no change time to
read them by.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from pydantic import ValidationError

from contract import ItemPrice, RefItem

from ..connectors._base import ConnectorError
from ..connectors.adobe_commerce.connector import AdobeCommerceConnector
from ..sources import SkuMap
from ..sources.adobe_commerce import magento_time, parse_time, updated_between
from ._base import FeedError, FeedPage
from ._settings import FeedSettings

__all__ = ["AdobeCommerceFeed"]

MAX_TIE_PAGES = 50
_EPOCH = "1970-01-01 00:00:00"
_ENABLED = 1  # Magento\Catalog\Model\Product\Attribute\Source\Status::STATUS_ENABLED
_MAX_ATTRIBUTES = 90  # the contract's 100, with room for the stock of a few sources


class AdobeCommerceFeed:
    """Reads one shop's catalog through its target's connector (the same credentials)."""

    def __init__(
        self,
        name: str,
        settings: FeedSettings,
        connector: AdobeCommerceConnector,
        skus: SkuMap,
    ) -> None:
        self.name = name
        self._s = settings
        self._api = connector
        self._skus = skus

    async def aclose(self) -> None:
        await self._api.aclose()

    async def _get(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        try:
            response = await self._api.request("GET", path, params=params)
        except (ConnectorError, httpx.HTTPError) as exc:
            raise FeedError(f"{path} cannot be read: {exc}") from None
        if response.status_code != 200:
            raise FeedError(f"GET /V1{path} answered {response.status_code}: {response.text[:300]}")
        items: list[dict[str, Any]] = (
            json.loads(response.content, parse_float=Decimal).get("items") or []
        )
        return items

    async def page(self, cursor: str | None, now: datetime) -> FeedPage:
        settled = magento_time(now - timedelta(seconds=self._s.lag_seconds))
        last: tuple[str, int] | None = None
        since, condition = _EPOCH, "gt"
        if cursor is not None:
            at, _, ident = cursor.partition("|")
            since, condition, last = at, "gteq", (at, int(ident))
        for number in range(1, MAX_TIE_PAGES + 1):
            products = await self._get(
                "/products",
                updated_between(since, condition, settled, number, self._s.page_size),
            )
            fresh = [
                p for p in products if last is None or (str(p["updated_at"]), int(p["id"])) > last
            ]
            full = len(products) >= self._s.page_size
            if fresh or not full:
                return await self._page(fresh, more=full)
        raise FeedError(
            f"more than {MAX_TIE_PAGES * self._s.page_size} products changed in the second "
            f"{since}: raise page_size"
        )

    async def _page(self, products: list[dict[str, Any]], *, more: bool) -> FeedPage:
        page = FeedPage(
            cursor=f"{products[-1]['updated_at']}|{products[-1]['id']}" if products else None,
            more=more,
        )
        stock = await self._stock([str(p["sku"]) for p in products if p.get("sku")])
        for product in products:
            if not product.get("sku"):
                continue
            try:
                page.entities.append(self.item(product, stock.get(str(product["sku"]), {})))
            except ValueError as exc:
                page.unreadable.append(f"product {product.get('id')}: {exc}")
        return page

    async def _stock(self, skus: list[str]) -> dict[str, dict[str, str]]:
        """Per SKU, `stock@SOURCE` and `stock_status@SOURCE` of its source items."""
        if not skus:
            return {}
        f = "searchCriteria[filter_groups][0][filters][0]"
        rows = await self._get(
            "/inventory/source-items",
            {f"{f}[field]": "sku", f"{f}[value]": ",".join(skus), f"{f}[condition_type]": "in"},
        )
        found: dict[str, dict[str, str]] = {}
        for row in rows:
            source = str(row["source_code"])
            held = found.setdefault(str(row["sku"]), {})
            held[f"stock@{source}"] = str(Decimal(str(row.get("quantity") or 0)).normalize())
            held[f"stock_status@{source}"] = "in_stock" if row.get("status") else "out_of_stock"
        return found

    def item(self, product: dict[str, Any], stock: dict[str, str]) -> RefItem:
        sku = str(product["sku"])
        attributes: dict[str, str] = {}
        for attribute in product.get("custom_attributes") or []:
            value = attribute.get("value")
            if isinstance(value, str | int | float | Decimal) and len(attributes) < _MAX_ATTRIBUTES:
                attributes[str(attribute["attribute_code"])[:128]] = str(value)[:500]
        try:
            pos = self._skus.pos_sku(sku)
            price = product.get("price")
            return RefItem(
                source=self.name,
                sku=pos,
                commerce_sku=sku,
                product_id=str(product["id"]),
                version=str(product["updated_at"]),
                name=str(product.get("name") or "")[:500],
                active=int(product.get("status") or 0) == _ENABLED,
                prices=[]
                if price is None
                else [ItemPrice(amount=Decimal(str(price)), currency=self._s.currency)],
                attributes={**attributes, **stock},
                changed_at=parse_time(str(product["updated_at"])),
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"SKU {sku}: {where}: {err['msg']}") from None
