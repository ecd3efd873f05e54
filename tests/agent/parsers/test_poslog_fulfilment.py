"""Online orders handed over at the till, read from POSLog the way Oracle Xstore's
xcenter schema writes customer-order lines: `CustomerOrderForPickup` /
`CustomerOrderForDelivery` with an `OrderStatus` attribute and the order in
`AccountNumber`. A line of an order taken now (`New`) stays a sale line; a line of an
earlier order the store handed over, shipped or cancelled becomes a `fulfillment`.

Provenance: the element and attribute names come from the xcenter POSLog v21 schema as
its JAXB binding `dtv.xcenter.poslog.ws.v21.CustomerOrderForPickupType` declares them
(`OrderStatus` a free string attribute, `AccountNumber`, `Pickup`), and `New` from the
published Xstore day in `realworld/oracle_xstore_day`. The other `OrderStatus` values
(PickedUp, Complete, Partial, Shipped, Cancelled) are not taken from a real export: no
public export of a pickup was found, so they are the vocabulary this parser accepts, and
these files are hand-made in the schema's shape."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path

import pytest

from agent.parsers import ParseContext, parse_bytes
from contract import Fulfillment, Refused, Transaction
from lab.pos import PickupCounter, PoslogPos

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<POSLog xmlns="http://www.nrf-arts.org/IXRetail/namespace/"
        xmlns:dtv="http://www.datavantagecorp.com/xstore/">
<Transaction>
<RetailStoreID>0042</RetailStoreID>
<WorkstationID>1</WorkstationID>
<SequenceNumber>{number}</SequenceNumber>
<BusinessDayDate>2026-12-05</BusinessDayDate>
<EndDateTime>2026-12-05T15:04:00+01:00</EndDateTime>
<CurrencyCode>EUR</CurrencyCode>
<RetailTransaction TransactionStatus="Completed">
{lines}
{total}
</RetailTransaction>
</Transaction>
</POSLog>
"""


def _order_line(seq: int, status: str, order: str, item: str, qty: str) -> str:
    return f"""<LineItem VoidFlag="false"><SequenceNumber>{seq}</SequenceNumber>
<CustomerOrderForPickup ItemType="Stock" OrderStatus="{status}">
<dtv:OrderType>PICKUP</dtv:OrderType>
<AccountNumber>{order}</AccountNumber>
<ItemID>{item}</ItemID><Description>Item {item}</Description>
<ActualSalesUnitPrice>5.00</ActualSalesUnitPrice>
<ExtendedAmount>{Decimal(qty) * 5:.2f}</ExtendedAmount><Quantity>{qty}</Quantity>
</CustomerOrderForPickup></LineItem>"""


SALE = """<LineItem VoidFlag="false"><SequenceNumber>9</SequenceNumber>
<Sale><ItemID>111</ItemID><ActualSalesUnitPrice>2.50</ActualSalesUnitPrice>
<ExtendedAmount>2.50</ExtendedAmount><Quantity>1</Quantity></Sale></LineItem>
<LineItem><SequenceNumber>10</SequenceNumber>
<Tender TenderType="Cash"><Amount>2.50</Amount></Tender></LineItem>"""
SALE_TOTAL = '<Total TotalType="TransactionGrandAmount">2.50</Total>'


def _read(number: str, lines: str, total: str = "") -> list[object]:
    data = HEAD.format(number=number, lines=lines, total=total).encode()
    context = ParseContext(file_name="t.xml", sha256=hashlib.sha256(data).hexdigest())
    return list(parse_bytes(data, "poslog", context=context))


def test_a_pickup_of_an_online_order_is_a_fulfillment_and_no_sale() -> None:
    lines = _order_line(1, "PickedUp", "WEB-1001", "4711", "2") + _order_line(
        2, "PickedUp", "WEB-1001", "4712", "1"
    )
    records = _read("77", lines)
    assert len(records) == 1
    (done,) = records
    assert isinstance(done, Fulfillment)
    assert done.order_number == "WEB-1001"
    assert done.status == "picked_up"
    assert done.transaction_id == "77"
    assert [(x.sku, x.handed_over) for x in done.lines] == [
        ("4711", Decimal(2)),
        ("4712", Decimal(1)),
    ]
    assert done.key == "fulfillment:0042:1:2026-12-05:77%3AWEB-1001"
    # Read again from another file: the same key.
    assert _read("77", lines)[0].key == done.key  # type: ignore[attr-defined]


def test_a_line_handed_over_and_a_line_cancelled_is_a_partial_pickup() -> None:
    lines = _order_line(1, "PickedUp", "WEB-1002", "4711", "1") + _order_line(
        2, "Cancelled", "WEB-1002", "4712", "3"
    )
    (done,) = _read("78", lines)
    assert isinstance(done, Fulfillment)
    assert done.status == "partially_picked_up"
    assert [(x.handed_over, x.cancelled) for x in done.lines] == [
        (Decimal(1), Decimal(0)),
        (Decimal(0), Decimal(3)),
    ]


def test_a_basket_with_a_pickup_and_a_sale_gives_both() -> None:
    records = _read("79", _order_line(1, "Complete", "WEB-1003", "4711", "1") + SALE, SALE_TOTAL)
    kinds = sorted(type(r).__name__ for r in records)
    assert kinds == ["Fulfillment", "Transaction"]
    sale = next(r for r in records if isinstance(r, Transaction))
    assert sale.total == Decimal("2.50")
    assert [line.sku for line in sale.lines] == ["111"]  # the order's line is not sold again
    assert sale.imbalance == 0


def test_an_order_taken_now_is_still_a_sale_line() -> None:
    records = _read(
        "80",
        _order_line(1, "New", "WEB-1004", "4711", "1"),
        '<Total TotalType="TransactionGrandAmount">5.00</Total>',
    )
    assert [type(r).__name__ for r in records] == ["Transaction"]
    (sale,) = records
    assert isinstance(sale, Transaction)
    assert [(line.sku, line.amount) for line in sale.lines] == [("4711", Decimal("5.00"))]


@pytest.mark.parametrize("status", ["PickedUp", "Shipped", "Cancelled"])
def test_an_order_line_that_names_no_order_is_refused_alone(status: str) -> None:
    broken = _order_line(1, status, "", "4711", "1").replace("<AccountNumber></AccountNumber>", "")
    records = _read("81", broken)
    (refused,) = records
    assert isinstance(refused, Refused)
    assert "names no order" in refused.reason


def test_the_simulated_pickup_counter_writes_what_the_parser_reads(tmp_path: Path) -> None:
    imports = tmp_path / "imports"
    imports.mkdir()
    for number, lines in (("WEB-1", 2), ("WEB-2", 2)):
        order = {
            "kind": "order",
            "order_number": number,
            "lines": [
                {"sku": f"47{n}", "quantity": "1", "unit_price": "5.00"} for n in range(lines)
            ],
        }
        (imports / f"{number}.json").write_text(json.dumps(order))
    pos = PoslogPos("0042", tmp_path / "export")
    counter = PickupCounter(pos, imports)
    assert counter.serve(partial=lambda number: number == "WEB-2") == ["WEB-1", "WEB-2"]
    assert counter.waiting() == []  # each imported once
    assert counter.serve() == []
    found: dict[str, Fulfillment] = {}
    for path in sorted((tmp_path / "export").iterdir()):
        data = path.read_bytes()
        context = ParseContext(file_name=path.name, sha256=hashlib.sha256(data).hexdigest())
        for record in parse_bytes(data, "poslog", context=context):
            assert isinstance(record, Fulfillment)
            found[record.order_number] = record
    assert found["WEB-1"].status == "picked_up"
    assert found["WEB-2"].status == "partially_picked_up"
    assert [(x.sku, x.handed_over, x.cancelled) for x in found["WEB-2"].lines] == [
        ("470", Decimal(1), Decimal(0)),
        ("471", Decimal(0), Decimal(1)),
    ]
