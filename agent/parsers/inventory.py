"""On-hand counts per SKU and location from CSV exports: one `Inventory` record (mode
"absolute", reason "count" unless the file says) per row, read row by row so a large
export stays in bounded memory.

Columns are found by header. `context.columns` maps roles to the file's headers (sku,
quantity, location, store, counted_at or as_of, business_date, reference, reason, uom,
description); roles it leaves out are recognised from common headers (`sku`, `item_id`,
`ItemNumber`; `qty`, `OnHand`, `qty_on_hand`; `location`, `site`, `loc`, `warehouse`; …).
`uom` and `description` are checked for presence but not carried: the record has no field
for them. Without a location column a row counts for the whole store (location = store).
The store comes from a store column, else from `context.store`.

Text: a BOM decides (UTF-8, UTF-16, UTF-32); else `context.encoding`; else UTF-8 when the
first 64 KiB decode as UTF-8, cp1252 otherwise. The delimiter is `context.delimiter`, an
Excel `sep=` line, or the most frequent of `,` `;` `|` tab in the header. Outside
comma-separated files a decimal comma ("12,5") is read as a decimal point.

When the count was taken: a `counted_at` column (ISO 8601 or DD.MM.YYYY, local to
`context.timezone` unless it has an offset), else a `business_date` column, else a date
stamped in the file name (`onhand_20240315_1800.csv`); a file with none is refused.
`business_date` is the date column when there is one, else the count time's local date.

The key reference (`inventory:store:location:sku:reference`) says which snapshot a level
belongs to, so re-reading a file gives the same keys and a later snapshot new ones:

1. the row's `reference` column (the POS's snapshot or document id), else
2. `at-<UTC time>` when the count has a time of day (column or file name), else
3. `sha-<first 16 hex digits of the file's SHA-256>`: a date alone does not tell two
   snapshots of one day apart, the content does. Without a content hash in the context
   such a file is refused.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import BinaryIO, ClassVar

from pydantic import ValidationError

from contract import Inventory, SourceRef, inventory_key

from ._base import ParseContext, Parsed, ParseError
from ._text import (
    HEAD_BYTES,
)
from ._text import (
    choose_encoding as _choose_encoding,
)
from ._text import (
    decode_head as _decode_head,
)
from ._text import (
    delimiter_setting as _delimiter_setting,
)
from ._text import (
    first_error as _first_error,
)
from ._text import (
    guess_delimiter as _guess_delimiter,
)
from .inventory_time import Chain, Moment, moment_from_name, parse_moment, parse_quantity, stamp

__all__ = ["InventoryParser"]


_ALIASES: dict[str, tuple[str, ...]] = {
    "sku": (
        "sku",
        "skuid",
        "skucode",
        "skunumber",
        "itemnumber",
        "itemid",
        "itemno",
        "itemcode",
        "itemsku",
        "item",
        "articlenumber",
        "articleno",
        "articleid",
        "article",
        "productid",
        "productcode",
        "productsku",
        "partnumber",
        "upc",
        "ean",
        "gtin",
    ),
    "quantity": (
        "onhand",
        "onhandqty",
        "onhandquantity",
        "qtyonhand",
        "quantityonhand",
        "stockonhand",
        "soh",
        "quantity",
        "qty",
        "countedqty",
        "countedquantity",
        "count",
        "stock",
        "stocklevel",
        "stockqty",
        "inventory",
        "units",
    ),
    "location": (
        "location",
        "locationid",
        "locationcode",
        "locationno",
        "loc",
        "locid",
        "site",
        "siteid",
        "sitecode",
        "warehouse",
        "warehouseid",
        "warehousecode",
        "whse",
    ),
    "store": ("store", "storeid", "storeno", "storenumber", "storecode", "retailstoreid"),
    "counted_at": (
        "countedat",
        "counttime",
        "countdatetime",
        "asof",
        "asofdate",
        "snapshottime",
        "snapshotat",
        "timestamp",
        "datetime",
        "lastcounted",
        "updatedat",
        "lastupdated",
    ),
    "business_date": (
        "businessdate",
        "businessday",
        "countdate",
        "inventorydate",
        "stockdate",
        "date",
    ),
    "reference": (
        "reference",
        "ref",
        "snapshotid",
        "snapshot",
        "countid",
        "countnumber",
        "documentid",
        "documentnumber",
        "docid",
        "docno",
    ),
    "reason": ("reason", "reasoncode"),
    "uom": ("uom", "unit", "unitofmeasure", "unitofmeasurement"),
    "description": ("description", "itemdescription", "name", "itemname", "productname"),
}
_ROLE_NAMES = {"as_of": "counted_at", "date": "business_date", "qty": "quantity"}
_SHOWN = {
    "sku": "sku, item, item_id, ItemNumber, …",
    "quantity": "qty, quantity, on_hand, OnHand, …",
}
_NON_WORD = re.compile(r"[^0-9a-z]")
_SEP_LINE = re.compile(r"\s*sep=(.)\s*", re.IGNORECASE)


def _norm(header: str) -> str:
    return _NON_WORD.sub("", header.replace("\ufeff", "").strip().casefold())


@dataclass(frozen=True, slots=True)
class _Columns:
    """Header index (and header text, for messages) of every role the file has."""

    index: dict[str, int]
    header: dict[str, str]
    width: int

    def get(self, role: str, row: list[str]) -> str | None:
        i = self.index.get(role)
        return None if i is None else row[i].strip()

    def place(self, line: int, role: str) -> str:
        return f'line {line}, column "{self.header[role]}"'


class InventoryParser:
    """On-hand counts from CSV with configurable columns."""

    name: ClassVar[str] = "inventory"

    def sniff(self, head: bytes) -> bool:
        try:
            text = _decode_head(head)
        except (UnicodeDecodeError, LookupError):
            return False
        lines = [ln for ln in text.splitlines() if ln.strip()][:2]
        if not lines:
            return False
        sep = _SEP_LINE.fullmatch(lines[0])
        if sep:
            if len(lines) < 2:
                return False
            header_line, delimiter = lines[1], sep.group(1)
        else:
            header_line, delimiter = lines[0], _guess_delimiter(lines[0])
        try:
            header = next(csv.reader([header_line], delimiter=delimiter))
        except (csv.Error, StopIteration):
            return False
        names = {_norm(h) for h in header}
        return bool(names & set(_ALIASES["sku"])) and bool(names & set(_ALIASES["quantity"]))

    def parse(self, stream: BinaryIO, *, context: ParseContext) -> Iterator[Parsed]:
        head = stream.read(HEAD_BYTES)
        if not head.strip():
            raise ParseError("the file is empty", "byte 0")
        encoding = _choose_encoding(head, context.encoding)
        raw = io.BufferedReader(Chain(head, stream))
        text = io.TextIOWrapper(raw, encoding=encoding, errors="strict", newline="")
        reader = _Reader(text, context)
        try:
            yield from reader.records()
        except UnicodeError as exc:
            shown = ""
            if isinstance(exc, UnicodeDecodeError) and exc.start < len(exc.object):
                shown = f" (byte 0x{exc.object[exc.start]:02X})"
            raise ParseError(
                f"the text is not valid {encoding}{shown}; set the source's encoding "
                "(utf-8, cp1252, utf-16, …)",
                f"line {reader.line + 1}",
            ) from None
        except csv.Error as exc:
            raise ParseError(f"not readable as CSV: {exc}", f"line {reader.line + 1}") from None


class _Reader:
    """One file's rows; `line` is the last physical line read, for error places."""

    def __init__(self, text: io.TextIOWrapper, context: ParseContext) -> None:
        self.text = text
        self.context = context
        self.line = 0

    def records(self) -> Iterator[Parsed]:
        header_line, delimiter = self._header_line()
        header_no = self.line
        base = header_no - 1
        reader = csv.reader(itertools.chain([header_line], self.text), delimiter=delimiter)
        header = next(reader)
        columns = _resolve(header, self.context.columns, header_no)
        file_moment = moment_from_name(self.context.file_name, self.context.timezone)
        if file_moment is None and not {"counted_at", "business_date"} & columns.index.keys():
            raise ParseError(
                "no count date: the header has no counted_at or business_date column and the "
                "file name carries no date (map columns.counted_at)",
                f"line {header_no}",
            )
        decimal_comma = delimiter != ","
        previous = reader.line_num
        for row in reader:
            start = base + previous + 1
            previous = reader.line_num
            self.line = base + previous
            if any(cell.strip() for cell in row):
                yield self._record(row, start, columns, file_moment, decimal_comma)

    def _header_line(self) -> tuple[str, str]:
        delimiter = _delimiter_setting(self.context.delimiter)
        first = True
        while True:
            text = self.text.readline()
            if not text:
                raise ParseError("the file has no header line", f"line {self.line}")
            self.line += 1
            if not text.strip():
                continue
            sep = _SEP_LINE.fullmatch(text.rstrip("\r\n")) if first else None
            first = False
            if sep:
                delimiter = delimiter or sep.group(1)
                continue
            return text, delimiter or _guess_delimiter(text)

    def _record(
        self,
        row: list[str],
        line: int,
        cols: _Columns,
        file_moment: Moment | None,
        decimal_comma: bool,
    ) -> Inventory:
        context = self.context
        short = len(row) < cols.width and max(cols.index.values()) >= len(row)
        extra = len(row) > cols.width and any(cell.strip() for cell in row[cols.width :])
        if short or extra:
            raise ParseError(
                f"the row has {len(row)} fields where the header has {cols.width}", f"line {line}"
            )
        sku = cols.get("sku", row)
        if not sku:
            raise ParseError("the SKU is empty", cols.place(line, "sku"))
        quantity_text = cols.get("quantity", row) or ""
        quantity = parse_quantity(quantity_text, decimal_comma=decimal_comma)
        if quantity is None:
            what = f"{quantity_text!r} is not a number" if quantity_text else "it is empty"
            raise ParseError(f"bad quantity: {what}", cols.place(line, "quantity"))
        store = cols.get("store", row) or context.store
        if not store:
            raise ParseError(
                "no store: the row names none and the source sets no store", f"line {line}"
            )
        location = cols.get("location", row) if "location" in cols.index else store
        if not location:
            raise ParseError("the location is empty", cols.place(line, "location"))
        counted = self._moment(row, line, cols, "counted_at")
        day = self._moment(row, line, cols, "business_date")
        moment = counted or day or file_moment
        if moment is None:
            raise ParseError("no count date on this row", f"line {line}")
        business_date: date = day.at.date() if day else moment.local_date(context.timezone)
        reference = cols.get("reference", row) or self._reference(moment, line)
        try:
            return Inventory(
                kind="inventory",
                key=inventory_key(store, location, sku, reference),
                store=store,
                business_date=business_date,
                occurred_at=moment.at,
                source=SourceRef(
                    file=context.file_name, position=f"line {line}", sha256=context.sha256
                ),
                location=location,
                sku=sku,
                quantity=quantity,
                mode="absolute",
                reason=cols.get("reason", row) or "count",
                reference=reference,
            )
        except ValidationError as exc:
            raise ParseError(_first_error(exc), f"line {line}") from None

    def _moment(self, row: list[str], line: int, cols: _Columns, role: str) -> Moment | None:
        value = cols.get(role, row)
        if not value:
            return None
        try:
            return parse_moment(value, self.context.timezone)
        except ValueError as exc:
            raise ParseError(str(exc), cols.place(line, role)) from None

    def _reference(self, moment: Moment, line: int) -> str:
        if moment.has_time:
            return f"at-{stamp(moment)}"
        if self.context.sha256:
            return f"sha-{self.context.sha256[:16]}"
        raise ParseError(
            "the count has no snapshot id and no time of day, and the file's content hash is "
            "unknown, so its idempotency key cannot be made",
            f"line {line}",
        )


def _resolve(header: list[str], mapping: dict[str, str], line: int) -> _Columns:
    """Which header column plays which role: the column map first, then common names."""
    plain = [h.replace("\ufeff", "").strip() for h in header]
    norms = [_norm(h) for h in plain]
    index: dict[str, int] = {}
    for key, wanted in mapping.items():
        role = _ROLE_NAMES.get(key, key)
        if role not in _ALIASES:
            known = ", ".join(sorted([*_ALIASES, *_ROLE_NAMES]))
            raise ParseError(f"unknown role {key!r} in the column map (known: {known})", "columns")
        target = wanted.strip().casefold()
        found = next((i for i, h in enumerate(plain) if h.casefold() == target), None)
        if found is None:
            found = next((i for i, n in enumerate(norms) if n and n == _norm(wanted)), None)
        if found is None:
            raise ParseError(
                f'column "{wanted}" (columns.{key}) is not in the header', f"line {line}"
            )
        index[role] = found
    for role, aliases in _ALIASES.items():
        if role in index:
            continue
        taken = set(index.values())
        for alias in aliases:
            found = next((i for i, n in enumerate(norms) if n == alias and i not in taken), None)
            if found is not None:
                index[role] = found
                break
    for role in ("sku", "quantity"):
        if role not in index:
            raise ParseError(
                f"no {role} column in the header (looked for {_SHOWN[role]}; set columns.{role})",
                f"line {line}",
            )
    return _Columns(index, {role: plain[i] for role, i in index.items()}, len(header))
