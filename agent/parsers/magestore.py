"""Magestore POS (Magento 2 web POS) orders, as JSON from its API or as a CSV export.

JSON: a list of orders, the search-result shape `{"items": [...]}`, or one order. An order
is Magento's (`increment_id`, `created_at` in UTC without an offset, `state`/`status`,
`order_currency_code`, `grand_total`, `items[]`) with the web POS fields `pos_id` (the
till: the register in the key), `pos_location_id`/`location_id`, `pos_staff_id`,
`pos_staff_name`, `shift_id`/`pos_shift_id`, and its split payments `payments[]`
(`webpos_order_payment`: `method`, `amount_paid`, `reference_number`, `card_type`).
A canceled order is a `cancel`. Each credit memo in `creditmemos[]` is a `return` of its
own (key from the memo's `increment_id`), linked to the order and to the order's lines.

Lines: `row_total` (before tax) with the item's `discount_amount` as a line discount and
`tax_amount`/`tax_percent` as a tax outside the price, which is how Magento adds up its
`grand_total`; items of a configurable product appear once (the child rows that only
repeat their parent are left out).

CSV: one row per order item, order fields repeated on every row. Columns by header;
`context.columns` maps canonical names (increment_id, created_at, status, grand_total,
currency, sku, name, qty, price, row_total, tax_amount, tax_percent, discount_amount,
payments, pos_id, location_id, staff) to the file's headers. `payments` holds
`method=amount` pairs separated by `;`. Outside comma-separated files a decimal comma
("11,90") is read as a decimal point.

The store is `context.store` (the agent's store); the POS location is kept as an attribute.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, BinaryIO, ClassVar

from pydantic import ValidationError

from agent.contract import (
    SourceRef,
    Tender,
    TenderType,
    Transaction,
    TransactionLine,
    make_key,
)

from . import register
from ._base import ParseContext, Parsed, ParseError
from ._text import (
    HEAD_BYTES,
    choose_encoding,
    delimiter_setting,
    exact_decimal,
    first_error,
    guess_delimiter,
    load_json,
)

__all__ = ["MagestoreParser"]

_METHODS = (
    ("cash", TenderType.CASH),
    ("gift", TenderType.GIFT_CARD),
    ("voucher", TenderType.VOUCHER),
    ("coupon", TenderType.VOUCHER),
    ("point", TenderType.LOYALTY),
    ("reward", TenderType.LOYALTY),
    ("card", TenderType.CARD),
    ("cc", TenderType.CARD),
    ("credit", TenderType.CARD),
    ("debit", TenderType.CARD),
)
_CSV_REQUIRED = ("increment_id", "created_at", "grand_total", "sku", "qty", "row_total")
_NUMERIC = {
    "grand_total",
    "qty",
    "price",
    "row_total",
    "tax_amount",
    "tax_percent",
    "discount_amount",
}
_CSV_COLUMNS = (
    *_CSV_REQUIRED,
    "status",
    "currency",
    "name",
    "price",
    "tax_amount",
    "tax_percent",
    "discount_amount",
    "payments",
    "pos_id",
    "location_id",
    "staff",
)


def _when(value: Any, place: str) -> datetime:
    """Magento stores times in UTC and writes them without an offset."""
    try:
        moment = datetime.fromisoformat(str(value).strip().replace(" ", "T").replace("Z", ""))
    except ValueError:
        raise ParseError(f"not a date and time: {str(value)[:40]!r}", place) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _tender_type(method: str, card_type: str) -> TenderType:
    text = method.lower()
    if card_type:
        return TenderType.CARD
    for word, kind in _METHODS:
        if word in text:
            return kind
    return TenderType.OTHER


class _Order:
    def __init__(self, raw: dict[str, Any], place: str, context: ParseContext) -> None:
        self.raw = raw
        self.place = place
        self.context = context
        number = str(raw.get("increment_id") or "").strip()
        if not number:
            raise ParseError("an order without increment_id", place)
        if not context.store:
            raise ParseError("no store: set the source's store for Magestore exports", place)
        if raw.get("created_at") in (None, ""):
            raise ParseError("an order without created_at", place)
        self.number = number
        self.created = _when(raw["created_at"], place + ".created_at")
        self.local = self.created.astimezone(context.timezone)
        self.register = str(raw["pos_id"]) if raw.get("pos_id") not in (None, "") else None
        self.currency = str(raw.get("order_currency_code") or context.currency).upper()

    def attributes(self) -> dict[str, str]:
        raw = self.raw
        out = {"order_id": str(raw.get("entity_id") or ""), "status": str(raw.get("status") or "")}
        for name, key in (
            ("location_id", "pos_location_id"),
            ("location_id", "location_id"),
            ("staff", "pos_staff_name"),
            ("staff_id", "pos_staff_id"),
            ("shift_id", "shift_id"),
            ("shift_id", "pos_shift_id"),
        ):
            if raw.get(key) not in (None, ""):
                out[name] = str(raw[key])
        return {k: v for k, v in out.items() if v}

    def key(self, kind: str, number: str | None = None) -> str:
        return make_key(
            kind, self.context.store or "", self.register, self.local.date(), number or self.number
        )

    def lines(self, items: list[Any], place: str, sign: int) -> list[dict[str, Any]]:
        out = []
        parents = {str(i.get("item_id")) for i in items if isinstance(i, dict)}
        for index, item in enumerate(items):
            where = f"{place}[{index}]"
            if not isinstance(item, dict):
                raise ParseError("an order item must be an object", where)
            if str(item.get("parent_item_id") or "") in parents - {""}:
                continue  # the child of a configurable product repeats its parent
            quantity = exact_decimal(
                item.get("qty_ordered", item.get("qty")), where + ".qty"
            ) or Decimal(1)
            amount = exact_decimal(item.get("row_total"), where + ".row_total")
            if amount is None:
                price = exact_decimal(item.get("price"), where + ".price") or Decimal(0)
                amount = price * quantity
            discount = exact_decimal(item.get("discount_amount"), where + ".discount_amount")
            tax = exact_decimal(item.get("tax_amount"), where + ".tax_amount")
            line: dict[str, Any] = {
                "number": str(item.get("item_id") or item.get("order_item_id") or index + 1),
                "sku": str(item.get("sku") or ""),
                "description": str(item.get("name") or ""),
                "quantity": sign * abs(quantity),
                "unit_price": exact_decimal(item.get("price"), where + ".price"),
                "amount": sign * abs(amount),
                "discounts": [{"amount": sign * abs(discount)}] if discount else [],
                "taxes": [
                    {
                        "code": f"{item.get('tax_percent') or 0}%",
                        "rate": exact_decimal(item.get("tax_percent"), where + ".tax_percent"),
                        "amount": sign * abs(tax),
                        "included": False,
                    }
                ]
                if tax
                else [],
            }
            if sign < 0:
                line["link"] = {
                    "transaction_id": self.number,
                    "register": self.register,
                    "business_date": self.local.date(),
                    "line": str(item.get("order_item_id") or ""),
                    "key": self.key("sale"),
                }
            out.append(line)
        return out

    def tenders(self, sign: int) -> list[dict[str, Any]]:
        out = []
        for index, pay in enumerate(self.raw.get("payments") or []):
            where = f"{self.place}.payments[{index}]"
            if not isinstance(pay, dict):
                raise ParseError("a payment must be an object", where)
            amount = exact_decimal(pay.get("amount_paid", pay.get("base_amount_paid")), where)
            if amount is None:
                continue
            method = str(pay.get("method") or pay.get("title") or "")
            card_type = str(pay.get("card_type") or "")
            tender: dict[str, Any] = {
                "type": _tender_type(method, card_type),
                "method": method,
                "amount": sign * abs(amount),
            }
            if card_type:
                tender["card"] = {"brand": card_type.lower()}
            out.append(tender)
        return out

    def transaction(
        self,
        kind: str,
        key: str,
        number: str,
        total: Decimal,
        when: datetime,
        lines: list[dict[str, Any]],
        tenders: list[dict[str, Any]],
        place: str,
        links: list[dict[str, Any]],
    ) -> Transaction:
        try:
            models = [TransactionLine.model_validate(ln) for ln in lines]
            return Transaction(
                kind=kind,
                key=key,
                store=self.context.store or "",
                register=self.register,
                operator=str(self.raw.get("pos_staff_id") or "") or None,
                transaction_id=number,
                business_date=when.astimezone(self.context.timezone).date(),
                occurred_at=when.astimezone(self.context.timezone),
                source=SourceRef(
                    file=self.context.file_name, position=place, sha256=self.context.sha256
                ),
                currency=self.currency,
                total=total,
                lines=models,
                tenders=[Tender.model_validate(t) for t in tenders],
                links=links,
                imbalance=Transaction.compute_imbalance(total, models, [], [], self.currency),
                attributes=self.attributes(),
            )
        except ValidationError as exc:
            raise ParseError(first_error(exc), place) from None


def _order_records(raw: Any, place: str, context: ParseContext) -> Iterator[Parsed]:
    if not isinstance(raw, dict):
        raise ParseError("an order must be an object", place)
    order = _Order(raw, place, context)
    items = raw.get("items") or []
    if not isinstance(items, list):
        raise ParseError("items must be a list", place + ".items")
    total = exact_decimal(raw.get("grand_total"), place + ".grand_total")
    if total is None:
        raise ParseError("an order without grand_total", place)
    state = str(raw.get("state") or raw.get("status") or "").lower()
    kind = "cancel" if state in ("canceled", "cancelled") else "sale"
    yield order.transaction(
        kind,
        order.key(kind),
        order.number,
        total,
        order.created,
        order.lines(items, place + ".items", 1),
        order.tenders(1) if kind == "sale" else [],
        place,
        [],
    )
    for m_index, memo in enumerate(raw.get("creditmemos") or []):
        where = f"{place}.creditmemos[{m_index}]"
        if not isinstance(memo, dict):
            raise ParseError("a credit memo must be an object", where)
        number = str(memo.get("increment_id") or memo.get("entity_id") or "").strip()
        if not number:
            raise ParseError("a credit memo without increment_id", where)
        memo_total = exact_decimal(memo.get("grand_total"), where + ".grand_total")
        if memo_total is None:
            raise ParseError("a credit memo without grand_total", where)
        when = _when(memo.get("created_at") or raw["created_at"], where + ".created_at")
        refund = order.tenders(-1)[:1]
        if refund:
            refund[0]["amount"] = -abs(memo_total)
        link = {
            "transaction_id": order.number,
            "register": order.register,
            "business_date": order.local.date(),
            "key": order.key("sale"),
            "reason": "credit memo",
        }
        yield order.transaction(
            "return",
            make_key(
                "return",
                context.store or "",
                order.register,
                when.astimezone(context.timezone).date(),
                number,
            ),
            number,
            -abs(memo_total),
            when,
            order.lines(memo.get("items") or [], where + ".items", -1),
            refund,
            where,
            [link],
        )


def _json(data: bytes, context: ParseContext) -> Iterator[Parsed]:
    doc = load_json(data)
    if isinstance(doc, dict) and isinstance(doc.get("items"), list) and "increment_id" not in doc:
        orders, base = doc["items"], "items"
    elif isinstance(doc, list):
        orders, base = doc, ""
    else:
        orders, base = [doc], ""
    for index, raw in enumerate(orders):
        yield from _order_records(raw, f"{base}[{index}]", context)


def _csv(data: bytes, context: ParseContext) -> Iterator[Parsed]:
    encoding = choose_encoding(data[:HEAD_BYTES], context.encoding)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(f"the text is not valid {encoding}", f"byte {exc.start}") from None
    first = text.lstrip("\ufeff").split("\n", 1)[0]
    delimiter = delimiter_setting(context.delimiter) or guess_delimiter(first)
    rows = csv.reader(io.StringIO(text.lstrip("\ufeff")), delimiter=delimiter)
    decimal_comma = delimiter != ","  # "11,90" in semicolon-separated exports
    header = [h.strip() for h in next(rows, [])]
    index = {h.lower(): i for i, h in enumerate(header)}
    columns = {}
    for name in _CSV_COLUMNS:
        wanted = context.columns.get(name, name).lower()
        if wanted in index:
            columns[name] = index[wanted]
    missing = [n for n in _CSV_REQUIRED if n not in columns]
    if missing:
        raise ParseError(f"missing column(s): {', '.join(missing)}", "line 1")
    orders: dict[str, dict[str, Any]] = {}
    for number, row in enumerate(rows, start=2):
        if not "".join(row).strip():
            continue

        def get(name: str, row: list[str] = row) -> str:
            pos = columns.get(name)
            value = row[pos].strip() if pos is not None and pos < len(row) else ""
            if decimal_comma and name in _NUMERIC:
                value = value.replace(".", "").replace(",", ".") if "," in value else value
            return value

        order_id = get("increment_id")
        if not order_id:
            raise ParseError("a row without increment_id", f"line {number}")
        order = orders.setdefault(
            order_id,
            {
                "increment_id": order_id,
                "created_at": get("created_at"),
                "status": get("status"),
                "grand_total": get("grand_total"),
                "order_currency_code": get("currency") or None,
                "pos_id": get("pos_id") or None,
                "location_id": get("location_id") or None,
                "pos_staff_name": get("staff") or None,
                "items": [],
                "payments": [],
                "_line": number,
            },
        )
        order["items"].append(
            {
                "item_id": str(len(order["items"]) + 1),
                "sku": get("sku"),
                "name": get("name"),
                "qty_ordered": get("qty"),
                "price": get("price") or None,
                "row_total": get("row_total"),
                "tax_amount": get("tax_amount") or None,
                "tax_percent": get("tax_percent") or None,
                "discount_amount": get("discount_amount") or None,
            }
        )
        if not order["payments"] and get("payments"):
            for part in get("payments").split(";"):
                method, _, amount = part.partition("=")
                order["payments"].append({"method": method.strip(), "amount_paid": amount})
    for order in orders.values():
        yield from _order_records(order, f"line {order.pop('_line')}", context)


class MagestoreParser:
    """Magestore web POS orders and credit memos (JSON or CSV)."""

    name: ClassVar[str] = "magestore"

    def sniff(self, head: bytes) -> bool:
        if head.lstrip()[:1] in (b"{", b"["):
            return b'"increment_id"' in head and (
                b'"pos_id"' in head or b'"pos_location_id"' in head or b'"webpos' in head
            )
        first = head.split(b"\n", 1)[0].lower()
        return b"increment_id" in first and b"sku" in first

    def parse(self, stream: BinaryIO, *, context: ParseContext) -> Iterator[Parsed]:
        data = stream.read()  # a day's orders: a few MB at most
        if not data.strip():
            raise ParseError("the file is empty", "byte 0")
        if b"\0" in data[:HEAD_BYTES] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ParseError("the file is binary, not a Magestore export", f"byte {data.index(0)}")
        if data.lstrip()[:1] in (b"{", b"["):
            return _json(data, context)
        return _csv(data, context)


register(MagestoreParser())
