"""Reference entities as the feeds produce them, for the fan-out and inbox tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contract import ItemPrice, RefCustomer, RefItem

__all__ = ["T0", "customer", "item", "price"]

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def price(amount: str, channel: str | None = None, currency: str = "EUR") -> ItemPrice:
    return ItemPrice(amount=Decimal(amount), currency=currency, channel=channel)


def item(sku: str = "PEN-1", version: int = 1, *prices: ItemPrice) -> RefItem:
    return RefItem(
        source="catalog",
        sku=sku,
        commerce_sku=f"SKU-{sku}",
        version=str(version),
        name="Pen",
        prices=list(prices),
        changed_at=T0 + timedelta(minutes=version),
    )


def customer(
    ident: str = "003A", version: int = 1, *, home: str | None = None, tier: str = "gold"
) -> RefCustomer:
    return RefCustomer(
        source="crm",
        customer_id=ident,
        version=f"v{version}",
        loyalty_id=f"L-{ident}",
        first_name="Ada",
        email="ada@example.test",
        tier=tier,
        home_store=home,
        changed_at=T0 + timedelta(minutes=version),
    )
