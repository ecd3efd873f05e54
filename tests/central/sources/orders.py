"""What the order-source and fulfilment tests share: the relay's config with one order
source, a store's fulfilment record, and a fulfilment routed the way the relay routes it."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from central.config import CentralConfig
from central.connectors import Routed
from central.routing import Router
from contract import Fulfillment, OnlineOrder, down_body_adapter, record_adapter

STORE = "0042"
DAY = date(2026, 12, 5)
KINDS = ["sale", "return", "void", "inventory", "fulfillment"]


def config(target: dict[str, Any], source: dict[str, Any], **extra: Any) -> CentralConfig:
    """A relay config with `target`, the stores 0042 (berlin-mitte / berlin_mitte) and
    0043 (no table), and the order source `web`."""
    return CentralConfig.model_validate(
        {
            "targets": [{"kinds": KINDS, **target}],
            "stores": {
                STORE: {
                    "country": "DE",
                    "currency": "EUR",
                    target["type"]: {
                        "store": "berlin-mitte",
                        "supply_channel": "berlin-mitte-supply",
                        "source_code": "berlin_mitte",
                        "store_id": "1",
                    },
                },
                "0043": {"country": "DE"},
            },
            "order_sources": {"web": {"type": target["type"], "target": target["name"], **source}},
            **extra,
        }
    )


def fulfillment(
    order_number: str,
    status: str,
    *lines: dict[str, Any],
    number: str = "F1",
    tracking: str | None = None,
) -> Fulfillment:
    record = record_adapter.validate_python(
        {
            "kind": "fulfillment",
            "key": f"fulfillment:{STORE}:{order_number}:{number}",
            "store": STORE,
            "business_date": DAY,
            "occurred_at": datetime(2026, 12, 5, 17, 30, tzinfo=UTC),
            "source": {"file": "orders-0001.json"},
            "order_number": order_number,
            "status": status,
            "transaction_id": number,
            "lines": list(lines),
            "tracking": tracking,
        }
    )
    assert isinstance(record, Fulfillment)
    return record


def handed(sku: str, quantity: str, line_id: str | None = None) -> dict[str, Any]:
    return {"sku": sku, "line_id": line_id, "handed_over": Decimal(quantity)}


def routed(
    cfg: CentralConfig, record: Fulfillment, order: OnlineOrder, *, attempts: int = 0
) -> Routed:
    """`record` routed as `central.delivery` routes it: to its order's target."""
    decision = Router(cfg.targets, cfg.stores, cfg.routing).decide(
        7, record.model_dump(mode="json"), record, order=order
    )
    assert decision.error is None, decision.error
    ((_, route),) = decision.routes.items()
    return Routed(
        id=7,
        key=record.key,
        correlation_id=f"corr-{record.key}",
        record=record,
        route=route["route"],
        skus=route["skus"],
        attempts=attempts,
    )


def as_order(body: str) -> OnlineOrder:
    order = down_body_adapter.validate_json(body)
    assert isinstance(order, OnlineOrder)
    return order
