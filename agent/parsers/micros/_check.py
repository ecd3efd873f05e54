"""A MICROS guest check in one shape, whichever export it came from (Simphony JSON or RES
delimited), and what it becomes: a `Transaction`, or a `Skipped` (training, open, or an
earlier state of a check the same file closes again).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from contract import LineType, TenderType, make_key

from .._base import ParseContext, Parsed, ParseError, Skipped
from .._tabular import card_brand, mapped_tender, tender_type, transaction

__all__ = ["Check", "Detail", "day", "moment", "records"]


@dataclasses.dataclass(slots=True)
class Detail:
    """One detail line of a check: an item, service charge, discount or tender."""

    kind: str  # item | service_charge | discount | tender
    number: str
    ref: str  # miNum, svcChgNum, dscNum, tmedNum, or the RES item / tender code
    amount: Decimal
    quantity: Decimal = Decimal(1)
    voided: bool = False
    description: str = ""
    detail_id: str = ""  # Simphony dtlId, so item discounts find their item
    parent: str = ""  # Simphony parDtlId
    change: Decimal | None = None  # RES tender rows state the change themselves
    method: str = ""  # the tender's code as the POS names it ("tmed 101"); else `ref`


@dataclasses.dataclass(slots=True)
class Check:
    """A guest check with the facts both exports give."""

    place: str
    number: str = ""
    instance: str = ""  # Simphony guestCheckId
    store: str = ""
    register: str | None = None
    operator: str | None = None
    business_date: date | None = None
    opened_at: datetime | None = None
    closed_at: datetime | None = None
    total: Decimal | None = None
    training: bool = False
    cancelled: bool = False
    open: bool = False
    reopened: bool = False
    returns: int = 0
    included_tax: bool = False
    details: list[Detail] = dataclasses.field(default_factory=list)
    taxes: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    attributes: dict[str, str] = dataclasses.field(default_factory=dict)


def moment(value: Any, utc: bool, context: ParseContext, place: str) -> datetime:
    """A check time: `…UTC` fields are UTC, `…Lcl` and RES times local to the store."""
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ParseError(f"not a date and time: {text[:40]!r}", place) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC if utc else context.timezone)
    return parsed.astimezone(context.timezone)


def day(value: Any, place: str) -> date:
    """A business date (`YYYY-MM-DD`, a time after it is ignored)."""
    text = str(value).strip()
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ParseError(f"not a business date: {text[:40]!r}", place) from None


Refuse = Callable[[int, ParseError], Parsed]
"""Turns the refusal of check `index` into a `refused` record (Simphony, where each check
is a JSON object of its own); without one, a refused check refuses its file (RES)."""


def records(
    checks: list[Check], context: ParseContext, refuse: Refuse | None = None
) -> Iterator[Parsed]:
    """The records of a file's checks, in file order. When the file holds one check more
    than once (a check reopened and closed again, or two exports joined), the latest
    state is the record and the others are skipped as `duplicate_in_file`."""
    latest: dict[tuple[str, str | None, date | None, str], int] = {}
    bad: dict[int, ParseError] = {}
    for index, check in enumerate(checks):
        if not check.number:
            bad[index] = ParseError("a check without a check number", check.place)
        elif check.business_date is None:
            bad[index] = ParseError("a check without a business date", check.place)
        else:
            identity = (check.store, check.register, check.business_date, check.number)
            best = latest.get(identity)
            if best is None or _rank(check, index) >= _rank(checks[best], best):
                latest[identity] = index
        if index in bad and refuse is None:
            raise bad[index]
    winners = set(latest.values())
    for index, check in enumerate(checks):
        if index in bad and refuse is not None:
            yield refuse(index, bad[index])
        elif index not in winners:
            yield _skipped("duplicate_in_file", check)
        elif check.training:
            yield _skipped("training", check)
        elif check.open:
            yield _skipped("suspended", check)
        elif refuse is None:
            yield _record(check, context)
        else:
            try:
                yield _record(check, context)
            except ParseError as exc:
                yield refuse(index, exc)


def _rank(check: Check, index: int) -> tuple[bool, datetime, int]:
    closed = check.closed_at or datetime.min.replace(tzinfo=UTC)
    return check.reopened, closed, index


def _skipped(reason: Any, check: Check) -> Skipped:
    return Skipped(
        reason, check.store, check.business_date, check.number, check.register, check.place
    )


def _compensate(details: list[Detail]) -> None:
    """A void or error correct is a line of the opposite sign flagged voided; it also voids
    the earlier line it takes back, so neither counts."""
    for index, detail in enumerate(details):
        if not detail.voided or not detail.amount:
            continue
        for earlier in reversed(details[:index]):
            if (
                not earlier.voided
                and earlier.kind == detail.kind
                and earlier.ref == detail.ref
                and earlier.amount == -detail.amount
            ):
                earlier.voided = True
                break


def _tender_type(detail: Detail, context: ParseContext) -> TenderType:
    mapped = mapped_tender(context.columns, f"tmed.{detail.ref}")
    return mapped or tender_type(detail.description or detail.ref)


def _tenders(details: list[Detail], context: ParseContext) -> list[dict[str, Any]]:
    """Tenders in order; a negative tender after one of the same media is change given."""
    out: list[dict[str, Any]] = []
    for detail in details:
        if detail.kind != "tender" or detail.voided:
            continue
        method = detail.method or detail.ref
        if detail.amount < 0 and detail.change is None:
            earlier = next((t for t in reversed(out) if t["ref"] == detail.ref), None)
            if earlier is not None and earlier["amount"] > 0:
                earlier["change"] = (earlier["change"] or Decimal(0)) - detail.amount
                continue
        kind = _tender_type(detail, context)
        tender: dict[str, Any] = {
            "ref": detail.ref,
            "type": kind,
            "method": method,
            "amount": detail.amount,
            "change": detail.change or None,
        }
        brand = card_brand(detail.description or method) if kind is TenderType.CARD else None
        if brand:
            tender["card"] = {"brand": brand}
        out.append(tender)
    for tender in out:
        del tender["ref"]
    return out


def _lines(details: list[Detail]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Item and service charge lines (item discounts attached), and check discounts."""
    lines: list[dict[str, Any]] = []
    by_id: dict[str, dict[str, Any]] = {}
    discounts: list[dict[str, Any]] = []
    for detail in details:
        if detail.kind in ("item", "service_charge"):
            line = {
                "number": detail.number,
                "type": LineType.ITEM if detail.kind == "item" else LineType.SERVICE_CHARGE,
                "sku": detail.ref,
                "description": detail.description,
                "quantity": detail.quantity,
                "amount": detail.amount,
                "voided": detail.voided,
                "discounts": [],
            }
            lines.append(line)
            if detail.detail_id:
                by_id[detail.detail_id] = line
        elif detail.kind == "discount" and not detail.voided:
            # POS discount lines are negative; the contract counts a discount positive.
            discount: dict[str, Any] = {
                "code": detail.ref,
                "description": detail.description,
                "amount": -detail.amount,
            }
            parent = by_id.get(detail.parent) if detail.parent else None
            (parent["discounts"] if parent is not None else discounts).append(discount)
    return lines, discounts


def _included(check: Check, lines: list[dict[str, Any]], discounts: list[dict[str, Any]]) -> bool:
    """Whether the check's taxes are inside its prices: stated by the items (Simphony's
    `inclTax`), else read from the arithmetic (lines less discounts already make the total)."""
    if check.included_tax:
        return True
    live = sum((ln["amount"] for ln in lines if not ln["voided"]), Decimal(0))
    taken = sum(
        (d["amount"] for ln in lines if not ln["voided"] for d in ln["discounts"]), Decimal(0)
    )
    return live - taken - sum((d["amount"] for d in discounts), Decimal(0)) == check.total


def _record(check: Check, context: ParseContext) -> Parsed:
    day = check.business_date
    if day is None:
        raise ParseError("a check without a business date", check.place)
    if check.total is None:
        raise ParseError("a check without a total", check.place)
    _compensate(check.details)
    lines, discounts = _lines(check.details)
    included = _included(check, lines, discounts)
    if check.cancelled:
        kind = "cancel"
    elif check.returns and check.total < 0:
        kind = "return"
    else:
        kind = "sale"
    occurred = (
        check.closed_at
        or check.opened_at
        or datetime.combine(day, datetime.min.time(), context.timezone)
    )
    attributes = dict(check.attributes)
    if check.instance:
        attributes["guest_check_id"] = check.instance
    if check.reopened:
        attributes["reopened"] = "true"
    return transaction(
        check.place,
        kind=kind,
        key=make_key(kind, check.store, check.register, day, check.number),
        store=check.store,
        register=check.register,
        operator=check.operator,
        transaction_id=check.number,
        business_date=day,
        occurred_at=occurred,
        source={"file": context.file_name, "position": check.place, "sha256": context.sha256},
        currency=context.currency,
        total=check.total,
        lines=lines,
        tenders=_tenders(check.details, context),
        taxes=[{**t, "included": included} for t in check.taxes],
        discounts=discounts,
        attributes=attributes,
    )
