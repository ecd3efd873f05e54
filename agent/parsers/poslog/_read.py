"""Reading values out of POSLog elements: text, flags, money, times and links.

Element names are local names (see `_stream`); every refusal names its place
the way a support engineer would look it up (/POSLog/Transaction[3]/…/ExtendedAmount).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

from contract import make_key, read_decimal

from .._base import ParseContext, ParseError
from .._xml import local

__all__ = ["TRUE", "Reader", "attr", "flag", "link", "original_key", "own_text", "text"]

TRUE = frozenset({"true", "1", "yes", "y"})
# Amounts and quantities up to 10^12: their products and sums stay exact in Decimal's
# default 28 digits, and no till rings up more.
_MAGNITUDE = 11
# Numbers already read, as written: quantities, tax rates and prices repeat from line to
# line and file to file, and a Decimal (immutable) costs a dozen times a lookup to make.
_NUMBERS: dict[str, Decimal] = {}
_NUMBERS_KEPT = 20_000


def text(element: Element | None, name: str) -> str | None:
    """Stripped text of the first child `name`, or None when absent or blank."""
    if element is None:
        return None
    value = element.findtext(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def own_text(element: Element | None) -> str | None:
    """Stripped text of `element` itself, or None when absent or blank."""
    if element is None or element.text is None:
        return None
    return element.text.strip() or None


def attr(element: Element, name: str) -> str | None:
    """An attribute by local name (Xstore puts some in its own namespace)."""
    value = element.get(name)
    if value is None:
        attrib = element.attrib
        if attrib:
            for key, item in attrib.items():
                if key[:1] == "{" and local(key) == name:
                    return item
    return value


def flag(element: Element | None, name: str) -> bool:
    """A boolean attribute or child element: "true", "1", "yes"."""
    if element is None:
        return False
    value = attr(element, name)
    if value is None:
        value = element.findtext(name)
    return value is not None and value.strip().lower() in TRUE


class Reader:
    """Typed values out of one Transaction element; refusals name the place."""

    def __init__(self, place: str, context: ParseContext) -> None:
        self.place = place
        self.context = context

    def fail(self, reason: str, where: str = "") -> ParseError:
        return ParseError(reason, f"{self.place}{where}")

    def money(self, value: str | None, where: str) -> Decimal | None:
        if value is None:
            return None
        known = _NUMBERS.get(value)
        if known is not None:
            return known
        try:
            # The contract's money rules: plain digits, no exponent, a thousands separator
            # only where the source declares one; "-0" is 0.
            result = read_decimal(value, self.context.thousands)
        except ValueError as exc:
            raise self.fail(str(exc), where) from None
        if result and result.adjusted() > _MAGNITUDE:
            raise self.fail(f"a number out of range: {value[:40]!r}", where)
        if len(_NUMBERS) >= _NUMBERS_KEPT:
            _NUMBERS.clear()
        _NUMBERS[value] = result
        return result

    def when(self, value: str, where: str) -> datetime:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(f"not a date and time: {value[:40]!r}", where) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.context.timezone)
        return moment

    def day(self, value: str, where: str) -> date:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            raise self.fail(f"not a date: {value[:40]!r}", where) from None


def link(element: Element, reader: Reader, where: str) -> dict[str, Any] | None:
    """A `TransactionLink` as the contract's link fields (with `line` and `reason`)."""
    number = text(element, "SequenceNumber") or text(element, "TransactionID")
    if not number:
        return None
    store = text(element, "RetailStoreID")
    if store is None:
        unit = element.find("BusinessUnit")
        store = text(unit, "UnitID") or own_text(unit)  # 6.x: UnitID inside, or the id itself
    day = text(element, "BusinessDayDate")
    if day is None:
        day = text(element.find("BusinessDayDate"), "Date")  # 6.x: BusinessDayDate/Date
    return {
        "store": store,
        "register": text(element, "WorkstationID"),
        "business_date": reader.day(day, where + "/BusinessDayDate") if day else None,
        "transaction_id": number,
        "line": text(element, "LineItemSequenceNumber"),
        "reason": attr(element, "ReasonCode") or text(element, "ReasonCode") or "",
    }


def original_key(found: dict[str, Any], store: str, kind: str = "sale") -> str | None:
    """The idempotency key of a linked transaction, when its business day is known."""
    if found.get("business_date") is None:
        return None
    return make_key(
        kind,
        found.get("store") or store,
        found.get("register"),
        found["business_date"],
        found["transaction_id"],
    )
