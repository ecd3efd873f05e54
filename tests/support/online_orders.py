"""Online orders and cancellations as an order source queues them, for downlink tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contract import OnlineOrder, OrderCancel, OrderLine, order_key

__all__ = ["cancel", "order", "queued"]

PLACED = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def order(
    store: str,
    number: str,
    *,
    version: int = 1,
    promised_by: datetime | None = PLACED + timedelta(hours=2),
    target: str = "shop",
) -> OnlineOrder:
    """A pickup order of one line, placed at PLACED."""
    return OnlineOrder(
        source="commercetools",
        target=target,
        order_id=f"id-{number}",
        order_number=number,
        version=version,
        store=store,
        fulfilment="pickup",
        created_at=PLACED,
        promised_by=promised_by,
        currency="EUR",
        taxed="included",
        lines=[
            OrderLine(
                line_id="l1",
                sku="4001",
                description="Coffee beans 500 g",
                quantity=Decimal(2),
                unit_price=Decimal("7.50"),
                tax=Decimal("0.98"),
                amount=Decimal("15.00"),
            )
        ],
        tax_total=Decimal("0.98"),
        total=Decimal("15.00"),
    )


def cancel(store: str, number: str, *, version: int = 2, target: str = "shop") -> OrderCancel:
    return OrderCancel(
        source="commercetools",
        target=target,
        order_id=f"id-{number}",
        order_number=number,
        version=version,
        store=store,
        reason="customer asked",
    )


def queued(body: OnlineOrder | OrderCancel) -> tuple[str, str, str, str]:
    """The arguments of `Downlink.enqueue` for a message: store, kind, key, body JSON."""
    return body.store, body.kind, order_key(body), body.model_dump_json()
