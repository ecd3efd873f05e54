"""commercetools as a reference feed: current product projections changed after the
cursor, read in the order of `lastModifiedAt` (then `id`, so products changed in the
same millisecond are neither skipped nor read twice), each variant with a SKU turned into
a `RefItem` carrying every price it has; the fan-out keeps each store's own.

The query (docs.commercetools.com/api/projects/productProjections#query-productprojections):
`staged=false` (what is published), `where` predicates on `lastModifiedAt` and `id`,
`sort=lastModifiedAt asc` and `sort=id asc`, `limit`, `withTotal=false`. A price names
its channel and customer group by reference id (docs.commercetools.com/api/types#price);
their keys, which the stores are configured with, are read once per id from
`/channels/{id}` and `/customer-groups/{id}`. The cursor is `lastModifiedAt|id`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import ValidationError

from contract import ItemPrice, RefItem, currency_exponent

from ..connectors._base import ConnectorError
from ..connectors.commercetools.connector import CommercetoolsConnector
from ..sources import SkuMap
from ..sources._base import cents
from ..sources.commercetools import cursor_of, order_predicate
from ._base import FeedError, FeedPage
from ._settings import FeedSettings

__all__ = ["CommercetoolsFeed"]

_MAX_ATTRIBUTES = 100


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class CommercetoolsFeed:
    """Reads one commercetools project's published catalog through its target's
    connector (the same credentials and token)."""

    def __init__(
        self,
        name: str,
        settings: FeedSettings,
        connector: CommercetoolsConnector,
        skus: SkuMap,
        *,
        locale: str = "en",
    ) -> None:
        self.name = name
        self._s = settings
        self._api = connector
        self._skus = skus
        self._locale = locale
        self._keys: dict[tuple[str, str], str] = {}

    async def aclose(self) -> None:
        await self._api.aclose()

    async def _get(self, path: str, params: list[tuple[str, str | int]] | None = None) -> Any:
        try:
            response = await self._api.request("GET", path, params=params or [])
        except (ConnectorError, httpx.HTTPError) as exc:
            raise FeedError(f"{path} cannot be read: {exc}") from None
        if response.status_code != 200:
            raise FeedError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        return response.json()

    async def page(self, cursor: str | None, now: datetime) -> FeedPage:
        settled = now - timedelta(seconds=self._s.lag_seconds)
        params: list[tuple[str, str | int]] = [("staged", "false")]
        if cursor is not None:
            # The order source's predicate: after the last product read, same instant by id.
            params.append(("where", order_predicate(cursor, now)))
        params += [
            ("where", f'lastModifiedAt < "{_stamp(settled)}"'),
            ("sort", "lastModifiedAt asc"),
            ("sort", "id asc"),
            ("limit", self._s.page_size),
            ("withTotal", "false"),
        ]
        products: list[dict[str, Any]] = (await self._get("/product-projections", params)).get(
            "results"
        ) or []
        page = FeedPage(
            cursor=cursor_of(products[-1]) if products else None,
            more=len(products) >= self._s.page_size,
        )
        for product in products:
            variants = [product.get("masterVariant") or {}, *(product.get("variants") or [])]
            for variant in variants:
                if not variant.get("sku"):
                    continue
                try:
                    page.entities.append(await self.item(product, variant))
                except ValueError as exc:
                    page.unreadable.append(f"product {product.get('id')}: {exc}")
        return page

    async def item(self, product: dict[str, Any], variant: dict[str, Any]) -> RefItem:
        """One variant as the till sells it, with all of its prices."""
        sku = str(variant["sku"])
        names = product.get("name") or {}
        try:
            return RefItem(
                source=self.name,
                sku=self._skus.pos_sku(sku),
                commerce_sku=sku,
                product_id=product.get("id"),
                version=str(product["version"]),
                name=str(names.get(self._locale) or next(iter(names.values()), ""))[:500],
                prices=[await self._price(p) for p in variant.get("prices") or []],
                attributes=self._attributes(variant),
                changed_at=product["lastModifiedAt"],
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"SKU {sku}: {where}: {err['msg']}") from None

    async def _price(self, price: dict[str, Any]) -> ItemPrice:
        value = price["value"]
        currency = value["currencyCode"]
        digits = value.get("fractionDigits", currency_exponent(currency))
        return ItemPrice(
            amount=cents(value["centAmount"], digits),
            currency=currency,
            channel=await self._key("channels", price.get("channel")),
            customer_group=await self._key("customer-groups", price.get("customerGroup")),
            valid_from=price.get("validFrom"),
            valid_until=price.get("validUntil"),
        )

    async def _key(self, kind: str, ref: dict[str, Any] | None) -> str | None:
        """The key of a referenced channel or customer group (its id when it has none)."""
        if not ref:
            return None
        ident = str(ref["id"])
        if (kind, ident) not in self._keys:
            found = ref.get("obj") or await self._get(f"/{kind}/{ident}")
            self._keys[(kind, ident)] = str(found.get("key") or ident)
        return self._keys[(kind, ident)]

    def _attributes(self, variant: dict[str, Any]) -> dict[str, str]:
        """Plain attribute values as text (a localized one in the feed's locale); sets,
        references and nested values are left to the catalog."""
        found: dict[str, str] = {}
        for attribute in variant.get("attributes") or []:
            value = attribute.get("value")
            if isinstance(value, dict):
                value = value.get(self._locale, value.get("key", value.get("label")))
            if isinstance(value, str | int | float | bool) and len(found) < _MAX_ATTRIBUTES:
                found[str(attribute["name"])[:128]] = str(value)[:500]
        return found
