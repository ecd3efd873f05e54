"""What a POS transaction's lines look like as Salesforce OrderItems: a quantity and a
unit price whose product Salesforce itself rounds to the cent, coming to what the POS
charged for the line after its own discounts and its share of the receipt's."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

from contract import Transaction, TransactionLine, currency_exponent

from .._base import spread

__all__ = ["priced_lines", "tax_outside"]


def priced_lines(
    record: Transaction,
) -> Iterator[tuple[TransactionLine, tuple[Decimal, Decimal, str]]]:
    """Each line sent (not voided, with a SKU) with its quantity, unit price and note.

    Discounts on the receipt (a loyalty reward) go into the items' net prices, in
    proportion to their amounts and to the cent: an Order has no discount of its own, and
    its TotalAmount is the sum of its items."""
    lines = [line for line in record.lines if not line.voided and line.sku]
    shares = spread(
        sum((d.amount for d in record.discounts), Decimal(0)),
        [_weight(line, record.total) for line in lines],
        currency_exponent(record.currency),
    )
    named = ", ".join(
        f"{d.code or d.description or 'discount'} (receipt)" for d in record.discounts
    )
    for line, share in zip(lines, shares, strict=True):
        yield line, _priced(line, share, named if share else "")


CENT = Decimal("0.01")


def tax_outside(record: Transaction) -> Decimal:
    """The tax the POS charged on top of its prices (none where they include it), signed
    as the transaction's total: the receipt's taxes, else its lines'. An Order's items
    add up to its TotalAmount without it."""
    taxes = record.taxes or [t for line in record.lines if not line.voided for t in line.taxes]
    amount = abs(sum((t.amount for t in taxes if not t.included), Decimal(0)))
    return -amount if record.total < 0 else amount


def _priced(
    line: TransactionLine, receipt: Decimal = Decimal(0), receipt_note: str = ""
) -> tuple[Decimal, Decimal, str]:
    """Quantity, unit price and a note for one line, so that Salesforce's own
    `Quantity × UnitPrice` (rounded to the cent) is the POS line's amount after its
    discounts and its share `receipt` of the receipt's: the POS quantity and unit price
    where they give it (weighed goods keep their decimal quantity), else the net unit
    price where it divides to the cent, else one unit at the line's net amount with the
    POS quantity and price in the note."""
    net = line.amount - sum((d.amount for d in line.discounts), Decimal(0)) - receipt
    quantity = line.quantity
    sign = -1 if quantity < 0 else 1
    named = [f"{d.code or d.description or 'discount'} -{d.amount}" for d in line.discounts]
    if receipt:
        named.append(f"{receipt_note} -{receipt}")
    discounts = ", ".join(named)
    unit = line.unit_price
    # The unit price carries the sign the quantity does not: an item at a negative amount
    # in a sale (a coupon, a returned deposit) is one unit at a negative price.
    if quantity and unit is not None and (quantity * unit).quantize(CENT, ROUND_HALF_UP) == net:
        return quantity, unit, ""
    if quantity and (net / quantity) == (net / quantity).quantize(CENT):
        return quantity, (net / quantity).quantize(CENT), discounts
    shown = f"{quantity} x {line.unit_price}" if line.unit_price is not None else str(quantity)
    return Decimal(sign), net * sign, "; ".join(filter(None, [f"POS {shown}", discounts]))


def _weight(line: TransactionLine, total: Decimal) -> Decimal:
    """A line's part in the receipt's discounts: its net amount, where it goes the way of
    the transaction (a coupon rung up in a sale takes none)."""
    net = line.amount - sum((d.amount for d in line.discounts), Decimal(0))
    return abs(net) if (net < 0) == (total < 0) else Decimal(0)
