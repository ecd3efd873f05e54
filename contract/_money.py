"""Money in the record contract: `Decimal`, never a float, written as a decimal string.

Amounts carry the currency's exponent (ISO 4217 minor units): "12.30" in EUR,
"1200" in JPY, "1.250" in KWD. Unit prices and rates may be more precise.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

from ._exact import currency_exponent, quantize_amount, read_decimal, to_decimal

__all__ = [
    "Amount",
    "Quantity",
    "Rate",
    "currency_exponent",
    "quantize_amount",
    "read_decimal",
    "to_decimal",
]


def _serialise(value: Decimal) -> str:
    # Plain notation: "0.00", never "0E-2".
    return format(value, "f")


_DECIMAL_SCHEMA = WithJsonSchema(
    {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "examples": ["12.30", "-4.99"]}
)

Amount = Annotated[
    Decimal,
    BeforeValidator(to_decimal),
    PlainSerializer(_serialise, return_type=str, when_used="always"),
    _DECIMAL_SCHEMA,
]
"""A money amount, signed as the POS signs it."""

Quantity = Annotated[
    Decimal,
    BeforeValidator(to_decimal),
    PlainSerializer(_serialise, return_type=str, when_used="always"),
    _DECIMAL_SCHEMA,
]
"""A quantity: units, or a weight for items sold by measure."""

Rate = Annotated[
    Decimal,
    BeforeValidator(to_decimal),
    PlainSerializer(_serialise, return_type=str, when_used="always"),
    _DECIMAL_SCHEMA,
]
"""A tax rate in percent ("19" or "7.5"), as POS systems state it."""
