"""The day's totals by kind, tender type and tax code: one rule, used by the agent to
write its end-of-day record and by the relay to reconcile what it received against it.

Tender amounts are net of change and cash back (what the drawer and the card
settlement hold); a cancelled transaction counts by kind only (nothing reached the
drawer); taxes come from the transaction's summary, else from its lines not voided.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from ._records import EndOfDayTotals, Transaction

__all__ = ["DayTables", "day_totals"]

DayTables = dict[str, dict[str, dict[str, EndOfDayTotals]]]
"""currency → group ("kind", "tender", "tax") → name → count and amount."""


_Sums = dict[str, dict[str, list[Decimal]]]


def _add(table: dict[str, list[Decimal]], name: str, amount: Decimal) -> None:
    entry = table.setdefault(name, [Decimal(0), Decimal(0)])
    entry[0] += 1
    entry[1] += amount


def day_totals(transactions: Iterable[Transaction]) -> DayTables:
    """Totals of `transactions` per currency, by kind, tender type and tax code."""
    sums: dict[str, _Sums] = {}
    for txn in transactions:
        tables = sums.setdefault(txn.currency, {"kind": {}, "tender": {}, "tax": {}})
        _add(tables["kind"], txn.kind, txn.total)
        if txn.kind == "cancel":
            continue
        for tender in txn.tenders:
            net = tender.amount - (tender.change or Decimal(0)) - (tender.cashback or Decimal(0))
            _add(tables["tender"], tender.type.value, net)
        taxes = txn.taxes or [t for line in txn.lines if not line.voided for t in line.taxes]
        for tax in taxes:
            _add(tables["tax"], tax.code, tax.amount)
    return {
        currency: {
            group: {
                name: EndOfDayTotals(count=int(count), amount=amount)
                for name, (count, amount) in sorted(table.items())
            }
            for group, table in tables.items()
        }
        for currency, tables in sums.items()
    }
