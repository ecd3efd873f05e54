"""MICROS RES 3700 delimited check exports (`|` or `,`), one row per record, read into
`Check`s; the layout is documented in `micros.py`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal

from .._base import ParseContext, Parsed, ParseError
from .._tabular import amount
from .._text import HEAD_BYTES, choose_encoding, delimiter_setting
from ._check import Check, Detail, day, moment, records

__all__ = ["LAYOUT", "read_res"]

LAYOUT: dict[str, tuple[str, ...]] = {
    "H": ("check", "business_date", "closed_at", "workstation", "employee", "total", "flags"),
    "D": ("check", "line", "kind", "item", "description", "quantity", "amount", "flags"),
    "T": ("check", "line", "tender", "amount", "change"),
}
_OPTIONAL = {"flags", "change", "description", "closed_at", "employee", "quantity"}
_LINE_KINDS = {"M": "item", "S": "service_charge", "D": "discount"}


def _layout(context: ParseContext) -> dict[str, dict[str, int]]:
    """Field positions per row type: the defaults, moved by `columns` ("H.total": "6")."""
    layout = {kind: {n: i + 1 for i, n in enumerate(names)} for kind, names in LAYOUT.items()}
    for key, value in context.columns.items():
        kind, _, name = key.partition(".")
        if kind not in LAYOUT:
            continue
        if name not in layout[kind]:
            known = ", ".join(f"{kind}.{n}" for n in LAYOUT[kind])
            raise ParseError(f"unknown field {key!r} in the column map (known: {known})", "columns")
        text = str(value).strip()
        if not text.isdigit() or int(text) < 1:
            raise ParseError(
                f"columns.{key} must be a field position from 1 (0 is the row type), "
                f"not {text[:20]!r}",
                "columns",
            )
        layout[kind][name] = int(text)
    return layout


def _decode(data: bytes, context: ParseContext) -> str:
    encoding = choose_encoding(data[:HEAD_BYTES], context.encoding)
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"the text is not valid {encoding}; set the source's encoding", f"byte {exc.start}"
        ) from None


class _Rows:
    """The checks of one file, built row by row."""

    def __init__(self, context: ParseContext, store: str) -> None:
        self.context = context
        self.store = store
        self.checks: list[Check] = []
        self.current: dict[str, Check] = {}

    def header(self, get: dict[str, str], place: str) -> None:
        check = Check(place, number=get["check"], store=self.store)
        if get["business_date"]:
            check.business_date = day(get["business_date"], place)
        if get["closed_at"]:
            check.closed_at = moment(get["closed_at"], False, self.context, place)
        check.register = get["workstation"] or None
        check.operator = get["employee"] or None
        check.total = amount(get["total"], place)
        flags = get["flags"].upper()
        check.training, check.cancelled = "T" in flags, "C" in flags
        check.open, check.reopened = "O" in flags, "R" in flags
        self.checks.append(check)
        self.current[check.number] = check

    def detail(self, kind: str, get: dict[str, str], place: str) -> None:
        check = self.current.get(get["check"])
        if check is None:
            raise ParseError(f"a {kind} row for check {get['check']} before its H row", place)
        value = amount(get["amount"], place) or Decimal(0)
        if kind == "T":
            change = amount(get["change"], place)
            check.details.append(Detail("tender", get["line"], get["tender"], value, change=change))
            return
        flags = get["flags"].upper()
        line_kind = _LINE_KINDS.get(get["kind"].upper() or "M")
        if line_kind is None:
            raise ParseError(f"unknown line kind {get['kind'][:10]!r} (M, D or S)", place)
        quantity = amount(get["quantity"], place) or Decimal(1)
        if "R" in flags and line_kind == "item":
            quantity, value = -abs(quantity), -abs(value)
            check.returns += 1
        check.details.append(
            Detail(
                line_kind,
                get["line"],
                get["item"],
                value,
                quantity=quantity,
                voided="V" in flags or "E" in flags,
                description=get["description"],
            )
        )


def read_res(data: bytes, context: ParseContext) -> Iterator[Parsed]:
    if not context.store:
        raise ParseError("no store: RES exports do not name one; set the source's store")
    text = _decode(data, context)
    first = text.lstrip("\ufeff \r\n\t").split("\n", 1)[0]
    delimiter = delimiter_setting(context.delimiter) or ("|" if "|" in first else ",")
    layout = _layout(context)
    rows = _Rows(context, context.store)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    previous = 0
    try:
        for row in reader:
            place = f"line {previous + 1}"
            previous = reader.line_num
            if not "".join(row).strip():
                continue
            kind = row[0].strip().upper()
            if kind not in layout:
                raise ParseError(f"unknown row type {row[0][:10]!r} (H, D or T)", place)
            fields = layout[kind]
            needed = 1 + max(p for n, p in fields.items() if n not in _OPTIONAL)
            if len(row) < needed:
                raise ParseError(f"a {kind} row needs {needed} fields, found {len(row)}", place)
            get = {n: (row[p].strip() if p < len(row) else "") for n, p in fields.items()}
            if not get["check"]:
                raise ParseError("no check number", place)
            if kind == "H":
                rows.header(get, place)
            else:
                rows.detail(kind, get, place)
    except csv.Error as exc:
        raise ParseError(f"not readable as delimited text: {exc}", f"line {previous + 1}") from None
    if not rows.checks:
        raise ParseError("no check header (H) rows: not a RES check export", "line 1")
    yield from records(rows.checks, context)
