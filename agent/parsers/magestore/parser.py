"""Magestore POS (Magento 2 web POS) orders and credit memos, as JSON from its API or as a
CSV export.

JSON: a list of orders, the search-result shape `{"items": [...], "total_count": …}`, or
one order. An order is Magento's (`increment_id`, `entity_id`, `created_at`, `state`/
`status`, `order_currency_code`, `grand_total`, `items[]`, `shipping_amount`) with the web
POS fields, at the top or under `extension_attributes`: `pos_id` (the till: the register),
`pos_location_id`/`location_id`, `pos_staff_id`/`webpos_staff_id` (the operator),
`pos_staff_name`, `shift_id`, `pos_change`/`webpos_change` (cash change), and the split
payments of `webpos_order_payment` in `payments[]`/`webpos_order_payments[]` (`method`,
`amount_paid` or `payment_amount`, `reference_number`, `card_type`, `type`: 0 pays the
order, 1 is a refund).

- Times: Magento stores `created_at` in UTC and writes it without an offset, so a time
  without an offset is read as UTC (never as store time); `occurred_at` is that instant in
  `context.timezone`, and the business date its local calendar day there.
- Store: `context.columns` may map a POS location to a store (`"location.3": "0042"`);
  else the source's store (`context.store`); else the order's location id. The location
  is kept as the `location_id` attribute.
- Kinds and keys: an order is a `sale` (`cancel` when its state or status is canceled),
  keyed `kind:store:pos_id:business_date:increment_id`. Each credit memo — in an order's
  `creditmemos[]` or exported alone (it names `order_id`/`order_increment_id`) — is a
  `return` keyed `return:store:-:business_date:<memo increment_id>` (a memo does not say
  which till refunded, so the key is the same in either shape), linked to the order and
  each line to the order's item (`order_item_id`).
- Lines follow Magento's own arithmetic for `grand_total`: `row_total` (before tax) with
  the item's `discount_amount` (less its `discount_tax_compensation_amount`, the part of a
  discount given on a tax-inclusive price that is tax) as a line discount, and
  `tax_amount`/`tax_percent` as a tax outside the price; this holds for catalogs priced
  with or without tax. Shipping is a fee line; a memo's adjustments are fee lines too.
  A configurable product's child items, which repeat their priced parent, are left out;
  a bundle priced by its children keeps the children. The POS total is never rewritten:
  what does not add up is the record's `imbalance`.
- Tenders: `context.columns` maps a payment method to a tender type
  (`"payment.cp1forpos": "voucher"`); else a card type makes a card, and the method's
  name says the rest (`cashforpos` cash, `ccforpos` card, gift, voucher, points…). An
  order's refund payments (type 1) are the tenders of its only credit memo; a memo's own
  `payments[]` win.

CSV: one row per order item, order fields repeated on every row, the rows of an order
together. Columns by header (case and punctuation ignored); `context.columns` maps
canonical names to the file's headers: increment_id, created_at, grand_total, sku, qty,
row_total (required), status, currency, item_id, name, price, tax_amount, tax_percent,
discount_amount, payments (`method=amount` pairs separated by `;`), pos_change, pos_id,
location_id, staff, staff_id, shift_id. Outside comma-separated files a decimal comma
("11,90") is read as a decimal point.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, BinaryIO, ClassVar

from .._base import ParseContext, Parsed, ParseError, rewound
from .._refuse import RECOVERABLE, json_fragment, lenient_time, refused
from .._tabular import ident, read_json, refuse_binary, sniff_head
from .._text import HEAD_BYTES, Repeated, refuse_repeated
from ._csv import read_csv
from ._order import order_records

__all__ = ["MagestoreParser"]

_WEBPOS = (b'"pos_id"', b'"pos_location_id"', b'"pos_staff', b'"webpos', b'"order_increment_id"')
_JSON_START = (b"{", b"[")
_SETTINGS = "columns"  # the place of a refusal that is the source's config, not the file
_UTC = ParseContext(file_name="")  # read a time without an offset as UTC


def _orders(doc: Any) -> tuple[list[Any], str]:
    """The orders of a document and the path they sit under."""
    if isinstance(doc, list):
        return doc, ""
    if not isinstance(doc, dict):
        raise ParseError("not a Magestore export: expected an order, a list or {items: [...]}")
    items = doc.get("items")
    if "increment_id" not in doc and isinstance(items, list):
        return items, "items"
    if "increment_id" not in doc:
        raise ParseError("not a Magestore export: no increment_id and no items list", "")
    return [doc], ""


def _json(data: bytes, context: ParseContext) -> Iterator[Parsed]:
    repeats: list[str] = []
    orders, base = _orders(read_json(data, repeats))
    for index, raw in enumerate(orders):
        place = f"{base}[{index}]"
        try:
            if repeats:
                refuse_repeated(raw, place)  # which value the POS meant cannot be known
            found = list(order_records(raw, place, context))
        except ParseError as exc:
            if exc.place.startswith(_SETTINGS):
                raise  # the source's settings are wrong, not this order: refuse the file
            # One unreadable order never holds back the rest of the file.
            yield _refused(raw, exc.place or place, exc.reason, context)
            continue
        except RECOVERABLE as exc:
            yield _refused(raw, place, f"unreadable order ({type(exc).__name__}: {exc})", context)
            continue
        yield from found


def _store(context: ParseContext, location: str | None) -> str | None:
    """The store as an order's record would name it: mapped, the source's, or the location."""
    mapped = context.columns.get(f"location.{location}") if location else None
    return mapped or context.store or location


def _refused(raw: Any, place: str, reason: str, context: ParseContext) -> Parsed:
    """The `refused` record of an order, with what it still says about itself."""
    # An object that repeats a key says nothing certain about itself (not even its store).
    fields = raw if isinstance(raw, dict) and not isinstance(raw, Repeated) else {}
    extension = fields.get("extension_attributes")
    extra = extension if isinstance(extension, dict) else {}

    def field(*names: str) -> str | None:
        for holder in (fields, extra):
            for name in names:
                value = ident(holder.get(name))
                if value:
                    return value
        return None

    created = field("created_at")
    when = lenient_time(created, _UTC) if created else None  # Magento writes UTC
    when = when.astimezone(context.timezone) if when else None
    return refused(
        "magestore",
        context,
        place,
        reason,
        json_fragment(raw),
        store=_store(context, field("pos_location_id", "location_id")),
        register=field("pos_id"),
        transaction_id=field("increment_id"),
        business_date=when.date() if when else None,
        occurred_at=when,
    )


class MagestoreParser:
    """Magestore web POS orders and credit memos (JSON or CSV)."""

    name: ClassVar[str] = "magestore"

    def sniff(self, head: bytes) -> bool:
        start = head = sniff_head(head)
        if start[:1] in _JSON_START:
            return b'"increment_id"' in head and any(word in head for word in _WEBPOS)
        first = start.split(b"\n", 1)[0].lower()
        return b"increment_id" in first and b"sku" in first

    def parse(self, stream: BinaryIO, *, context: ParseContext) -> Iterator[Parsed]:
        head = stream.read(HEAD_BYTES)
        if not head.strip():
            raise ParseError("the file is empty", "byte 0")
        refuse_binary(head, "a Magestore export")
        if sniff_head(head)[:1] in _JSON_START:
            # One JSON document: read whole (a day's orders are a few MB at most).
            return _json(head + stream.read(), context)
        return read_csv(rewound(head, stream), context)
