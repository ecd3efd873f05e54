"""One walk over a record body at intake: is anything in it over the limits, and the body
with every card number masked. The relay runs it for every record it takes, so the two
questions share one pass (compiled with mypyc where a C compiler is at hand).

The limit test is `_limits.check_value`'s and the masking `mask_json`'s, rule for rule;
when the walk finds an excess, `check_value` is asked again for the words of the reason.
"""

from __future__ import annotations

from typing import Any

from ._limits import _NUMBER_START, Limits, Oversize, _looks_numeric, _number_problem
from ._pan import _HEX_DIGEST, IDENTIFIERS, gtin_valid, mask_identifier, mask_key, mask_pans

__all__ = ["mask_json", "screen"]


def _mask_text(value: str, key: str) -> str:
    """`value`, the text of field `key`, with its card numbers masked (the same object
    when there are none)."""
    if len(value) < 13 or (key == "sku" and gtin_valid(value)):
        return value
    if key == "sha256" and _HEX_DIGEST.fullmatch(value):
        return value
    if key in IDENTIFIERS:
        masked = mask_identifier(value)
    else:
        masked = mask_key(value) if key == "key" else mask_pans(value)
    return value if masked == value else masked


def mask_json(value: Any, key: str = "") -> Any:
    """Decoded JSON with every card number masked, keeping a `sku` that is a GTIN, a
    `sha256` that is a digest, and identifier fields that hold no issued card number.
    A value without a card number comes back as the same object, uncopied."""
    if isinstance(value, str):
        return _mask_text(value, key)
    if isinstance(value, dict):
        changed: dict[Any, Any] | None = None
        for name, inner in value.items():
            new = mask_json(inner, str(name))
            if new is not inner:
                if changed is None:
                    changed = dict(value)
                changed[name] = new
        return value if changed is None else changed
    if isinstance(value, list):
        items: list[Any] | None = None
        for index, inner in enumerate(value):
            new = mask_json(inner, key)
            if new is not inner:
                if items is None:
                    items = list(value)
                items[index] = new
        return value if items is None else items
    return value


class _Screen:
    """The walk, with the limits read once into plain numbers."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.string_chars: int = limits.string_chars
        self.number_digits: int = limits.number_digits
        self.depth: int = limits.depth
        self.lines: int = limits.lines_per_transaction
        self.items: int = limits.list_items
        self.over = False

    def text(self, item: str, key: str) -> str:
        size = len(item)
        if size > self.string_chars:
            self.over = True
            return item
        # Only text long enough for too many digits, or with an exponent, can be over.
        if (
            (size > self.number_digits or "e" in item or "E" in item)
            and item[:1] in _NUMBER_START
            and _looks_numeric(item)
            and _number_problem(item, self.limits)
        ):
            self.over = True
            return item
        return _mask_text(item, key)

    def walk(self, item: Any, depth: int, key: str, lines: bool) -> Any:
        """`item` masked; sets `over` (and stops) at the first excess. `key` is the field
        the item stands in (kept through lists, as masking reads it); `lines` is true for
        the list a `lines` field holds."""
        if isinstance(item, str):
            return self.text(item, key)
        if isinstance(item, dict):
            if depth >= self.depth:
                self.over = True
                return item
            changed: dict[Any, Any] | None = None
            for name, inner in item.items():
                label = str(name)  # JSON names are text already: the same object
                if len(label) > self.string_chars:
                    self.over = True
                    return item
                new = self.walk(inner, depth + 1, label, label == "lines")
                if self.over:
                    return item
                if new is not inner:
                    if changed is None:
                        changed = dict(item)
                    changed[name] = new
            return item if changed is None else changed
        if isinstance(item, list):
            if depth >= self.depth or len(item) > (self.lines if lines else self.items):
                self.over = True
                return item
            items: list[Any] | None = None
            for index, inner in enumerate(item):
                new = self.walk(inner, depth + 1, key, False)
                if self.over:
                    return item
                if new is not inner:
                    if items is None:
                        items = list(item)
                    items[index] = new
            return item if items is None else items
        if isinstance(item, Oversize):
            self.over = True
        return item


def screen(body: dict[str, Any], limits: Limits) -> tuple[bool, dict[str, Any]]:
    """(whether `body` is over a limit, `body` with its card numbers masked). The masked
    body is `body` itself when it held no card number; it means nothing when over."""
    walker = _Screen(limits)
    masked = walker.walk(body, 0, "", False)
    return walker.over, masked
