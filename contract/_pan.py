"""Card numbers never leave the POS file.

Any run of 13–19 digits that passes the Luhn check is masked to its last four digits
before a record is buffered or a line is logged, whatever is written between the
digits: spaces of any kind, dashes, dots, underscores, slashes, and invisible
characters (zero-width spaces, joiners, soft hyphens, direction marks), up to three
of them between two digits. A number whose only separator is one decimal point is
an amount, not a card.

Exceptions keep data intact: a `sku` that is exactly a GTIN (EAN-13, GTIN-14, …)
with a valid GS1 check digit is a barcode, not a card (about one EAN in ten would
otherwise pass Luhn and be masked); a `sha256` that is a hex digest is a content hash;
a bare 14-digit YYYYMMDDhhmmss time stamp (as in export file names) is a time.

Fields that are identifiers by contract (`IDENTIFIERS`: SKUs, item ids, barcodes,
transaction, customer and loyalty ids, keys) are masked only when the value is a card
number as issuers issue them today: a known payment brand's range, a length that brand
issues, and the check digit. A 13-digit item id that happens to pass Luhn is left alone;
a card number keyed into the customer id is not.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin
from urllib.parse import unquote

from pydantic import BaseModel

__all__ = [
    "IDENTIFIERS",
    "card_brand",
    "gtin_valid",
    "issued_card",
    "luhn_valid",
    "mask_identifier",
    "mask_key",
    "mask_pans",
    "scrub_model",
    "scrub_model_fields",
]

# What may stand between the digits of a card number: white space of any kind, dashes,
# dots, underscores and slashes of any width, and the characters that print as nothing.
_SEPARATORS = (
    r"\s\-._/\u00ad\u00b7\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f"
    r"\u2010-\u2015\u2024\u2027\u202a-\u202e\u2044\u2060-\u2064\u2066-\u206f"
    r"\u2212\u30fb\u3164\ufe58\ufe63\ufeff\uff0d\uff0e\uff0f\uff3f\uffa0"
)
_SEP = "[" + _SEPARATORS + "]"
# A chain of at least 13 digits, each joined to the next by up to three separators.
# Separators and digits never overlap, so the pattern cannot backtrack: it finds the
# whole chain, in time linear in the text; `_mask` looks for cards inside it.
_CANDIDATE = re.compile(r"(?<!\d)\d(?:" + _SEP + r"{0,3}\d){12,}")
# What every candidate contains, found without backtracking.
_RUN = re.compile(r"\d[\d" + _SEPARATORS + "]{12}")
_SPLIT = re.compile("(" + _SEP + "+)")
_NOT_DIGIT = re.compile(r"\D+")

M = TypeVar("M", bound=BaseModel)
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


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


# Field names that hold identifiers by contract, wherever they stand in a record.
IDENTIFIERS = frozenset(
    {
        "sku",
        "item_id",
        "barcode",
        "gtin",
        "transaction_id",
        "original_transaction_id",
        "customer_id",
        "pos_customer_id",
        "loyalty_id",
        "file",  # a source file's name: "POSLog_0101_20261205145005_00036.xml" is no card
    }
)

# The lengths each brand issues today (13-digit Visa numbers are no longer issued).
_ISSUED_LENGTHS = {
    "visa": (16, 19),
    "mastercard": (16,),
    "amex": (15,),
    "discover": (16, 17, 18, 19),
    "jcb": (16, 17, 18, 19),
    "diners": (14, 15, 16, 17, 18, 19),
    "unionpay": (16, 17, 18, 19),
    "maestro": (16, 17, 18, 19),
}


def issued_card(digits: str) -> bool:
    """True for a digit string that is a card number as issuers issue them today: a known
    brand's range, one of its lengths, and the Luhn check."""
    if not digits.isdigit() or not 14 <= len(digits) <= 19:
        return False
    lengths = _ISSUED_LENGTHS.get(card_brand(digits))
    return lengths is not None and len(digits) in lengths and luhn_valid(digits)


def mask_identifier(value: str) -> str:
    """An identifier field's value: masked as free text is, but only when an issued card
    number stands in it (runs of whole digit groups, at most 19 digits: linear)."""
    masked = mask_pans(value)
    if masked == value:
        return value
    for match in _CANDIDATE.finditer(_ascii_digits(value)):
        groups = _SPLIT.split(match.group())[0::2]
        for first in range(len(groups)):
            digits = ""
            for group in groups[first:]:
                digits += group
                if len(digits) > 19:
                    break
                if issued_card(digits):
                    return masked
    return value


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")  # what make_key escapes in a part


def _escape_byte(unsafe: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in unsafe.group().encode())


def mask_key(key: str) -> str:
    """An idempotency key with every issued card number in its parts masked. A key is made
    of identifiers (store, register, day, transaction id; location, SKU, reference), so
    each part is read as an identifier: masking a 13-digit SKU that passes Luhn would make
    two SKUs ending alike share one key. Escaped parts (`4111%201111…`, where the escape
    hides the number from the pattern) are read unescaped, and escaped again."""
    out: list[str] = []
    for part in key.split(":"):
        plain = unquote(part) if "%" in part else part
        masked = mask_identifier(plain) if len(plain) >= 13 else plain
        out.append(part if masked == plain else _KEY_UNSAFE.sub(_escape_byte, masked))
    return ":".join(out)


def _masked(digits: str) -> str:
    return "*" * (len(digits) - 4) + digits[-4:]


def _is_timestamp(digits: str) -> bool:
    """YYYYMMDDhhmmss of 1900–2099, as in export file names: no card number has 14 digits
    starting 19 or 20 (14-digit cards are Diners, 30/36/38/39), so it is never masked."""
    if len(digits) != 14 or not digits.startswith(("19", "20")):
        return False
    month, day = int(digits[4:6]), int(digits[6:8])
    hour, minute, second = int(digits[8:10]), int(digits[10:12]), int(digits[12:14])
    return 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61


def _mask(match: re.Match[str]) -> str:
    """Mask the card numbers in one chain of digit groups joined by separators."""
    text = _ascii_digits(match.group())
    digits = _NOT_DIGIT.sub("", text)
    if text == digits:
        # A plain digit string is a card number whole or not at all: never cut in windows.
        if len(digits) <= 19 and luhn_valid(digits) and not _is_timestamp(digits):
            return _masked(digits)
        return match.group()
    if len(text) == len(digits) + 1 and "." in text:
        return match.group()  # one decimal point: an amount or a quantity
    # Card numbers among other digit groups ("4000…0006-0", "till 2 card 4111.1111…"):
    # from each group, the longest run of whole groups of 13–19 digits that passes Luhn.
    parts = _SPLIT.split(text)  # groups at even indexes, separators between
    groups = parts[0::2]
    longest = _luhn_windows(groups)
    out: list[str] = []
    done = 0  # groups[:done] are in `out`, with the separator after the last of them
    first = 0
    found = False
    while first < len(groups):
        hit = longest[first]
        if not hit:
            first += 1
            continue
        found = True
        out.append("".join(parts[2 * done : 2 * first]))
        out.append(_masked("".join(groups[first:hit])))
        if hit < len(groups):
            out.append(parts[2 * hit - 1])
        done = first = hit
    if not found:
        return match.group()
    out.append("".join(parts[2 * done :]))
    return "".join(out)


def _luhn_windows(groups: list[str]) -> list[int]:
    """For each group, the end (exclusive) of the longest run of whole groups from it that
    holds 13–19 digits and passes Luhn, or 0. Runs are walked leftwards from each end, the
    Luhn sum carried along, so each digit is read at most 19 times: linear in the chain."""
    longest = [0] * len(groups)
    for end in range(len(groups), 0, -1):
        total = 0
        position = 0  # digits counted from the right end of the run
        start = end
        while start > 0:
            group = groups[start - 1]
            if position + len(group) > 19:
                break
            for char in reversed(group):
                value = ord(char) - 48
                if position % 2 == 1:
                    value *= 2
                    if value > 9:
                        value -= 9
                total += value
                position += 1
            start -= 1
            if position >= 13 and total % 10 == 0 and end > longest[start]:
                if end - start == 1 and _is_timestamp(group):
                    continue  # a time stamp between other fields ("…_20261124124136_00041")
                longest[start] = end
    return longest


def _ascii_digits(text: str) -> str:
    """`text` with digits of any script (what the pattern's \\d takes) written 0-9."""
    if text.isascii():
        return text
    return "".join(str(int(char)) if char.isdecimal() else char for char in text)


def mask_pans(text: str) -> str:
    """Replace every Luhn-valid 13–19 digit run in `text` by stars and its last four."""
    if len(text) < 13:
        return text
    return _CANDIDATE.sub(_mask, text)


def _scrub_value(value: object, path: str, masked: list[str]) -> object:
    if isinstance(value, str):
        scrubbed = mask_pans(value)
        if scrubbed != value:
            masked.append(path)
        return scrubbed
    if isinstance(value, BaseModel):
        return _scrub(value, f"{path}.", masked)
    if isinstance(value, list):
        return [_scrub_value(v, f"{path}[]", masked) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrub_value(v, f"{path}[]", masked) for v in value)
    if isinstance(value, dict):
        return {
            _scrub_value(k, path, masked): _scrub_value(v, path, masked) for k, v in value.items()
        }
    return value


def gtin_valid(text: str) -> bool:
    """True for an 8, 12, 13 or 14 digit GTIN whose GS1 check digit is right."""
    if len(text) not in (8, 12, 13, 14) or not text.isdigit():
        return False
    body = [ord(c) - 48 for c in reversed(text[:-1])]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(body))
    return (10 - total % 10) % 10 == ord(text[-1]) - 48


def _suspect(value: object) -> bool:
    """True when a string at any depth could hold a card number (13+ characters that the
    candidate pattern finds). Runs for every record, so models are read through a check
    made once per class that skips the fields which can never hold text (numbers, dates,
    flags) and reads plain strings and nested models without asking what they are."""
    if isinstance(value, str):
        return _long(value)
    if isinstance(value, dict):
        return any(_suspect(k) or _suspect(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):  # a tuple: no union object made per call
        return any(_suspect(v) for v in value)
    if isinstance(value, BaseModel):  # last: pydantic's isinstance runs Python code
        return _check_for(type(value)).holds(value)
    return False


_checks: dict[type[BaseModel], _Check] = {}


def _check_for(cls: type[BaseModel]) -> _Check:
    check = _checks.get(cls)
    if check is None:
        check = _checks[cls] = _Check(cls)
    return check


def _long(text: str) -> bool:
    """True when the candidate pattern finds a number in `text`. It is asked only after a
    simpler pattern finds 13 characters of digits, spaces and dashes: keys and dates are
    full of shorter digit runs, on which the candidate pattern backtracks at every digit
    (a fifth of the cost of checking a record)."""
    return len(text) >= 13 and _RUN.search(text) is not None and _CANDIDATE.search(text) is not None


class _Check:
    """The suspect test for one model class, its fields sorted once by what they hold (a
    class, so that compiled, one check calls the next directly)."""

    def __init__(self, cls: type[BaseModel]) -> None:
        self.strings: list[str] = []  # str or None
        self.models: list[str] = []  # a model or None
        self.lists: list[str] = []  # a list of models
        self.maps: list[str] = []  # str to str
        self.others: list[str] = []  # anything else: the generic walk
        for name, field in cls.model_fields.items():
            annotation = field.annotation
            if not _may_hold_text(annotation):
                continue
            inner = _without_none(annotation)
            if inner is str:
                self.strings.append(name)
            elif _is_model(inner):
                self.models.append(name)
            elif get_origin(inner) is list and _is_model(get_args(inner)[0]):
                self.lists.append(name)
            elif get_origin(inner) is dict and get_args(inner) == (str, str):
                self.maps.append(name)
            else:
                self.others.append(name)

    def holds(self, model: BaseModel) -> bool:
        """True when a string of `model`, at any depth, could hold a card number."""
        values: dict[str, Any] = model.__dict__
        for name in self.strings:
            text = values[name]
            if text is not None and _long(text):
                return True
        for name in self.models:
            inner = values[name]
            if inner is not None and _check_for(type(inner)).holds(inner):
                return True
        for name in self.lists:
            for inner in values[name]:
                if _check_for(type(inner)).holds(inner):
                    return True
        for name in self.maps:
            found = values[name]
            if found is not None:
                for key, text in found.items():
                    if _long(key) or _long(text):
                        return True
        return any(_suspect(values[name]) for name in self.others)


def _without_none(annotation: object) -> object:
    """`X` for `X | None` and `Annotated[X, …]`; anything else unchanged."""
    if get_origin(annotation) is Annotated:
        return _without_none(get_args(annotation)[0])
    if get_origin(annotation) in (UnionType, Union):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: object) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


_NEVER_TEXT = (bool, int, float, Decimal, date, datetime, time, timedelta, type(None))


def _may_hold_text(annotation: object) -> bool:
    """False only for annotations made of numbers, dates, flags and short enums."""
    args = get_args(annotation)
    origin = get_origin(annotation)
    if origin is Annotated:
        return _may_hold_text(args[0])
    if args and origin in (UnionType, Union):
        return any(_may_hold_text(a) for a in args)
    if origin is Literal:
        return any(len(str(a)) >= 13 for a in args)
    if isinstance(annotation, type):
        if issubclass(annotation, Enum):
            return any(len(str(m.value)) >= 13 for m in annotation)
        return not issubclass(annotation, _NEVER_TEXT)
    return True  # list[...], dict[...], Literal, anything unusual: look at it


def scrub_model(model: M) -> M:
    """A copy of `model` with every string field, at any depth, passed through `mask_pans`
    (identifier fields: masked only when they hold an issued card number)."""
    return scrub_model_fields(model)[0]


def scrub_model_fields(model: M) -> tuple[M, list[str]]:
    """`scrub_model`, and the names of the fields it masked (dotted paths; never values)."""
    if not _check_for(type(model)).holds(model):
        return model, []  # nothing that could be a card number: the common case, kept cheap
    masked: list[str] = []
    return _scrub(model, "", masked), masked


def _scrub(model: M, path: str, masked: list[str]) -> M:
    changes: dict[str, object] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        where = f"{path}{name}"
        if isinstance(value, str) and name in IDENTIFIERS:
            if name == "sku" and gtin_valid(value):
                continue
            scrubbed: object = mask_identifier(value)
            if scrubbed != value:
                masked.append(where)
        elif name == "sha256" and isinstance(value, str) and _HEX_DIGEST.fullmatch(value):
            continue  # a content hash, whose hex digits may happen to pass Luhn
        elif name == "key" and isinstance(value, str):
            scrubbed = mask_key(value)
            if scrubbed != value:
                masked.append(where)
        else:
            scrubbed = _scrub_value(value, where, masked)
        if scrubbed != value:
            changes[name] = scrubbed
    return model.model_copy(update=changes) if changes else model
