"""How large anything on the wire may be: bytes per message (as sent and inflated), records
per batch, lines per transaction, items of any list, characters of any string, digits and
exponent of any number, nesting depth. Both programs read the same `Limits`: the agent so
that it never makes a record the relay would refuse, the relay to refuse one that is over.

Every check here is linear in its input and stops at the first excess.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import zlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["LimitError", "Limits", "Oversize", "check_text", "check_value", "inflate", "loads"]


class LimitError(ValueError):
    """A message or value over one of the limits; the text says which and where."""


class Limits(BaseModel):
    """The limits, with defaults that hold every real POS transaction several times over."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=4096,
        description="Largest message as it arrives, gzip-compressed or plain JSON.",
    )
    inflated_bytes: int = Field(
        default=8 * 1024 * 1024,
        ge=4096,
        description="Largest batch once inflated (a plain batch counts its own size).",
    )
    records_per_batch: int = Field(default=10_000, ge=1, description="Most records in a batch.")
    lines_per_transaction: int = Field(
        default=5_000, ge=1, description="Most lines in one transaction."
    )
    list_items: int = Field(
        default=10_000, ge=1, description="Most items in any other list of a record."
    )
    string_chars: int = Field(
        default=65_536, ge=64, description="Longest string in a record, in characters."
    )
    number_digits: int = Field(
        default=40, ge=8, description="Most digits of a number, written as JSON or as text."
    )
    number_exponent: int = Field(
        default=30, ge=1, description="Largest exponent (either sign) of a number in E notation."
    )
    depth: int = Field(default=32, ge=4, description="Deepest nesting of objects and lists.")


class Oversize:
    """Stands in for a JSON number over the limits, so that one record is refused with a
    reason rather than the whole batch failing to load."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Oversize({self.reason!r})"


def inflate(payload: bytes, limits: Limits) -> bytes:
    """The batch's JSON bytes: gzip inflated, stopping one byte past the limit."""
    if len(payload) > limits.message_bytes:
        raise LimitError(
            f"message of {len(payload)} bytes is over the limit of {limits.message_bytes}"
        )
    if payload[:2] != b"\x1f\x8b":
        if len(payload) > limits.inflated_bytes:
            raise LimitError(
                f"batch of {len(payload)} bytes is over the limit of {limits.inflated_bytes}"
            )
        return payload
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(payload)) as gz:
            data = gz.read(limits.inflated_bytes + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise LimitError(f"batch is not valid gzip: {exc}") from None
    if len(data) > limits.inflated_bytes:
        raise LimitError(f"batch inflates past the limit of {limits.inflated_bytes} bytes")
    return data


def _number_problem(text: str, limits: Limits) -> str | None:
    """Why a number written as `text` is over the limits, or None."""
    if len(text) <= limits.number_digits and "e" not in text and "E" not in text:
        return None  # too short to hold too many digits, and no exponent: the common case
    mantissa, _, exponent = text.lower().partition("e")
    digits = sum(1 for char in mantissa if char.isdigit())
    if digits > limits.number_digits:
        return f"a number of {digits} digits (limit {limits.number_digits})"
    if exponent:
        magnitude = exponent.lstrip("+-")
        if (
            not magnitude.isdecimal()
            or len(magnitude) > 6
            or int(magnitude) > limits.number_exponent
        ):
            shown = exponent if len(exponent) <= 12 else exponent[:12] + "…"
            return f"a number with exponent {shown} (limit ±{limits.number_exponent})"
    return None


def loads(data: bytes | str, limits: Limits) -> Any:
    """JSON with numbers over the limits kept as `Oversize` (Python's own 4,300-digit guard
    never fires) and NaN or Infinity refused; LimitError for anything not JSON."""

    def number(text: str, convert: Any) -> Any:
        problem = _number_problem(text, limits)
        return Oversize(problem) if problem else convert(text)

    def constant(name: str) -> Any:
        raise LimitError(f"{name} is not a JSON number")

    try:
        return json.loads(
            data,
            parse_int=lambda t: number(t, int),
            parse_float=lambda t: number(t, float),
            parse_constant=constant,
        )
    except RecursionError:
        raise LimitError("JSON nests too deep") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LimitError(f"not valid JSON: {exc}") from None


def check_value(value: Any, limits: Limits, where: str = "") -> str | None:
    """The first place where `value` (decoded JSON) is over the limits, as
    "`where`: what", or None. Strings that are numbers are held to the number limits.
    The walk builds no path until it finds something: it runs for every record."""
    found = _walk(value, limits, 0, "lines" if where.endswith("lines") else "")
    if found is None:
        return None
    reason, path = found
    parts = [where] if where else []
    for step in reversed(path):
        if isinstance(step, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{step}]"]
        else:
            parts.append(step)
    return f"{'.'.join(parts)}: {reason}"


def _walk(item: Any, limits: Limits, depth: int, key: str) -> tuple[str, list[str | int]] | None:
    """(what, path from the place to `item`, innermost first) of the first excess."""
    if isinstance(item, str):
        size = len(item)
        if size > limits.string_chars:
            return f"a string of {size} characters (limit {limits.string_chars})", []
        # Only text long enough for too many digits, or with an exponent, can be over.
        suspect = size > limits.number_digits or "e" in item or "E" in item
        if suspect and item[:1] in _NUMBER_START and _looks_numeric(item):
            problem = _number_problem(item, limits)
            if problem:
                return problem, []
        return None
    if isinstance(item, dict):
        if depth >= limits.depth:
            return f"nested deeper than {limits.depth} levels", []
        for name, inner in item.items():
            if len(name) > limits.string_chars:
                return f"a key of {len(name)} characters", []
            if isinstance(inner, str | dict | list | Oversize):
                found = _walk(inner, limits, depth + 1, name)
                if found is not None:
                    found[1].append(name)
                    return found
        return None
    if isinstance(item, list):
        if depth >= limits.depth:
            return f"nested deeper than {limits.depth} levels", []
        most = limits.lines_per_transaction if key == "lines" else limits.list_items
        if len(item) > most:
            return f"{len(item)} items (limit {most})", []
        for index, inner in enumerate(item):
            if isinstance(inner, str | dict | list | Oversize):
                found = _walk(inner, limits, depth + 1, "")
                if found is not None:
                    found[1].append(index)
                    return found
        return None
    if isinstance(item, Oversize):
        return item.reason, []
    return None


_NUMBER_START = frozenset("+-.0123456789")
# Deeper than any record the contract's models can make (body, lines, a line, its
# discounts, a discount: 4), so that the screen of `check_text` needs no depth count.
_RECORD_DEPTH = 8
# The screen's view of JSON text: what can be part of a number as "0", an exponent's
# letter as "e", what ends a token as "|", anything else (other letters, any byte of a
# character beyond ASCII) as "x". One C pass, and then only substring searches.
_SHAPES = bytearray(b"x" * 256)
for _byte in b"0123456789.+-":
    _SHAPES[_byte] = ord("0")
for _byte in b"eE":
    _SHAPES[_byte] = ord("e")
for _byte in b'":,[]{}':
    _SHAPES[_byte] = ord("|")
_SHAPE_TABLE = bytes(_SHAPES)
del _SHAPES, _byte
_EXPONENT_TOKEN = re.compile(rb"\|0+e0+\|")


def check_text(text: str, limits: Limits, where: str = "body") -> str | None:
    """`check_value` of a record's JSON as the contract's models write it, at the cost of
    a few scans in C for nearly every record: a string over the limit needs text at least
    that long, a list over its limit needs that many commas, and a number over the digit
    or exponent limit needs a run of digits that long, or a token of digits, an exponent
    letter and digits. Only text the screen does not clear is decoded and walked."""
    if (
        len(text) <= limits.string_chars
        and text.count(",") < min(limits.list_items, limits.lines_per_transaction)
        and limits.depth > _RECORD_DEPTH
    ):
        shape = text.encode().translate(_SHAPE_TABLE)
        if b"0" * (limits.number_digits + 1) not in shape and (
            b"e0" not in shape or _EXPONENT_TOKEN.search(shape) is None
        ):
            return None
    try:
        value = loads(text, limits)
    except LimitError as exc:
        return f"{where}: {exc}"
    return check_value(value, limits, where)


def _looks_numeric(text: str) -> bool:
    """True for text written like a decimal number, E notation included."""
    mantissa, e, exponent = text.lower().partition("e")
    mantissa = mantissa.lstrip("+-")
    if not mantissa or mantissa.count(".") > 1 or not mantissa.replace(".", "").isdecimal():
        return False
    return not e or exponent.lstrip("+-").isdecimal()
