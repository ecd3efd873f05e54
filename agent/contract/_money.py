"""Money in the record contract: `Decimal`, never a float, written as a decimal string.

Amounts carry the currency's exponent (ISO 4217 minor units): "12.30" in EUR,
"1200" in JPY, "1.250" in KWD. Unit prices and rates may be more precise.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

__all__ = ["Amount", "Quantity", "Rate", "currency_exponent", "quantize_amount", "to_decimal"]

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
    if isinstance(value, bool | float):
        raise ValueError("money and quantities must be decimal strings or integers, never floats")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    else:
        raise ValueError(f"expected a decimal string, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def quantize_amount(value: Decimal, currency: str) -> Decimal:
    """Give an amount the currency's exponent; refuse one that would lose precision."""
    exp = Decimal(1).scaleb(-currency_exponent(currency))
    quantized = value.quantize(exp)
    if quantized != value:
        raise ValueError(f"{value} has more decimals than {currency} allows")
    return quantized


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
