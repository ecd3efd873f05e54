"""Canonical records and routed records that every connector test sends."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from central.connectors import Routed
from contract import Inventory, Transaction, inventory_key, make_key

STORE = "0042"
DAY = date(2026, 11, 20)
WHEN = datetime(2026, 11, 20, 14, 5, 9, tzinfo=UTC)

ROUTE = {
    "store": "berlin-mitte",
    "supply_channel": "berlin-mitte-supply",
    "distribution_channel": "berlin-mitte-dist",
    "source_code": "berlin_mitte",
    "store_id": "1",
    "website": "base",
    "store_view": "de",
    "location": "131000000000001AAA",
    "price_book": "01s000000000001AAA",
    "country": "DE",
    "currency": "EUR",
    "tax_mode": "included",
}
SKUS = {
    "4006381333931": "SKU-PEN-BLUE",
    "4006381333948": "SKU-PEN-RED",
    "2000000000017": "SKU-APPLES",
    "2000000000024": "SKU-COUPON",
}
PAYMENTS = {"card": "adyen-pos", "cash": "cash"}
TAX_CODES = {"A": "de-standard", "B": "de-reduced"}


def _source() -> dict[str, str]:
    return {"file": "poslog-0001.xml", "position": "/POSLog/Transaction[1]"}


def sale(number: str = "1001", *, customer: bool = False) -> Transaction:
    body: dict[str, Any] = {
        "kind": "sale",
        "key": make_key("sale", STORE, "3", DAY, number),
        "store": STORE,
        "register": "3",
        "operator": "77",
        "business_date": DAY,
        "occurred_at": WHEN,
        "source": _source(),
        "transaction_id": number,
        "currency": "EUR",
        "total": Decimal("29.97"),
        "lines": [
            {
                "number": "1",
                "sku": "4006381333931",
                "description": "Pen blue",
                "quantity": Decimal(2),
                "unit_price": Decimal("9.99"),
                "amount": Decimal("19.98"),
                "taxes": [
                    {"code": "A", "rate": Decimal(19), "amount": Decimal("3.19"), "included": True}
                ],
            },
            {
                "number": "2",
                "sku": "4006381333948",
                "description": "Pen red",
                "quantity": Decimal(1),
                "unit_price": Decimal("9.99"),
                "amount": Decimal("9.99"),
                "taxes": [
                    {"code": "A", "rate": Decimal(19), "amount": Decimal("1.60"), "included": True}
                ],
            },
        ],
        "tenders": [
            {
                "type": "card",
                "method": "VISA",
                "amount": Decimal("20.00"),
                "card": {"brand": "visa", "last4": "1111"},
                "auth_code": "A1B2C3",
            },
            {
                "type": "cash",
                "method": "CASH",
                "amount": Decimal("10.00"),
                "change": Decimal("0.03"),
            },
        ],
        "taxes": [{"code": "A", "rate": Decimal(19), "amount": Decimal("4.79"), "included": True}],
    }
    if customer:
        body["customer"] = {
            "loyalty_id": "L-778899",
            "pos_customer_id": "C-1",
            "email": "jana.example@example.org",
            "phone": "+49 30 1234567",
            "first_name": "Jana",
            "last_name": "Beispiel",
        }
    return Transaction.model_validate(body)


def grocery(number: str = "1101") -> Transaction:
    """A weighed item (0.65 kg at 2.99/kg, reduced VAT) and two pens with a line discount,
    tax included: 19.92 at the till, to the cent."""
    return Transaction.model_validate(
        {
            "kind": "sale",
            "key": make_key("sale", STORE, "3", DAY, number),
            "store": STORE,
            "register": "3",
            "business_date": DAY,
            "occurred_at": WHEN,
            "source": _source(),
            "transaction_id": number,
            "currency": "EUR",
            "total": Decimal("19.92"),
            "lines": [
                {
                    "number": "1",
                    "sku": "2000000000017",
                    "description": "Apples, loose",
                    "quantity": Decimal("0.65"),
                    "unit_price": Decimal("2.99"),
                    "amount": Decimal("1.94"),
                    "taxes": [
                        {
                            "code": "B",
                            "rate": Decimal(7),
                            "amount": Decimal("0.13"),
                            "included": True,
                        }
                    ],
                },
                {
                    "number": "2",
                    "sku": "4006381333931",
                    "description": "Pen blue",
                    "quantity": Decimal(2),
                    "unit_price": Decimal("9.99"),
                    "amount": Decimal("19.98"),
                    "discounts": [
                        {"code": "PROMO2", "description": "2 off pens", "amount": Decimal("2.00")}
                    ],
                    "taxes": [
                        {
                            "code": "A",
                            "rate": Decimal(19),
                            "amount": Decimal("2.87"),
                            "included": True,
                        }
                    ],
                },
            ],
            "tenders": [{"type": "card", "method": "VISA", "amount": Decimal("19.92")}],
        }
    )


def grocery_day() -> list[Transaction]:
    """42 sales of one day, 32 of them with a weighed line (0.155 to 2.480 kg at
    2.99/kg, the amount rounded half up as scales do), every third with a discount."""
    cent = Decimal("0.01")
    day = [sale(f"G{n:03d}") for n in range(10)]
    for n in range(32):
        base = grocery(f"W{n:03d}")
        weight = Decimal(155 + 75 * n) / 1000
        amount = (weight * Decimal("2.99")).quantize(cent, rounding="ROUND_HALF_UP")
        tax = amount - (amount / Decimal("1.07")).quantize(cent, rounding="ROUND_HALF_UP")
        apples = base.lines[0].model_copy(
            update={
                "quantity": weight,
                "amount": amount,
                "taxes": [base.lines[0].taxes[0].model_copy(update={"amount": tax})],
            }
        )
        pens = base.lines[1]
        if n % 3:
            pens = pens.model_copy(
                update={
                    "discounts": [],
                    "taxes": [pens.taxes[0].model_copy(update={"amount": Decimal("3.19")})],
                }
            )
        total = amount + pens.amount - sum((d.amount for d in pens.discounts), Decimal(0))
        tenders = [base.tenders[0].model_copy(update={"amount": total})]
        day.append(
            base.model_copy(update={"lines": [apples, pens], "total": total, "tenders": tenders})
        )
    return day


def refund(of: Transaction, number: str = "1002") -> Transaction:
    line = of.lines[0]
    return Transaction.model_validate(
        {
            "kind": "return",
            "key": make_key("return", STORE, "3", DAY, number),
            "store": STORE,
            "register": "3",
            "business_date": DAY,
            "occurred_at": WHEN,
            "source": _source(),
            "transaction_id": number,
            "currency": "EUR",
            "total": Decimal("-9.99"),
            "lines": [
                {
                    "number": "1",
                    "sku": line.sku,
                    "quantity": Decimal(-1),
                    "unit_price": Decimal("9.99"),
                    "amount": Decimal("-9.99"),
                    "link": {"transaction_id": of.transaction_id, "line": "1", "key": of.key},
                }
            ],
            "tenders": [{"type": "card", "method": "VISA", "amount": Decimal("-9.99")}],
            "links": [{"transaction_id": of.transaction_id, "key": of.key}],
        }
    )


def void(of: Transaction, number: str = "1003") -> Transaction:
    return Transaction.model_validate(
        {
            "kind": "void",
            "key": make_key("void", STORE, "3", DAY, number),
            "store": STORE,
            "register": "3",
            "business_date": DAY,
            "occurred_at": WHEN,
            "source": _source(),
            "transaction_id": number,
            "currency": "EUR",
            "total": -of.total,
            "links": [{"transaction_id": of.transaction_id, "key": of.key, "reason": "post-void"}],
        }
    )


def us_sale(number: str = "1201") -> Transaction:
    """A sale as a US grocery till writes it: sales tax added on the receipt only, a
    loyalty reward on the receipt, a coupon rung up as an item at a negative amount, and
    an item void (the line and its reversal, both voided). 28.84 at the till."""
    base = sale(number)
    pen = base.lines[0].model_copy(update={"taxes": []})
    red = base.lines[1].model_copy(update={"taxes": []})
    coupon = red.model_copy(
        update={
            "number": "3",
            "sku": "2000000000024",
            "description": "Coupon",
            "unit_price": Decimal("2.00"),
            "amount": Decimal("-2.00"),
        }
    )
    voided = red.model_copy(update={"number": "4", "voided": True})
    reversal = red.model_copy(
        update={
            "number": "5",
            "quantity": Decimal(-1),
            "amount": Decimal("-9.99"),
            "voided": True,
        }
    )
    return Transaction.model_validate(
        {
            **base.model_dump(),
            "lines": [x.model_dump() for x in (pen, red, coupon, voided, reversal)],
            "discounts": [{"code": "1465", "description": "PercentOff", "amount": Decimal("1.15")}],
            "taxes": [
                {
                    "code": "1",
                    "rate": Decimal("10.104"),
                    "taxable": Decimal("20.00"),
                    "amount": Decimal("2.02"),
                    "included": False,
                }
            ],
            "total": Decimal("28.84"),
            "tenders": [{**base.tenders[0].model_dump(), "amount": Decimal("28.84")}],
        }
    )


def cancel(number: str = "1004") -> Transaction:
    """A basket rung up and abandoned before tender: its lines and total, no tender."""
    basket = sale(number)
    return basket.model_copy(
        update={
            "kind": "cancel",
            "key": make_key("cancel", STORE, "3", DAY, number),
            "tenders": [],
        }
    )


def movement(
    quantity: int = -3, reference: str = "move-1", sku: str = "4006381333931"
) -> Inventory:
    """A stock movement (a delta, as a receipt or a write-off is sent)."""
    level = inventory(sku, quantity, reference)
    return level.model_copy(update={"mode": "delta", "reason": "adjust"})


def inventory(
    sku: str = "4006381333931", quantity: int = 17, reference: str = "count-1"
) -> Inventory:
    return Inventory.model_validate(
        {
            "kind": "inventory",
            "key": inventory_key(STORE, "MAIN", sku, reference),
            "store": STORE,
            "business_date": DAY,
            "occurred_at": WHEN,
            "source": {"file": "stock.csv", "position": "line 2"},
            "location": "MAIN",
            "sku": sku,
            "quantity": Decimal(quantity),
            "reference": reference,
        }
    )


_ids = iter(range(1, 1_000_000))


def routed(
    record: Transaction | Inventory,
    *,
    attempts: int = 0,
    original_ref: str | None = None,
    record_id: int | None = None,
) -> Routed:
    return Routed(
        id=record_id if record_id is not None else next(_ids),
        key=record.key,
        correlation_id=f"corr-{record.key}",
        record=record,
        route=ROUTE,
        skus=SKUS,
        payments=PAYMENTS,
        tax_codes=TAX_CODES,
        attempts=attempts,
        original_ref=original_ref,
    )
