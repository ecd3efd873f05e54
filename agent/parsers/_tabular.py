"""Values the `micros` and `magestore` parsers read the same way: bounded exact amounts,
identifiers and flags from JSON or text, tender types from the POS's own names, and one
way to turn a transaction's parts into a validated `Transaction`.

Importing this module registers no parser, so it does not disturb the sniffing order.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from contract import Discount, Tax, TenderType, Transaction, TransactionLine

from ._base import ParseError
from ._text import Repeated, exact_decimal, first_error, load_json, refuse_repeated

__all__ = [
    "BOMS_WIDE",
    "amount",
    "card_brand",
    "flag",
    "ident",
    "mapped_tender",
    "read_json",
    "refuse_binary",
    "sniff_head",
    "tender_type",
    "transaction",
]

BOMS_WIDE = (b"\xff\xfe", b"\xfe\xff")
# Far above any till's total, far below where Decimal arithmetic would leave its precision.
_LIMIT = Decimal("1e15")
_TRUE = {"1", "true", "t", "y", "yes"}
_TENDER_WORDS = (
    (re.compile(r"cash|bar\b|espece|efectivo|contant"), TenderType.CASH),
    (re.compile(r"gift"), TenderType.GIFT_CARD),
    (re.compile(r"voucher|coupon|store.?credit|customer.?credit|credit.?note"), TenderType.VOUCHER),
    (re.compile(r"loyal|point|reward"), TenderType.LOYALTY),
    (
        re.compile(
            r"card|visa|master|amex|american.?express|maestro|debit|credit|discover|diners|"
            r"jcb|eftpos|girocard|\bcc|\bec\b|stripe|adyen|tyro|authorize|bambora|moneris"
        ),
        TenderType.CARD,
    ),
)
_BRANDS = (
    ("visa", "visa"),
    ("master", "mastercard"),
    ("amex", "amex"),
    ("american express", "amex"),
    ("maestro", "maestro"),
    ("discover", "discover"),
    ("diners", "diners"),
    ("jcb", "jcb"),
    ("union", "unionpay"),
    ("girocard", "girocard"),
)


def amount(value: Any, place: str) -> Decimal | None:
    """An exact amount or quantity (None when blank), refused beyond ±10^15."""
    result = exact_decimal(value, place)
    if result is not None and abs(result) >= _LIMIT:
        raise ParseError(f"out of range for a till: {str(value)[:40]!r}", place)
    return result


def ident(value: Any) -> str:
    """An identifier as text: numbers without a fraction as integers ("1201", not "1201.0");
    "" when blank or not a scalar."""
    if value is None or isinstance(value, bool | dict | list):
        return ""
    if isinstance(value, Decimal):
        if not value.is_finite():
            return ""
        if value == value.to_integral_value() and abs(value) < _LIMIT:
            return str(int(value))
    return str(value).strip()[:128]


def flag(value: Any) -> bool:
    """A POS flag: true, 1, "Y", "true"; everything else is false."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | Decimal):
        return value != 0
    return isinstance(value, str) and value.strip().lower() in _TRUE


def read_json(data: bytes, repeats: list[str] | None = None) -> Any:
    """The whole JSON document, numbers with a fraction as Decimal; any failure a ParseError.
    Keys an object repeats are added to `repeats` (see `_text.Repeated`); a document whose
    top object repeats one is refused whole."""
    try:
        doc = load_json(data, repeats)
        if isinstance(doc, Repeated):
            refuse_repeated(doc, "")
        return doc
    except RecursionError:
        raise ParseError("the JSON nests too deeply to be a POS export") from None
    except ValueError as exc:  # e.g. an integer beyond Python's digit limit
        raise ParseError(f"not valid JSON: {exc}") from None


def refuse_binary(head: bytes, what: str) -> None:
    """Refuse bytes with NULs that are not UTF-16/32 text."""
    if b"\0" in head and not head.startswith(BOMS_WIDE):
        raise ParseError(f"the file is binary, not {what}", f"byte {head.index(0)}")


def sniff_head(head: bytes) -> bytes:
    """The first bytes as UTF-8 without a BOM, so a UTF-16 export sniffs like any other."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        head = head.decode("utf-32", errors="replace").encode()
    elif head.startswith(BOMS_WIDE):
        head = head.decode("utf-16", errors="replace").encode()
    return head.removeprefix(b"\xef\xbb\xbf").lstrip()


def mapped_tender(columns: dict[str, str], key: str) -> TenderType | None:
    """The tender type the source's column map gives a POS tender code (`tmed.101`,
    `payment.cashforpos`); None when it gives none; a ParseError when it names no type."""
    wanted = columns.get(key)
    if wanted is None:
        return None
    try:
        return TenderType(wanted.strip().lower())
    except ValueError:
        known = ", ".join(t.value for t in TenderType)
        raise ParseError(
            f"columns.{key}: {wanted!r} is not a tender type ({known})", "columns"
        ) from None


def tender_type(text: str) -> TenderType:
    """The tender type a POS's own tender name or code suggests; OTHER when it says nothing."""
    lowered = text.lower().replace("_", " ")
    for pattern, kind in _TENDER_WORDS:
        if pattern.search(lowered):
            return kind
    return TenderType.OTHER


def card_brand(text: str) -> str | None:
    """The card brand a tender name or card type names, if any."""
    lowered = text.lower()
    return next((brand for word, brand in _BRANDS if word in lowered), None)


def transaction(
    place: str,
    *,
    total: Decimal,
    currency: str,
    lines: list[dict[str, Any]],
    taxes: list[dict[str, Any]],
    discounts: list[dict[str, Any]],
    **fields: Any,
) -> Transaction:
    """A validated Transaction with its imbalance; a contract violation is a ParseError at
    `place`. The POS total is kept as given."""
    try:
        line_models = [TransactionLine.model_validate(ln) for ln in lines]
        tax_models = [Tax.model_validate(t) for t in taxes]
        discount_models = [Discount.model_validate(d) for d in discounts]
        return Transaction.model_validate(
            {
                **fields,
                "total": total,
                "currency": currency,
                "lines": line_models,
                "taxes": tax_models,
                "discounts": discount_models,
                "imbalance": Transaction.compute_imbalance(
                    total, line_models, tax_models, discount_models, currency
                ),
            }
        )
    except ValidationError as exc:
        raise ParseError(first_error(exc), place) from None
