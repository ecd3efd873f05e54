"""Orders and batches as central sends them, for the downlink tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from contract import DownBatch, DownMessage, OnlineOrder, OrderCancel, encode_down, order_key

STORE = "0042"


def order(
    number: str = "10001", *, version: int = 1, store: str = STORE, **more: Any
) -> OnlineOrder:
    data: dict[str, Any] = {
        "source": "commercetools",
        "target": "ct-main",
        "order_id": f"id-{number}",
        "order_number": number,
        "version": version,
        "store": store,
        "fulfilment": "pickup",
        "created_at": "2026-12-05T09:30:00+01:00",
        "promised_by": "2026-12-05T17:00:00+01:00",
        "currency": "EUR",
        "taxed": "included",
        "lines": [
            {
                "line_id": "l1",
                "sku": "4711",
                "description": "Espresso beans 1 kg",
                "quantity": "2",
                "unit_price": "18.90",
                "tax": "6.04",
                "tax_rate": "19",
                "amount": "37.80",
            },
            {
                "line_id": "l2",
                "sku": "815",
                "description": "Milk jug",
                "quantity": "1",
                "unit_price": "12.00",
                "discount": "2.00",
                "tax": "1.60",
                "tax_rate": "19",
                "amount": "10.00",
            },
        ],
        "tax_total": "7.64",
        "total": "47.80",
        "payments": [{"method": "card", "amount": "47.80", "reference": "psp-1", "captured": True}],
        "customer_name": "A. Customer",
    }
    data.update(more)
    return OnlineOrder.model_validate(data)


def cancel(number: str = "10001", *, version: int = 2, store: str = STORE) -> OrderCancel:
    return OrderCancel(
        source="commercetools",
        target="ct-main",
        order_id=f"id-{number}",
        order_number=number,
        version=version,
        store=store,
        reason="customer cancelled",
    )


def message(seq: int, body: OnlineOrder | OrderCancel) -> DownMessage:
    return DownMessage(
        seq=seq,
        kind=body.kind,
        key=order_key(body),
        issued_at=datetime(2026, 12, 5, 9, 31, tzinfo=UTC),
        body=body.model_dump(mode="json"),
    )


def batch(*messages: DownMessage, store: str = STORE) -> DownBatch:
    return DownBatch(
        store=store,
        batch_id=uuid.uuid4().hex,
        sent_at=datetime.now(UTC),
        messages=list(messages),
    )


def payload(*messages: DownMessage, store: str = STORE) -> bytes:
    return encode_down(batch(*messages, store=store))
