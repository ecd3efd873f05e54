"""Oracle Retail Order Management System (Serenade / CWDirect) inventory transactions:
the `inCreateInvXaction` message that the INVTRAN_IN process reads, turned into
`Inventory` records.

The shape (inCreateInvXaction_1_0.dtd), matched by local name so a namespace does not matter:

    <Message source="…" target="INVTRAN_IN" type="…">
      <InventoryTransaction transaction_code="A" transaction_quantity="5"
          transaction_reason="…" batch_number="…" identification_nbr="…">
        <Transaction company="7" item_number="…" sku_code="…" warehouse="1" location="A0101"/>
        <TransactionTo company="7" item_number="…" warehouse="2" location="B0202"/>
      </InventoryTransaction>
    </Message>

OMS sends one transaction per file; a file holding several `InventoryTransaction`s (in
one `Message` or in several under a wrapper) is read the same way, streamed.

Transaction codes (OMS's "Work with Inventory Transaction Codes"):
  A   adjustment, signed       one delta at Transaction               reason "adjust"
  O   overlay on-hand          one absolute at Transaction            reason "overlay"
  OV  streamlined overlay      as O
  T   transfer                 −qty at Transaction, +qty at TransactionTo
                                                                       reason "transfer"
  G   item-to-item transfer    −qty of the Transaction item, +qty of the TransactionTo
                               item (at TransactionTo's warehouse, else the same one)
                                                                       reason "item_transfer"
  V   return to vendor         −|qty| at Transaction                  reason "return_to_vendor"
Refused: M (make up kits: the component decreases are not in the message) and
user-defined codes (their effect on stock is configured in OMS, not stated in the
message). Receipts and issues are system transactions OMS does not take in this message.

Values: the SKU is `item_number`, with `/sku_code` when the item has SKUs (runs of
blanks in the SKU code collapse to one); without an item number, `upc_code`,
`retail_reference_nbr` or `short_sku`. The location is the `warehouse`, with
`/location` when the message names the location inside it (an overlay sets that
location's on-hand, not the warehouse's). OMS messages do not name the store:
`context.store` is required.

When: the message carries no date or time, so the moment comes from a date stamped in the
file name (`INVTRAN_20240315_181500.xml`, local to `context.timezone`); without one the
file is refused.

Key reference: `batch_number` and `identification_nbr` joined by "-" (the sender's own
document ids, so the same movement gives the same key in whatever file it comes); the
second movement of one SKU and location under the same document in a file gets ".2", and
so on. Without either id: `sha-<first 16 hex of the file's SHA-256>-<n>`, n counting the
InventoryTransaction elements of the file.

DTDs may be declared (OMS messages name theirs), but entity declarations and external
references are refused: no XML bomb or external entity is ever expanded.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import BinaryIO, ClassVar, Literal, cast
from xml.etree.ElementTree import Element

from defusedxml.ElementTree import iterparse
from pydantic import ValidationError

from contract import Inventory, SourceRef, inventory_key

from ._base import ParseContext, Parsed, ParseError
from ._xml import guarded, longest_run, refusing_unsafe_xml
from .inventory_time import Chain, Moment, moment_from_name, parse_quantity

__all__ = ["OmsParser"]

HEAD_BYTES = 64 * 1024
_SNIFF_ELEMENT = re.compile(rb"<(?:[\w.-]+:)?InventoryTransaction[\s>/]")
_SNIFF_ATTRIBUTE = re.compile(rb"transaction_(?:code|quantity)\s*=")
_BOMS = (b"\xff\xfe", b"\xfe\xff")


@dataclass(frozen=True, slots=True)
class _Movement:
    sku: str
    location: str
    quantity: Decimal
    mode: Literal["absolute", "delta"]
    reason: str
    place: str


class OmsParser:
    """OMS `inCreateInvXaction` inventory transaction XML."""

    name: ClassVar[str] = "oms"

    def sniff(self, head: bytes) -> bool:
        if head.startswith(_BOMS):
            head = head.decode("utf-16", errors="replace").encode("utf-8", errors="replace")
        return bool(_SNIFF_ELEMENT.search(head) and _SNIFF_ATTRIBUTE.search(head))

    def parse(self, stream: BinaryIO, *, context: ParseContext) -> Iterator[Parsed]:
        head = stream.read(HEAD_BYTES)
        if not head.strip():
            raise ParseError("the file is empty", "byte 0")
        if b"\0" in head and not head.startswith(_BOMS):
            raise ParseError("the file is binary, not XML", f"byte {head.index(0)}")
        if not context.store:
            raise ParseError(
                "no store: OMS inventory messages do not name one; set the source's store"
            )
        moment = moment_from_name(context.file_name, context.timezone)
        reader = _Reader(context, context.store, moment)
        source = cast(BinaryIO, io.BufferedReader(Chain(head, stream)))
        longest = longest_run(context.limits.string_chars)
        # A DTD is allowed (OMS messages name theirs); defusedxml refuses its entities.
        checked = guarded(head, source, longest, dtd=True)
        yield from refusing_unsafe_xml(reader.records(checked))


class _Reader:
    def __init__(self, context: ParseContext, store: str, moment: Moment | None) -> None:
        self.context = context
        self.store = store
        self.moment = moment
        self.seen: dict[str, int] = {}

    def records(self, source: BinaryIO) -> Iterator[Inventory]:
        stack: list[Element] = []
        count = 0
        for event, element in iterparse(
            source, events=("start", "end"), forbid_dtd=False, forbid_entities=True
        ):
            if event == "start":
                stack.append(element)
                continue
            stack.pop()
            if _local(element.tag) != "InventoryTransaction":
                continue
            count += 1
            yield from self._transaction(element, count)
            element.clear()
            if stack:
                stack[-1].remove(element)
        if count == 0:
            raise ParseError(
                "no InventoryTransaction element: not an OMS inventory transaction message"
            )

    def _transaction(self, element: Element, n: int) -> Iterator[Inventory]:
        place = f"InventoryTransaction[{n}]"
        code = element.get("transaction_code", "").strip().upper()
        text = element.get("transaction_quantity", "").strip()
        quantity = parse_quantity(text)
        if quantity is None:
            what = f"{text!r} is not a number" if text else "it is missing"
            raise ParseError(f"bad transaction_quantity: {what}", f"{place}/@transaction_quantity")
        origin = _child(element, "Transaction")
        target = _child(element, "TransactionTo")
        if origin is None:
            raise ParseError("no Transaction element (the item and warehouse)", place)
        here = f"{place}/Transaction"
        there = f"{place}/TransactionTo"
        sku, location = _item(origin, here), _where(origin, here)
        movements: list[_Movement]
        if code == "A":
            movements = [_Movement(sku, location, quantity, "delta", "adjust", here)]
        elif code in ("O", "OV"):
            movements = [_Movement(sku, location, quantity, "absolute", "overlay", here)]
        elif code == "T":
            if target is None or not target.get("warehouse", "").strip():
                raise ParseError("a transfer needs TransactionTo with a warehouse", place)
            movements = [
                _Movement(sku, location, -quantity, "delta", "transfer", here),
                _Movement(sku, _where(target, there), quantity, "delta", "transfer", there),
            ]
        elif code == "G":
            if target is None:
                raise ParseError("an item-to-item transfer needs TransactionTo", place)
            to_location = _where(target, there) if target.get("warehouse", "").strip() else location
            movements = [
                _Movement(sku, location, -quantity, "delta", "item_transfer", here),
                _Movement(
                    _item(target, there), to_location, quantity, "delta", "item_transfer", there
                ),
            ]
        elif code == "V":
            movements = [
                _Movement(sku, location, -abs(quantity), "delta", "return_to_vendor", here)
            ]
        elif code == "M":
            raise ParseError(
                "make-up kit (M) transactions change component stock the message does not "
                "list; not forwarded",
                f"{place}/@transaction_code",
            )
        elif not code:
            raise ParseError("transaction_code is missing", f"{place}/@transaction_code")
        else:
            raise ParseError(
                f"transaction code {code!r} is user-defined in OMS; its effect on stock is "
                "not stated in the message",
                f"{place}/@transaction_code",
            )
        document = "-".join(
            value
            for value in (
                element.get("batch_number", "").strip(),
                element.get("identification_nbr", "").strip(),
            )
            if value
        )
        for movement in movements:
            yield self._record(movement, document, n)

    def _record(self, movement: _Movement, document: str, n: int) -> Inventory:
        context = self.context
        moment = self.moment
        if moment is None:
            raise ParseError(
                "the OMS message carries no transaction date and the file name no date "
                "stamp (such as INVTRAN_20240315_181500.xml)",
                movement.place,
            )
        if document:
            base = inventory_key(self.store, movement.location, movement.sku, document)
            seen = self.seen.get(base, 0) + 1
            self.seen[base] = seen
            reference = document if seen == 1 else f"{document}.{seen}"
        elif context.sha256:
            reference = f"sha-{context.sha256[:16]}-{n}"
        else:
            raise ParseError(
                "the transaction has no batch_number or identification_nbr and the file's "
                "content hash is unknown, so its idempotency key cannot be made",
                movement.place,
            )
        try:
            return Inventory(
                kind="inventory",
                key=inventory_key(self.store, movement.location, movement.sku, reference),
                store=self.store,
                business_date=moment.local_date(context.timezone),
                occurred_at=moment.at,
                source=SourceRef(
                    file=context.file_name, position=movement.place, sha256=context.sha256
                ),
                location=movement.location,
                sku=movement.sku,
                quantity=movement.quantity,
                mode=movement.mode,
                reason=movement.reason,
                reference=reference,
            )
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ParseError(f"{where}: {err['msg']}", movement.place) from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child(element: Element, name: str) -> Element | None:
    return next((c for c in element if _local(c.tag) == name), None)


def _item(element: Element, place: str) -> str:
    item = element.get("item_number", "").strip()
    if item:
        sku_code = " ".join(element.get("sku_code", "").split())
        return f"{item}/{sku_code}" if sku_code else item
    for name in ("upc_code", "retail_reference_nbr", "short_sku"):
        value = element.get(name, "").strip()
        if value:
            return value
    raise ParseError("no item: item_number, upc_code, retail_reference_nbr or short_sku", place)


def _where(element: Element, place: str) -> str:
    warehouse = element.get("warehouse", "").strip()
    if not warehouse:
        raise ParseError("no warehouse", f"{place}/@warehouse")
    location = element.get("location", "").strip()
    return f"{warehouse}/{location}" if location else warehouse
