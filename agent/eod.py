"""End-of-day summaries: what a store did in one business day, so central can reconcile.

Counts and sums by kind, by tender type and by tax code, with training, control
and suspended transactions counted apart (they are never forwarded as sales).
Pure: the scheduler hands in the day's records and counts.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal

from agent.contract import EndOfDay, EndOfDayTotals, SourceRef, Transaction, make_key

__all__ = ["DayCounts", "summarise_day"]


@dataclasses.dataclass
class DayCounts:
    """Transactions of a day that were counted but not forwarded."""

    training: int = 0
    control: int = 0
    suspended: int = 0


def _add(table: dict[str, list[Decimal]], name: str, amount: Decimal) -> None:
    entry = table.setdefault(name, [Decimal(0), Decimal(0)])
    entry[0] += 1
    entry[1] += amount


def _totals(table: dict[str, list[Decimal]]) -> dict[str, EndOfDayTotals]:
    return {
        name: EndOfDayTotals(count=int(count), amount=amount)
        for name, (count, amount) in sorted(table.items())
    }


def summarise_day(
    *,
    store: str,
    business_date: date,
    transactions: Iterable[Transaction],
    counts: DayCounts,
    default_currency: str,
    closed_at: datetime,
    revision: int = 1,
) -> list[EndOfDay]:
    """One EndOfDay per currency seen that day (normally one).

    Tender amounts are net of change and cash back, which is what the drawer and
    the card settlement hold.
    """
    per_currency: dict[str, dict[str, dict[str, list[Decimal]]]] = defaultdict(
        lambda: {"kind": {}, "tender": {}, "tax": {}}
    )
    for txn in transactions:
        tables = per_currency[txn.currency]
        _add(tables["kind"], txn.kind, txn.total)
        if txn.kind == "cancel":
            continue  # abandoned before tender: nothing reached the drawer
        for tender in txn.tenders:
            net = tender.amount - (tender.change or Decimal(0)) - (tender.cashback or Decimal(0))
            _add(tables["tender"], tender.type.value, net)
        taxes = txn.taxes or [t for line in txn.lines if not line.voided for t in line.taxes]
        for tax in taxes:
            _add(tables["tax"], tax.code, tax.amount)
    if not per_currency:
        per_currency[default_currency]  # a day with only skipped transactions still closes
    summaries = []
    for index, (currency, tables) in enumerate(sorted(per_currency.items())):
        reference = "summary" if len(per_currency) == 1 else f"summary-{currency}"
        if revision > 1:
            reference = f"{reference}-r{revision}"
        extra = index == 0  # skipped counts go with the first summary only
        summaries.append(
            EndOfDay(
                kind="end_of_day",
                key=make_key("end_of_day", store, None, business_date, reference),
                store=store,
                business_date=business_date,
                occurred_at=closed_at,
                source=SourceRef(file="", position="end_of_day"),
                currency=currency,
                by_kind=_totals(tables["kind"]),
                by_tender=_totals(tables["tender"]),
                by_tax=_totals(tables["tax"]),
                training=counts.training if extra else 0,
                control=counts.control if extra else 0,
                suspended=counts.suspended if extra else 0,
                revision=revision,
            )
        )
    return summaries
