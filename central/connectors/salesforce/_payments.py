"""Salesforce payments: each POS tender as one row of the configured payment object,
its fields named by the configured map."""

from __future__ import annotations

from typing import Any

from contract import Transaction

from .._base import Routed
from ._settings import SalesforceSettings

__all__ = ["payment_rows"]


def payment_rows(
    settings: SalesforceSettings, routed: Routed, record: Transaction
) -> list[dict[str, Any]]:
    """One row per tender in the configured payment object and field map (none for a
    cancelled basket: nothing was paid)."""
    if not settings.payment_object or record.kind == "cancel":
        return []
    fields = settings.payment_fields
    rows = []
    for index, tender in enumerate(record.tenders):
        values: dict[str, Any] = {
            "order": {settings.order_external_id: routed.key},
            "amount": tender.amount - (tender.change or 0),
            "method": routed.payments.get(tender.type.value, tender.type.value),
            "date": record.occurred_at.isoformat(),
            "auth_code": tender.auth_code,
            "card_brand": tender.card.brand if tender.card else None,
            "card_last4": tender.card.last4 if tender.card else None,
        }
        row: dict[str, Any] = {
            "attributes": {"type": settings.payment_object},
            settings.payment_external_id: f"{routed.key}#t{index}",
            **settings.payment_static,
        }
        for name, value in values.items():
            if name in fields and value is not None:
                row[fields[name]] = value
        rows.append(row)
    return rows
