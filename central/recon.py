"""Reconciliation: per store and business day, what the POS says it did (its end-of-day
totals, latest revision) beside what the relay received and what each target
confirmed — by kind, tender type and tax code, in the same rule the agent used
(`contract.day_totals`). Where a target stated its own total for a sale (the
order total commercetools or Adobe Commerce answered), that figure stands for the
target, not the POS's. A line differs when a count differs or an amount differs by
more than the tolerance.

Online orders sent down to the store are counted beside it (`OrderDay`): received,
handed to the store, fulfilled by the POS's status. Central knows no store's business
day for an order, so an order counts on the UTC day central first queued it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from contract import (
    EndOfDay,
    EndOfDayTotals,
    Refused,
    Transaction,
    day_totals,
    record_adapter,
)

from .inbox import DayRecord, OrderDay, Views

__all__ = [
    "FULFILMENT",
    "ReconDay",
    "ReconLine",
    "order_lines",
    "reconcile",
    "reconcile_day",
    "to_csv",
]

GROUPS = ("kind", "tender", "tax")
FULFILMENT = ("picked_up", "partially_picked_up", "shipped", "cancelled")
"""What the POS did with an online order (the `fulfillment` record's status), in the
order reconciliation shows them."""
ZERO = Decimal(0)


@dataclass(frozen=True)
class ReconLine:
    group: str
    name: str
    pos: EndOfDayTotals | None
    received: EndOfDayTotals
    targets: dict[str, EndOfDayTotals | None]
    """Per target: what it confirmed, or None where the target does not take this kind."""
    differs: bool


@dataclass(frozen=True)
class ReconDay:
    store: str
    business_date: date
    currency: str
    revision: int | None
    """The end-of-day revision compared; None when the store has not closed the day."""
    lines: list[ReconLine] = field(default_factory=list)
    training: int = 0
    control: int = 0
    suspended: int = 0
    refused_open: int = 0
    off_balance: int = 0
    """Transactions of the day that miss their own total (`imbalance` or tenders): a
    target whose imbalance policy is `post` posted them as the POS stated them."""
    """Refused transactions of the day not read again yet (nor closed by a person): money
    the POS took that no target has seen."""

    @property
    def differences(self) -> int:
        return sum(1 for line in self.lines if line.differs)


def _off(a: EndOfDayTotals | None, b: EndOfDayTotals | None, tolerance: Decimal) -> bool:
    a = a or EndOfDayTotals()
    b = b or EndOfDayTotals()
    return a.count != b.count or abs(a.amount - b.amount) > tolerance


def reconcile(
    store: str,
    business_date: date,
    records: Sequence[DayRecord],
    target_kinds: dict[str, list[str]],
    *,
    tolerance: Decimal = Decimal("0.01"),
) -> list[ReconDay]:
    """One ReconDay per currency of the day (normally one)."""
    transactions: list[tuple[Transaction, DayRecord]] = []
    closing: dict[str, EndOfDay] = {}
    refused = open_refused = 0
    for row in records:
        record = record_adapter.validate_python(row.body)
        if isinstance(record, Transaction):
            transactions.append((record, row))
        elif isinstance(record, Refused):
            refused += 1
            open_refused += row.state != "resolved"
        elif isinstance(record, EndOfDay):
            # The newest summary wins. The seqs it covers say which that is: an agent
            # whose outbox was rebuilt numbers its revisions from 1 again, and a store's
            # clock that jumped ahead stamps an old summary later than a new one. (Its
            # time and revision decide only between summaries that give no seq.)
            known = closing.get(record.currency)
            newer = (record.covered_seq, record.occurred_at, record.revision)
            if known is None or newer > (known.covered_seq, known.occurred_at, known.revision):
                closing[record.currency] = record
    received = day_totals(t for t, _ in transactions)
    confirmed = {
        target: day_totals(
            _as_confirmed(t, row, target) for t, row in transactions if target in row.posted_to
        )
        for target in target_kinds
    }
    days = []
    currencies = sorted(set(received) | set(closing)) or (["XXX"] if refused else [])
    for currency in currencies:
        eod = closing.get(currency)
        ours = received.get(currency, {g: {} for g in GROUPS})
        pos_tables = (
            {"kind": eod.by_kind, "tender": eod.by_tender, "tax": eod.by_tax} if eod else None
        )
        lines = []
        for group in GROUPS:
            names = sorted(set(ours[group]) | set(pos_tables[group] if pos_tables else ()))
            for name in names:
                got = ours[group].get(name, EndOfDayTotals())
                pos = pos_tables[group].get(name) if pos_tables else None
                per_target: dict[str, EndOfDayTotals | None] = {}
                differs = pos_tables is not None and _off(pos, got, tolerance)
                for target, kinds in target_kinds.items():
                    if group == "kind" and name not in kinds:
                        per_target[target] = None
                        continue
                    theirs = confirmed[target].get(currency, {}).get(group, {}).get(name)
                    per_target[target] = theirs or EndOfDayTotals()
                    if group == "kind" and _off(theirs, got, tolerance):
                        differs = True
                lines.append(ReconLine(group, name, pos, got, per_target, differs))
        off = [(t, row) for t, row in transactions if t.currency == currency and _off_balance(t)]
        if off:
            # Posted off balance where a target's policy says `post`: flagged, with by how
            # much the lines miss the totals, beside what each target took of them.
            got = EndOfDayTotals(count=len(off), amount=sum((t.imbalance for t, _ in off), ZERO))
            per_target = {
                target: EndOfDayTotals(
                    count=sum(1 for _, row in off if target in row.posted_to),
                    amount=sum((t.imbalance for t, row in off if target in row.posted_to), ZERO),
                )
                for target in target_kinds
            }
            lines.append(ReconLine("kind", "off balance", None, got, per_target, True))
        first = currency == currencies[0]  # refused records have no currency: counted once
        if first and (refused or (eod is not None and eod.refused)):
            # Transactions the store could not read: the POS's count beside what arrived,
            # and a difference while any of them waits to be read again.
            said = EndOfDayTotals(count=eod.refused) if eod is not None else None
            got = EndOfDayTotals(count=refused)
            differs = open_refused > 0 or (said is not None and said.count != refused)
            lines.append(
                ReconLine("kind", "refused", said, got, dict.fromkeys(target_kinds), differs)
            )
        days.append(
            ReconDay(
                store=store,
                business_date=business_date,
                currency=currency,
                revision=eod.revision if eod else None,
                lines=lines,
                training=eod.training if eod else 0,
                control=eod.control if eod else 0,
                suspended=eod.suspended if eod else 0,
                refused_open=open_refused if first else 0,
                off_balance=len(off),
            )
        )
    return days


def _off_balance(txn: Transaction) -> bool:
    tenders = txn.attributes.get("tender_imbalance")
    return bool(txn.imbalance) or (tenders is not None and tenders.strip("0.-") != "")


def _as_confirmed(txn: Transaction, row: DayRecord, target: str) -> Transaction:
    """The transaction with the total the target stated for it, where it stated one."""
    stated = row.confirmed.get(target)
    return txn if stated is None else txn.model_copy(update={"total": Decimal(stated)})


async def reconcile_day(
    inbox: Views,
    store: str,
    business_date: date,
    target_kinds: dict[str, list[str]],
    *,
    tolerance: Decimal = Decimal("0.01"),
) -> list[ReconDay]:
    records = await inbox.day_records(store, business_date)
    return reconcile(store, business_date, records, target_kinds, tolerance=tolerance)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def csv_cell(value: object) -> object:
    """A cell a spreadsheet will not run: text starting with = + - @ (or a tab or carriage
    return) gets a leading apostrophe. Plain numbers, negative amounts included, stay."""
    formula = isinstance(value, str) and value.startswith(_FORMULA_START)
    if formula and not _PLAIN_NUMBER.fullmatch(str(value)):
        return f"'{value}"
    return value


def order_lines(orders: OrderDay) -> list[tuple[str, int]]:
    """The day's online orders as (name, count), in the order the page and the CSV show
    them: received, handed to the store, fulfilled, then each fulfilment status, then
    those the platform cancelled."""
    statuses = [*FULFILMENT, *sorted(set(orders.fulfilled) - set(FULFILMENT))]
    return [
        ("received", orders.received),
        ("handed_to_store", orders.handed),
        ("fulfilled", orders.fulfilled_total),
        *((status, orders.fulfilled.get(status, 0)) for status in statuses),
        ("cancelled_online", orders.cancelled_online),
    ]


def to_csv(days: Sequence[ReconDay], orders: OrderDay | None = None) -> str:
    """The days as CSV: one row per line, POS beside received beside each target. A day
    with online orders ends with one row per figure of `order_lines`: group `orders`, no
    currency, the count in `received_count`, the other columns empty."""
    targets = sorted({t for day in days for line in day.lines for t in line.targets})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = ["store", "business_date", "currency", "group", "name"]
    header += ["pos_count", "pos_amount", "received_count", "received_amount"]
    for target in targets:
        header += [f"{target}_count", f"{target}_amount"]
    writer.writerow([csv_cell(h) for h in [*header, "differs"]])
    for day in days:
        for line in day.lines:
            row: list[object] = [day.store, day.business_date, day.currency, line.group, line.name]
            row += [line.pos.count, line.pos.amount] if line.pos else ["", ""]
            row += [line.received.count, line.received.amount]
            for target in targets:
                theirs = line.targets.get(target)
                row += [theirs.count, theirs.amount] if theirs else ["", ""]
            writer.writerow([*(csv_cell(v) for v in row), "yes" if line.differs else "no"])
    if orders is not None and orders.received:
        for name, count in order_lines(orders):
            figure: list[object] = [orders.store, orders.day, "", "orders", name, "", ""]
            figure += [count, "", *([""] * 2 * len(targets))]
            writer.writerow([*(csv_cell(v) for v in figure), "no"])
    return out.getvalue()
