"""Card numbers never leave the POS file.

Any run of 13–19 digits (spaces or dashes allowed between them) that passes the
Luhn check is masked to its last four digits before a record is buffered or a
line is logged.
"""

from __future__ import annotations

import re
from typing import TypeVar

from pydantic import BaseModel

__all__ = ["card_brand", "luhn_valid", "mask_pans", "scrub_model"]

# A digit, then 12–18 more digits each optionally preceded by one space or dash.
_CANDIDATE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")

M = TypeVar("M", bound=BaseModel)


def luhn_valid(digits: str) -> bool:
    """True when a digit string passes the Luhn (mod 10) check."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def card_brand(digits: str) -> str:
    """Card brand from the number's prefix (IIN ranges), or "other"."""
    if digits.startswith("4"):
        return "visa"
    two, four = int(digits[:2]), int(digits[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if digits.startswith(("6011", "65")) or 644 <= int(digits[:3]) <= 649:
        return "discover"
    if 3528 <= four <= 3589:
        return "jcb"
    if two in (36, 38, 39) or 300 <= int(digits[:3]) <= 305:
        return "diners"
    if digits.startswith("62"):
        return "unionpay"
    if digits.startswith(("50", "56", "57", "58", "6")):
        return "maestro"
    return "other"


def _mask(match: re.Match[str]) -> str:
    text = match.group()
    digits = text.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or not luhn_valid(digits):
        return text
    return "*" * (len(digits) - 4) + digits[-4:]


def mask_pans(text: str) -> str:
    """Replace every Luhn-valid 13–19 digit run in `text` by stars and its last four."""
    if len(text) < 13:
        return text
    return _CANDIDATE.sub(_mask, text)


def _scrub_value(value: object) -> object:
    if isinstance(value, str):
        return mask_pans(value)
    if isinstance(value, BaseModel):
        return scrub_model(value)
    if isinstance(value, list):
        return [_scrub_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _scrub_value(v) for k, v in value.items()}
    return value


def scrub_model(model: M) -> M:
    """A copy of `model` with every string field, at any depth, passed through `mask_pans`."""
    changes: dict[str, object] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        scrubbed = _scrub_value(value)
        if scrubbed != value:
            changes[name] = scrubbed
    return model.model_copy(update=changes) if changes else model
