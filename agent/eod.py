"""End-of-day summaries: what a store did in one business day, so central can reconcile.

Counts and sums by kind, by tender type and by tax code, with training, control
and suspended transactions counted apart (they are never forwarded as sales), and
refused transactions counted too (each went to central as a `refused` record).
Pure: the scheduler hands in the day's records and counts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import date, datetime

from contract import EndOfDay, SourceRef, Transaction, day_totals, make_key

__all__ = ["DayCounts", "summarise_day"]


@dataclasses.dataclass
class DayCounts:
    """Transactions of a day that were counted but not forwarded."""

    training: int = 0
    control: int = 0
    suspended: int = 0
    refused: int = 0


def summarise_day(
    *,
    store: str,
    business_date: date,
    transactions: Iterable[Transaction],
    counts: DayCounts,
    default_currency: str,
    closed_at: datetime,
    revision: int = 1,
    covered: int = 0,
) -> list[EndOfDay]:
    """One EndOfDay per currency seen that day (normally one).

    `covered` is the last outbox seq the summary counts, and part of its key: an outbox
    rebuilt after damage numbers revisions from 1 again, and its summaries must not be
    taken for ones central already holds (central compares the newest one it received).

    Tender amounts are net of change and cash back, which is what the drawer and
    the card settlement hold.
    """
    per_currency = day_totals(transactions)
    if not per_currency:
        # A day with only skipped transactions still closes.
        per_currency[default_currency] = {"kind": {}, "tender": {}, "tax": {}}
    summaries = []
    for index, (currency, tables) in enumerate(sorted(per_currency.items())):
        reference = "summary" if len(per_currency) == 1 else f"summary-{currency}"
        if revision > 1:
            reference = f"{reference}-r{revision}"
        if covered:
            reference = f"{reference}-s{covered}"
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
                by_kind=tables["kind"],
                by_tender=tables["tender"],
                by_tax=tables["tax"],
                training=counts.training if extra else 0,
                control=counts.control if extra else 0,
                suspended=counts.suspended if extra else 0,
                refused=counts.refused if extra else 0,
                revision=revision,
                covered_seq=covered,
            )
        )
    return summaries
