"""The arithmetic every record passes, compiled with the POSLog reader (setup.py): a
value read as an exact Decimal, the currency's exponent given to a transaction's amounts,
and how far its total is from its lines. Amounts are rewritten through the models'
`__dict__` (they are frozen); everything else is read as attributes."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

__all__ = [
    "currency_exponent",
    "fix_exponents",
    "imbalance",
    "quantize_amount",
    "read_decimal",
    "to_decimal",
]

# The money rules for amounts and quantities written as text (POS files, record bodies):
# ASCII digits, at most one leading sign, at most one decimal point ("12.30", "-4", ".5",
# "3."). No exponent ("1e3": a till never writes one, and "1e-70000000" is 70 MB written
# out), no underscore ("5_000", which Python reads), no other digits ("５", "٣"), no
# spaces inside, and a thousands separator only where the source declares one, and then
# only between groups of three ("1,234.50"). "-0" (and "-0.00") is 0, the same exponent.
_PLAIN = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_GROUPED: dict[str, re.Pattern[str]] = {}
_EXPONENT_FORM = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]+")

# Currencies whose minor unit is not two digits (ISO 4217). Everything else is 2.
_EXPONENTS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    "CLF": 4,
    "UYW": 4,
}


def currency_exponent(currency: str) -> int:
    """Digits after the decimal point for an ISO 4217 currency code."""
    return _EXPONENTS.get(currency.upper(), 2)


def to_decimal(value: Any) -> Decimal:
    """Accept str, int or Decimal; refuse float, bool and non-finite values."""
    if isinstance(value, Decimal):  # first: what parsers hand over
        result = value
    elif isinstance(value, (bool, float)):  # a tuple: no union object made per call
        raise ValueError("money and quantities must be decimal strings or integers, never floats")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = read_decimal(value)
        except ValueError as exc:
            if str(exc).startswith("not a number"):
                raise ValueError(f"not a decimal number: {value!r}") from None
            raise
    else:
        raise ValueError(f"expected a decimal string, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    if not result and result.is_signed():
        return result.copy_abs()  # "-0" is 0
    return result


def read_decimal(text: str, thousands: str = "") -> Decimal:
    """An amount or quantity written as text, by the money rules above (`thousands`: the
    separator the source declares, if any); ValueError saying which rule it breaks."""
    value = text.strip()
    if _PLAIN.fullmatch(value) is None:
        if not thousands or _grouped(thousands).fullmatch(value) is None:
            raise ValueError(_broken_rule(value, thousands))
        value = value.replace(thousands, "")
    result = Decimal(value)
    if not result and result.is_signed():
        return result.copy_abs()  # "-0.00" is 0.00
    return result


def _grouped(separator: str) -> re.Pattern[str]:
    pattern = _GROUPED.get(separator)
    if pattern is None:
        mark = re.escape(separator)
        pattern = _GROUPED[separator] = re.compile(
            rf"[+-]?[0-9]{{1,3}}(?:{mark}[0-9]{{3}})+(?:\.[0-9]*)?"
        )
    return pattern


def _broken_rule(value: str, thousands: str) -> str:
    shown = repr(value[:40])
    if value.lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        return f"not a finite number: {shown}"
    if _EXPONENT_FORM.fullmatch(value):
        return f"{shown} is in E notation, which no amount is written in"
    if any(not ("0" <= c <= "9") and c.isdigit() for c in value[:64]):
        return f"{shown} has digits other than 0-9"
    for separator in (",", "_", "'", " ", "\u00a0", "\u202f"):
        if separator in value and _PLAIN.fullmatch(value.replace(separator, "")):
            said = f"the source declares {thousands!r}" if thousands else "the source declares none"
            return f"{shown} has a separator {separator!r} ({said}: the thousands setting)"
    return f"not a number: {shown}"


def quantize_amount(value: Decimal, currency: str) -> Decimal:
    """Give an amount the currency's exponent; refuse one that would lose precision."""
    return _quantized(value, _quantum(currency), currency)


# The quantum of each currency met: every record asks for its currency's twice (exponents,
# imbalance), and building it costs more than looking it up. ISO codes are few.
_QUANTA: dict[str, Decimal] = {}
_QUANTA_KEPT = 1000


def _quantum(currency: str) -> Decimal:
    """The currency's smallest unit as an exponent: 0.01 for EUR, 1 for JPY."""
    quantum = _QUANTA.get(currency)
    if quantum is None:
        quantum = Decimal(1).scaleb(-currency_exponent(currency))
        if len(_QUANTA) < _QUANTA_KEPT:
            _QUANTA[currency] = quantum
    return quantum


def _quantized(value: Decimal, quantum: Decimal, currency: str) -> Decimal:
    quantized = value.quantize(quantum)
    if quantized != value:
        raise ValueError(f"{value} has more decimals than {currency} allows")
    return quantized


def fix_exponents(txn: Any) -> None:
    """Give every amount of a transaction the currency's exponent in place ("12.3" ->
    "12.30"), refusing one that would lose a digit. The models are frozen: only the
    notation changes, never the value. Most amounts already have it (`same_quantum`, where
    `as_tuple` would build a tuple of every digit)."""
    currency: str = txn.currency
    quantum = _quantum(currency)
    _fix(txn.__dict__, ("total", "imbalance"), quantum, currency)
    for line in txn.lines:
        _fix(line.__dict__, ("amount",), quantum, currency)
        for discount in line.discounts:
            _fix(discount.__dict__, ("amount",), quantum, currency)
        for tax in line.taxes:
            _fix(tax.__dict__, ("amount", "taxable"), quantum, currency)
    for tender in txn.tenders:
        _fix(tender.__dict__, ("amount", "change", "cashback"), quantum, currency)
    for tax in txn.taxes:
        _fix(tax.__dict__, ("amount", "taxable"), quantum, currency)
    for discount in txn.discounts:
        _fix(discount.__dict__, ("amount",), quantum, currency)


def _fix(values: dict[str, Any], names: tuple[str, ...], quantum: Decimal, currency: str) -> None:
    for name in names:
        value: Decimal | None = values[name]
        if value is not None and not value.same_quantum(quantum):
            values[name] = _quantized(value, quantum, currency)


def imbalance(
    total: Decimal, lines: list[Any], taxes: list[Any], discounts: list[Any], currency: str
) -> Decimal:
    """How far the POS total is from what the lines add up to (0 when exact): lines not
    voided, less their discounts, plus taxes not included in prices (the transaction's
    summary, else the lines'), less transaction discounts."""
    expected = Decimal(0)
    for line in lines:
        if line.voided:
            continue
        expected += line.amount
        for discount in line.discounts:
            expected -= discount.amount
        if not taxes:
            for tax in line.taxes:
                if not tax.included:
                    expected += tax.amount
    for tax in taxes:
        if not tax.included:
            expected += tax.amount
    for discount in discounts:
        expected -= discount.amount
    return (total - expected).quantize(_quantum(currency))
