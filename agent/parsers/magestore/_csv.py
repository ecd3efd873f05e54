"""Magestore orders as CSV, one row per order item with the order's fields repeated, read
row by row: an order is complete when the next order's rows begin. The columns are
documented in `magestore.py`."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from .._base import ParseContext, Parsed, ParseError, rewound
from .._tabular import amount
from .._text import HEAD_BYTES, choose_encoding, delimiter_setting, guess_delimiter
from ._order import order_records

__all__ = ["COLUMNS", "REQUIRED", "read_csv"]

REQUIRED = ("increment_id", "created_at", "grand_total", "sku", "qty", "row_total")
COLUMNS: dict[str, tuple[str, ...]] = {
    "increment_id": ("incrementid", "orderincrementid", "ordernumber", "orderno"),
    "created_at": ("createdat", "purchasedate", "orderdate"),
    "grand_total": ("grandtotal",),
    "sku": ("sku",),
    "qty": ("qty", "qtyordered", "quantity"),
    "row_total": ("rowtotal",),
    "status": ("status", "state"),
    "currency": ("currency", "ordercurrencycode"),
    "item_id": ("itemid",),
    "name": ("name", "productname"),
    "price": ("price",),
    "tax_amount": ("taxamount",),
    "tax_percent": ("taxpercent",),
    "discount_amount": ("discountamount",),
    "payments": ("payments",),
    "pos_change": ("poschange", "change"),
    "pos_id": ("posid",),
    "location_id": ("locationid", "poslocationid"),
    "staff": ("staff", "posstaffname"),
    "staff_id": ("staffid", "posstaffid"),
    "shift_id": ("shiftid",),
}
_NUMERIC = {"grand_total", "qty", "row_total", "price", "tax_amount", "tax_percent"}
_NUMERIC |= {"discount_amount", "pos_change"}
_NON_WORD = re.compile(r"[^0-9a-z]")


def _norm(header: str) -> str:
    return _NON_WORD.sub("", header.replace("\ufeff", "").strip().casefold())


def _columns(header: list[str], context: ParseContext) -> dict[str, int]:
    norms = [_norm(h) for h in header]
    found: dict[str, int] = {}
    for name, aliases in COLUMNS.items():
        wanted = context.columns.get(name)
        if wanted is not None:
            if _norm(wanted) not in norms:
                raise ParseError(
                    f'column "{wanted}" (columns.{name}) is not in the header', "line 1"
                )
            found[name] = norms.index(_norm(wanted))
            continue
        index = next((norms.index(a) for a in aliases if a in norms), None)
        if index is not None:
            found[name] = index
    missing = [n for n in REQUIRED if n not in found]
    if missing:
        raise ParseError(f"missing column(s): {', '.join(missing)} (map them in columns)", "line 1")
    return found


def _number(value: str, decimal_comma: bool) -> str:
    if decimal_comma and "," in value:
        return value.replace(".", "").replace(",", ".")
    return value


def _order(get: dict[str, str], line: int, decimal_comma: bool) -> dict[str, Any]:
    payments = []
    for part in filter(None, (p.strip() for p in get.get("payments", "").split(";"))):
        method, _, paid = part.partition("=")
        paid = _number(paid.strip(), decimal_comma)
        amount(paid, f"line {line}, column payments ({method.strip()[:20]})")
        payments.append({"method": method.strip(), "amount_paid": paid})
    return {
        "increment_id": get["increment_id"],
        "created_at": get["created_at"],
        "status": get.get("status"),
        "grand_total": get["grand_total"],
        "order_currency_code": get.get("currency") or None,
        "pos_id": get.get("pos_id"),
        "pos_location_id": get.get("location_id"),
        "pos_staff_name": get.get("staff"),
        "pos_staff_id": get.get("staff_id"),
        "shift_id": get.get("shift_id"),
        "pos_change": get.get("pos_change"),
        "payments": payments,
        "items": [],
        "_line": line,
    }


def _item(get: dict[str, str], number: int) -> dict[str, Any]:
    return {
        "item_id": get.get("item_id") or str(number),
        "sku": get["sku"],
        "name": get.get("name"),
        "qty_ordered": get["qty"],
        "price": get.get("price") or None,
        "row_total": get["row_total"],
        "tax_amount": get.get("tax_amount") or None,
        "tax_percent": get.get("tax_percent") or None,
        "discount_amount": get.get("discount_amount") or None,
    }


def read_csv(stream: BinaryIO, context: ParseContext) -> Iterator[Parsed]:
    head = stream.read(HEAD_BYTES)
    encoding = choose_encoding(head, context.encoding)
    text = io.TextIOWrapper(rewound(head, stream), encoding=encoding, errors="strict", newline="")
    line = 0
    try:
        first = text.readline()
        line = 1
        delimiter = delimiter_setting(context.delimiter) or guess_delimiter(first)
        reader = csv.reader(text, delimiter=delimiter)
        header = next(csv.reader([first], delimiter=delimiter), [])
        columns = _columns(header, context)
        decimal_comma = delimiter != ","
        order: dict[str, Any] | None = None
        done: set[str] = set()
        for row in reader:
            start, line = line + 1, reader.line_num + 1
            if not "".join(row).strip():
                continue
            get = {n: (row[i].strip() if i < len(row) else "") for n, i in columns.items()}
            for name in _NUMERIC & get.keys():
                get[name] = _number(get[name], decimal_comma)
                amount(get[name], f'line {start}, column "{header[columns[name]].strip()}"')
            number = get["increment_id"]
            if not number:
                raise ParseError("a row without increment_id", f"line {start}")
            if order is None or order["increment_id"] != number:
                if order is not None:
                    yield from order_records(order, f"line {order.pop('_line')}", context)
                if number in done:
                    raise ParseError(
                        f"order {number} appears again after other orders; the rows of one "
                        "order must follow each other",
                        f"line {start}",
                    )
                done.add(number)
                order = _order(get, start, decimal_comma)
            order["items"].append(_item(get, len(order["items"]) + 1))
        if order is None:
            raise ParseError("the CSV has a header but no order rows", f"line {line}")
        yield from order_records(order, f"line {order.pop('_line')}", context)
    except UnicodeDecodeError:
        raise ParseError(
            f"the text is not valid {encoding}; set the source's encoding", f"line {line + 1}"
        ) from None
    except csv.Error as exc:
        raise ParseError(f"not readable as CSV: {exc}", f"line {line + 1}") from None
