"""Customers, items and purges as central sends them on the downlink, for the reference
tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from contract import CustomerPurge, DownMessage, RefCustomer, RefItem, reference_key

ISSUED = datetime(2026, 12, 5, 9, 31, tzinfo=UTC)


def customer(cid: str = "003A1", version: str = "1", **more: Any) -> RefCustomer:
    data: dict[str, Any] = {
        "source": "salesforce",
        "customer_id": cid,
        "version": version,
        "loyalty_id": f"L-{cid}",
        "first_name": "Erika",
        "last_name": "Mustermann",
        "email": f"erika.{cid.lower()}@example.org",
        "phone": "+49 30 1234567",
        "tier": "gold",
        "points": "1250",
        "preferences": {"newsletter": "no", "receipt": "email"},
        "home_store": "0042",
        "changed_at": "2026-12-05T08:00:00+00:00",
    }
    data.update(more)
    return RefCustomer.model_validate(data)


def item(sku: str = "4711", version: str = "1", amount: str = "18.90", **more: Any) -> RefItem:
    data: dict[str, Any] = {
        "source": "commercetools",
        "sku": sku,
        "commerce_sku": f"ESP-{sku}",
        "version": version,
        "name": "Espresso beans 1 kg",
        "prices": [
            {"amount": amount, "currency": "EUR", "channel": "store-0042"},
            {"amount": "16.90", "currency": "EUR", "customer_group": "staff"},
        ],
        "attributes": {"roast": "dark"},
        "changed_at": "2026-12-05T08:00:00+00:00",
    }
    data.update(more)
    return RefItem.model_validate(data)


def purge(cid: str = "003A1") -> CustomerPurge:
    return CustomerPurge(
        source="salesforce", customer_id=cid, requested_at=datetime(2026, 12, 5, tzinfo=UTC)
    )


def ref(
    seq: int, body: RefCustomer | RefItem | CustomerPurge, issued_at: datetime = ISSUED
) -> DownMessage:
    return DownMessage(
        seq=seq,
        kind=body.kind,
        key=reference_key(body),
        issued_at=issued_at,
        body=body.model_dump(mode="json"),
    )
