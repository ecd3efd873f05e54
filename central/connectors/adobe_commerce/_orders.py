"""What a POS transaction looks like as an Adobe Commerce order saved through the order
repository: the POS's own totals and `base_*` figures to the cent, weighed items with
`is_qty_decimal`, and the tax and discounts the POS states on the receipt spread over the
items so Magento's item sums (which its invoices and credit memos add up) come to them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from contract import Transaction, TransactionLine, currency_exponent, key_digest

from .._base import Routed, Unfit, spread

__all__ = ["increment_id", "mark_of", "order_entity"]


def increment_id(key: str) -> str:
    """Magento's increment_id (at most 32 characters) of a POS transaction."""
    return "P" + key_digest(key, 31)


def mark_of(key: str) -> str:
    """The mark a record leaves in the comments of what it wrote (its credit memo)."""
    return f"tillbridge:{key_digest(key, 24)}"


def order_entity(routed: Routed, record: Transaction, guest_email: str) -> dict[str, Any]:
    """The POS transaction as the body of `POST /V1/orders` (see the module docstring)."""
    route = routed.route
    country = route.get("country", "")
    if not country:
        raise Unfit(
            f"store {record.store} has no country: set country in "
            f'[central.stores."{record.store}"] (the order\'s billing address needs one)'
        )
    rows: list[tuple[TransactionLine, Decimal, Decimal, Decimal, Decimal]] = []
    credits = credit_tax = Decimal(0)
    for line in record.lines:
        if line.voided or not line.sku:
            continue
        if line.amount < 0 < line.quantity:
            # An item at a negative amount in a sale (a coupon, a returned deposit):
            # a reduction of the receipt, so a discount over the other items.
            credits -= line.amount - sum((d.amount for d in line.discounts), Decimal(0))
            credit_tax += sum((t.amount for t in line.taxes), Decimal(0))
            continue
        qty = abs(line.quantity)
        if not qty:
            raise Unfit(f"line {line.number}: quantity 0")
        tax = abs(sum((t.amount for t in line.taxes), Decimal(0)))
        discount = abs(sum((d.amount for d in line.discounts), Decimal(0)))
        gross = abs(line.amount)
        included = any(t.included for t in line.taxes)
        rows.append((line, qty, gross - tax if included else gross, tax, discount))
    line_tax = sum((r[3] for r in rows), Decimal(0))
    total = abs(record.total)
    tax_total = (
        abs(sum((t.amount for t in record.taxes), Decimal(0)))
        if record.taxes
        else line_tax + credit_tax
    )
    receipt_discount = abs(sum((d.amount for d in record.discounts), Decimal(0))) + credits
    # Tax and discounts the POS states on the receipt, not on its lines, are spread
    # over the items in proportion to their rows, to the cent: Magento's invoices and
    # credit memos add up the items, and must come to the order's totals.
    exponent = currency_exponent(record.currency)
    weights = [r[2] for r in rows]
    tax_shares = spread(tax_total - line_tax, weights, exponent)
    discount_shares = spread(receipt_discount, weights, exponent)
    items = []
    discounts = quantity = Decimal(0)
    for (line, qty, row, tax, discount), more_tax, more_discount in zip(
        rows, tax_shares, discount_shares, strict=True
    ):
        tax += more_tax
        discount += more_discount
        discounts += discount
        quantity += qty
        figures = {
            "price": _unit(row, qty),
            "original_price": _unit(row, qty),
            "price_incl_tax": _unit(row + tax, qty),
            "row_total": row,
            "row_total_incl_tax": row + tax,
            "tax_amount": tax,
            "discount_amount": discount,
        }
        item: dict[str, Any] = {
            "sku": routed.skus.get(line.sku, line.sku),
            "name": line.description or line.sku,
            "qty_ordered": qty,
            "product_type": "simple",
            "tax_percent": sum((t.rate or Decimal(0) for t in line.taxes), Decimal(0)),
            **figures,
            **{f"base_{k}": v for k, v in figures.items()},
        }
        if qty != qty.to_integral_value():
            # Invoices and credit memos cast the quantity of an item without this
            # flag to a whole number.
            item["is_qty_decimal"] = 1
        items.append(item)
    discounts += receipt_discount - sum(discount_shares, Decimal(0))
    tenders = [
        {
            "method": routed.payments.get(t.type.value, t.type.value),
            "amount": str(t.amount),
            "pos_method": t.method,
        }
        for t in record.tenders
    ]
    first = tenders[0]["method"] if tenders else "checkmo"
    address = {
        "firstname": "POS",
        "lastname": f"Store {record.store}",
        "street": [route.get("street", f"Store {record.store}")],
        "city": route.get("city", "-"),
        "postcode": route.get("postcode", "-"),
        "country_id": country,
        "telephone": "-",
        "email": guest_email,
        "address_type": "billing",
    }
    totals = {
        "grand_total": total,
        # Magento's identity grand = subtotal + tax - discount, from the POS's own
        # figures (the items' rows add up to it when the lines carry their taxes).
        "subtotal": total - tax_total + discounts,
        "subtotal_incl_tax": total + discounts,
        "tax_amount": tax_total,
        "discount_amount": -discounts,
    }
    # Magento's Order::STATE_CANCELED is spelt "canceled".
    state = "canceled" if record.kind == "cancel" else "processing"
    return {
        "entity": {
            "increment_id": increment_id(routed.key),
            "store_id": int(route["store_id"]),
            "state": state,
            "status": state,
            "base_currency_code": record.currency,
            "order_currency_code": record.currency,
            "base_to_order_rate": 1,
            "base_to_global_rate": 1,
            "customer_is_guest": 1,
            "customer_email": guest_email,
            **totals,
            **{f"base_{k}": v for k, v in totals.items()},
            "total_qty_ordered": quantity,
            "created_at": record.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
            "items": items,
            "billing_address": address,
            "payment": {
                "method": first,
                "additional_information": [
                    f"POS {record.store}/{record.register or '-'}/{record.transaction_id}",
                    *(f"{t['method']} {t['amount']} ({t['pos_method']})" for t in tenders),
                ],
            },
            "status_histories": [
                {
                    "comment": f"{mark_of(routed.key)} POS key {routed.key} "
                    f"correlation {routed.correlation_id}",
                    "is_customer_notified": 0,
                }
            ],
        }
    }


def _unit(row: Decimal, qty: Decimal) -> Decimal:
    """A unit price to Magento's four places."""
    return (row / qty).quantize(Decimal("0.0001"))
