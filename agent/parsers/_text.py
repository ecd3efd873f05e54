"""Reading text exports (CSV and friends) the same way in every parser: the encoding from a
BOM, the source's setting or a UTF-8/cp1252 guess; the delimiter from the setting or the
header line; one wording for refusals.
"""

from __future__ import annotations

import codecs
import functools
import json
import re
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from contract import read_decimal

from ._base import ParseError

__all__ = [
    "HEAD_BYTES",
    "Repeated",
    "choose_encoding",
    "decode_head",
    "delimiter_setting",
    "exact_decimal",
    "first_error",
    "guess_delimiter",
    "load_json",
    "refuse_repeated",
    "repeated_key",
]

HEAD_BYTES = 64 * 1024
_DELIMITERS = (",", ";", "\t", "|")
_QUOTED = re.compile(r'"[^"]*"')
_MULTIBYTE = ("utf-16", "utf-32")


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def choose_encoding(head: bytes, configured: str | None) -> str:
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if configured:
        try:
            name = codecs.lookup(configured).name
            "".encode(name)
        except LookupError:
            raise ParseError(
                f"unknown text encoding {configured!r} (the source's encoding setting)"
            ) from None
        if b"\0" in head and not name.startswith(_MULTIBYTE):
            raise ParseError("the file is binary, not a CSV text export", _nul_place(head))
        return name
    if b"\0" in head:
        guessed = _guess_utf16(head)
        if guessed is None:
            raise ParseError("the file is binary, not a CSV text export", _nul_place(head))
        return guessed
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < HEAD_BYTES)
    except UnicodeDecodeError:
        return "cp1252"
    return "utf-8"


def _nul_place(head: bytes) -> str:
    return f"byte {head.index(0)}"


def _guess_utf16(head: bytes) -> str | None:
    """UTF-16 without a BOM: ASCII-range text has a zero in every other byte."""
    sample = head[:4096]
    even, odd = sample[0::2], sample[1::2]
    if not even or not odd:
        return None
    if odd.count(0) > 0.9 * len(odd) and even.count(0) < 0.1 * len(even):
        return "utf-16-le"
    if even.count(0) > 0.9 * len(even) and odd.count(0) < 0.1 * len(odd):
        return "utf-16-be"
    return None


def decode_head(head: bytes) -> str:
    for bom, name in _BOMS:
        if head.startswith(bom):
            return head.decode(name, errors="replace")
    if b"\0" in head:
        guessed = _guess_utf16(head)
        return head.decode(guessed, errors="replace") if guessed else ""
    return head.decode("utf-8", errors="replace")


def guess_delimiter(line: str) -> str:
    bare = _QUOTED.sub("", line)
    best = max(_DELIMITERS, key=bare.count)
    return best if bare.count(best) else ","


def delimiter_setting(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value.lower() in ("tab", "\\t"):
        return "\t"
    if len(value) != 1 or value in '"\r\n':
        raise ParseError(f"the delimiter setting {value!r} is not a single character", "delimiter")
    return value


def exact_decimal(value: Any, place: str) -> Decimal | None:
    """A money or quantity value from JSON or text; None when blank. Floats are refused:
    JSON is parsed with `parse_float=Decimal`, so a float here is a programming error."""
    if value is None or value == "":
        return None
    if isinstance(value, bool | float):
        raise ParseError(f"not an exact number: {value!r}", place)
    if isinstance(value, Decimal | int):
        result = Decimal(value)  # a JSON number (an exponent form arrives as text)
        if not result.is_finite():
            raise ParseError(f"not a finite number: {str(value)[:40]!r}", place)
        return result.copy_abs() if not result and result.is_signed() else result
    try:
        # The contract's money rules: plain digits, no exponent, no separators; "-0" is 0.
        return read_decimal(str(value))
    except ValueError as exc:
        raise ParseError(str(exc), place) from None


def _json_number(text: str) -> Decimal | str:
    """A JSON number with a fraction as an exact Decimal; one in E notation stays text, so
    the amount reader refuses it by the money rules (its transaction, not the file)."""
    if "e" in text or "E" in text:
        return text
    return Decimal(text)


class Repeated(dict[str, Any]):
    """A JSON object in which a key appears more than once: JSON parsers keep the last
    value, another reader may keep the first, so which one the POS meant cannot be known
    (a repeated `locRef` moved a check to another store). `key` names the first repeated."""

    key: str = ""


def _json_object(pairs: list[tuple[str, Any]], repeats: list[str]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) == len(pairs):
        return found  # the common case: one dict made in C, one length compared
    repeated = Repeated(found)
    seen: set[str] = set()
    for key, _value in pairs:
        if key in seen:
            repeated.key = key
            break
        seen.add(key)
    repeats.append(repeated.key)
    return repeated


def repeated_key(value: Any) -> str | None:
    """The first key repeated in an object anywhere inside `value`, or None."""
    if isinstance(value, Repeated):
        return value.key
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list):
                found = repeated_key(item)
                if found is not None:
                    return found
    return None


def refuse_repeated(value: Any, place: str) -> None:
    """ParseError at `place` when an object inside `value` repeats a key."""
    key = repeated_key(value)
    if key is not None:
        raise ParseError(
            f"the key {key[:64]!r} appears twice in one object; refused (which value the "
            "POS meant cannot be known)",
            place,
        )


def load_json(data: bytes, repeats: list[str] | None = None) -> Any:
    """JSON with every number that has a fraction read as an exact Decimal; an object that
    repeats a key is a `Repeated`, and its key is added to `repeats`."""
    hook = functools.partial(_json_object, repeats=[] if repeats is None else repeats)
    try:
        return json.loads(data, parse_float=_json_number, object_pairs_hook=hook)
    except UnicodeDecodeError as exc:
        raise ParseError(f"the JSON is not UTF-8 text: {exc.reason}", f"byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"not valid JSON: {exc.msg}", f"line {exc.lineno}, column {exc.colno}"
        ) from None
