"""An order or a cancellation as a file for a POS import folder: JSON, CSV or POSLog.

The POSLog shape is ARTS POSLog 6 (`http://www.nrf-arts.org/IXRetail/namespace/`): one
`Transaction` holding a `CustomerOrderTransaction`. Where its elements sit follows
published POSLog written by POS systems: the `CustomerOrderTransaction` with
`TypeCode="Transaction"`, `ReceiptNumber` and `POSLogDateTime TypeCode="Transaction"`
under `Transaction` and a `Total TotalType="TransactionGrandAmount"` (the POSLog
template of piukhq/harmonia, `app/exports/agents/burger_king.py` at e9e3760f); its
`LineItem`s as Oracle Xstore writes an order taken for pickup or delivery
(`CustomerOrderForPickup` / `CustomerOrderForDelivery`, priced like a `Sale`: see
`tests/agent/parsers/realworld/SOURCES.md`); a cancelled order as a voided
`CustomerOrderTransaction` (`TransactionStatus="Voided"`). The agent's own POSLog parser
reads these files, which a test checks.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from typing import Any

from contract import OnlineOrder, OrderCancel

from ._base import DownItem

__all__ = ["EXTENSIONS", "render"]

EXTENSIONS = {"json": ".json", "csv": ".csv", "poslog": ".xml"}

_NS = "http://www.nrf-arts.org/IXRetail/namespace/"


def render(item: DownItem, fmt: str) -> bytes:
    """The file's bytes in `fmt` (json, csv or poslog)."""
    if fmt == "json":
        return _json(item)
    if fmt == "csv":
        return _csv(item)
    if fmt == "poslog":
        return _poslog(item)
    raise ValueError(f"unknown format {fmt!r}")


def _json(item: DownItem) -> bytes:
    data: dict[str, Any] = {"seq": item.seq, "key": item.key, **item.body.model_dump(mode="json")}
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


CSV_COLUMNS = (
    "kind",
    "order_number",
    "order_id",
    "version",
    "fulfilment",
    "created_at",
    "promised_by",
    "currency",
    "line_id",
    "sku",
    "description",
    "quantity",
    "unit",
    "unit_price",
    "discount",
    "tax",
    "amount",
    "order_total",
    "reason",
)


def _csv(item: DownItem) -> bytes:
    """One row per line, the order's own fields repeated on each; a cancellation is one row."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    body = item.body
    head = {
        "kind": body.kind,
        "order_number": body.order_number,
        "order_id": body.order_id,
        "version": body.version,
    }
    if isinstance(body, OrderCancel):
        writer.writerow({**head, "reason": body.reason})
        return out.getvalue().encode()
    head |= {
        "fulfilment": body.fulfilment,
        "created_at": body.created_at.isoformat(),
        "promised_by": body.promised_by.isoformat() if body.promised_by else "",
        "currency": body.currency,
        "order_total": str(body.total),
    }
    for line in body.lines:
        writer.writerow(
            {
                **head,
                "line_id": line.line_id,
                "sku": line.sku,
                "description": line.description,
                "quantity": str(line.quantity),
                "unit": line.unit or "",
                "unit_price": str(line.unit_price),
                "discount": str(line.discount),
                "tax": str(line.tax),
                "amount": str(line.amount),
            }
        )
    return out.getvalue().encode()


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{_NS}}}{tag}", attrs)
    if text is not None:
        el.text = text
    return el


def _poslog(item: DownItem) -> bytes:
    body = item.body
    ET.register_namespace("", _NS)
    root = ET.Element(
        f"{{{_NS}}}POSLog", {"MajorVersion": "6", "MinorVersion": "0", "FixVersion": "0"}
    )
    tx = _sub(root, "Transaction")
    unit = _sub(tx, "BusinessUnit")
    _sub(unit, "UnitID", body.store)
    _sub(tx, "SequenceNumber", str(item.seq))  # central's downlink seq: unique per store
    _sub(tx, "ReceiptNumber", body.order_number)
    if isinstance(body, OnlineOrder):
        _sub(tx, "BusinessDayDate", body.created_at.date().isoformat())
        _sub(tx, "BeginDateTime", body.created_at.isoformat())
        _sub(tx, "POSLogDateTime", body.created_at.isoformat(), TypeCode="Transaction")
        _sub(tx, "CurrencyCode", body.currency)
        _order(tx, body)
    else:
        if item.issued_at is not None:  # the order's cancellation, as central queued it
            _sub(tx, "BeginDateTime", item.issued_at.isoformat())
        order = _sub(tx, "CustomerOrderTransaction", TypeCode="Transaction")
        order.set("TransactionStatus", "Voided")
        _sub(order, "CustomerOrderID", body.order_id)
        if body.reason:
            _sub(order, "Reason", body.reason)
    ET.indent(root)
    text: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return text + b"\n"


def _order(tx: ET.Element, body: OnlineOrder) -> None:
    order = _sub(tx, "CustomerOrderTransaction", TypeCode="Transaction")
    order.set("TransactionStatus", "Totaled")
    _sub(order, "CustomerOrderID", body.order_id)
    kind = "CustomerOrderForPickup" if body.fulfilment == "pickup" else "CustomerOrderForDelivery"
    sequence = 0
    for line in body.lines:
        sequence += 1
        item = _sub(order, "LineItem")
        _sub(item, "SequenceNumber", str(sequence))
        sale = _sub(item, kind, ItemType="Stock")
        _sub(sale, "ItemID", line.sku)
        if line.description:
            _sub(sale, "Description", line.description)
        _sub(sale, "ActualSalesUnitPrice", str(line.unit_price))
        _sub(sale, "ExtendedAmount", str(line.amount))
        if line.discount:
            _sub(sale, "ExtendedDiscountAmount", str(line.discount))
        _sub(sale, "Quantity", str(line.quantity), UnitOfMeasureCode=line.unit or "EA")
        _sub(sale, "LineItemID", line.line_id)
    for payment in body.payments:
        sequence += 1
        item = _sub(order, "LineItem")
        _sub(item, "SequenceNumber", str(sequence))
        tender = _sub(item, "Tender", TenderType=payment.method, TypeCode="Sale")
        _sub(tender, "Amount", str(payment.amount))
        if payment.reference:
            _sub(tender, "Reference", payment.reference)
    _sub(order, "Total", str(body.tax_total), TotalType="TransactionTaxAmount")
    _sub(order, "Total", str(body.total), TotalType="TransactionGrandAmount")
