"""What a POS transaction looks like as a commercetools OrderImportDraft: the POS's own
totals and taxes to the cent, weighed lines as one unit at their amount with the measure
in the line's custom fields, discounts as negative custom line items."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from contract import Tax, Transaction, TransactionLine, currency_exponent, key_digest

from .._base import Routed, Unfit

__all__ = ["OrderDrafts", "money", "order_number", "tax_added"]


def order_number(key: str) -> str:
    """The order number of a POS transaction: its key, or a digest of a long key."""
    return key if len(key) <= 100 else f"pos-{key_digest(key, 40)}"


def money(amount: Decimal, currency: str) -> dict[str, Any]:
    """A centPrecision Money; an amount finer than the currency's minor unit is refused."""
    exponent = currency_exponent(currency)
    cents = amount.scaleb(exponent)
    if cents != cents.to_integral_value():
        raise Unfit(f"{amount} {currency} has more than {exponent} decimals")
    return {"type": "centPrecision", "currencyCode": currency, "centAmount": int(cents)}


class OrderDrafts:
    """Builds the drafts; `locale` names lines, `line_item_type` keeps a line's measure."""

    def __init__(self, locale: str, line_item_type: str) -> None:
        self._locale = locale
        self._line_item_type = line_item_type

    def _country(self, record: Transaction, route: Mapping[str, str]) -> str:
        country = route.get("country", "")
        if not country:
            raise Unfit(
                f"store {record.store} has no country: set country in "
                f'[central.stores."{record.store}"] (commercetools tax rates need one)'
            )
        return country

    def _tax_rate(
        self, routed: Routed, record: Transaction, taxes: Sequence[Tax], base: Decimal
    ) -> dict[str, Any]:
        """The POS's taxes of one line as an external TaxRate (rates as fractions, several
        taxes as sub-rates), on the line's value `base`."""
        rates = [_rate(t, base) for t in taxes]
        rate: dict[str, Any] = {
            "name": "+".join(routed.tax_codes.get(t.code, t.code) for t in taxes),
            "amount": sum(rates, Decimal(0)),
            "includedInPrice": all(t.included for t in taxes),
            "country": self._country(record, routed.route),
        }
        if len(taxes) > 1:
            rate["subRates"] = [
                {"name": routed.tax_codes.get(t.code, t.code), "amount": r}
                for t, r in zip(taxes, rates, strict=True)
            ]
        return rate

    def _taxed(self, value: Decimal, taxes: Sequence[Tax], currency: str) -> dict[str, Any]:
        """A TaxedPrice as the POS computed it: tax included in `value` or added to it."""
        tax = sum((t.amount for t in taxes), Decimal(0))
        included = sum((t.amount for t in taxes if t.included), Decimal(0))
        net = value - included
        return {
            "totalNet": money(net, currency),
            "totalGross": money(net + tax, currency),
            "totalTax": money(tax, currency),
        }

    def _discount_line(
        self, slug: str, name: str, amount: Decimal, currency: str
    ) -> dict[str, Any]:
        return {
            "name": {self._locale: name},
            "slug": slug,
            "quantity": 1,
            "money": money(-amount, currency),
        }

    def _discounts(
        self,
        routed: Routed,
        record: Transaction,
        line: TransactionLine,
        position: int,
        item: dict[str, Any],
    ) -> list[dict[str, Any]]:
        """A line's discounts as negative custom line items. With one tax at a stated
        rate, the line's tax is split: the line is taxed on its full amount, each discount
        carries its negative share, and together they are the tax the POS computed — so
        commercetools' own totals, which it derives line by line, come to the POS's."""
        currency = record.currency
        found = [
            self._discount_line(
                f"pos-discount-{position}-{n}",
                d.description or d.code or "Discount",
                d.amount,
                currency,
            )
            for n, d in enumerate(line.discounts, start=1)
        ]
        taxes = line.taxes
        if not found or len(taxes) != 1 or taxes[0].rate is None:
            return found
        tax, rate = taxes[0], taxes[0].rate
        quantum = Decimal(1).scaleb(-currency_exponent(currency))
        factor: Decimal = rate / (100 + rate) if tax.included else rate / 100
        full = (line.amount * factor).quantize(quantum, ROUND_HALF_UP)
        item["taxRate"] = self._tax_rate(routed, record, taxes, line.amount)
        item["taxedPrice"] = _taxed_parts(line.amount, full, tax.included, currency)
        left = tax.amount - full
        for n, (discount, custom) in enumerate(zip(line.discounts, found, strict=True)):
            last = n == len(found) - 1
            share = left if last else (-discount.amount * factor).quantize(quantum, ROUND_HALF_UP)
            left -= share
            custom["taxRate"] = item["taxRate"]
            custom["taxedPrice"] = _taxed_parts(-discount.amount, share, tax.included, currency)
        return found

    def _line_item(
        self, routed: Routed, record: Transaction, line: TransactionLine
    ) -> dict[str, Any]:
        """One POS line. A whole quantity at a whole-cent unit price goes as it is; anything
        else (a weight, a length, a price that does not divide) goes as quantity 1 at the
        line's amount, with the measured quantity and unit price kept in the line's custom
        fields: commercetools line quantities are integers."""
        currency = record.currency
        quantity, amount = line.quantity, line.amount
        sign = -1 if quantity < 0 or (quantity == 0 and amount < 0) else 1
        exponent = currency_exponent(currency)
        per = abs(amount) / abs(quantity) if quantity else None
        native = (
            per is not None
            and quantity == quantity.to_integral_value()
            and per.scaleb(exponent) == per.scaleb(exponent).to_integral_value()
        )
        fields: dict[str, Any] = {}
        if native:
            assert per is not None
            item_quantity, price = int(quantity), per
        else:
            item_quantity, price = sign, abs(amount)
            fields["posQuantity"] = str(quantity)
            if line.unit_price is not None:
                fields["posUnitPrice"] = str(line.unit_price)
        discount = sum((d.amount for d in line.discounts), Decimal(0))
        if discount:
            fields["posDiscount"] = str(discount)
        item: dict[str, Any] = {
            "name": {self._locale: line.description or line.sku},
            "variant": {"sku": routed.skus.get(line.sku, line.sku)},
            "price": {"value": money(price, currency)},
            "quantity": item_quantity,
            "supplyChannel": {"typeId": "channel", "key": routed.route["supply_channel"]},
        }
        if routed.route.get("distribution_channel"):
            item["distributionChannel"] = {
                "typeId": "channel",
                "key": routed.route["distribution_channel"],
            }
        if line.taxes:
            value = amount - discount
            item["taxRate"] = self._tax_rate(routed, record, line.taxes, value)
            item["taxedPrice"] = self._taxed(value, line.taxes, currency)
        if fields:
            if not self._line_item_type:
                raise Unfit(
                    f"line {line.number}: quantity {quantity} needs line_item_type, the custom "
                    "type that keeps the measured quantity on the line"
                )
            item["custom"] = {
                "type": {"typeId": "type", "key": self._line_item_type},
                "fields": fields,
            }
        return item

    def order(self, routed: Routed, record: Transaction) -> dict[str, Any]:
        """The POS transaction (a sale, an unlinked return, a cancelled basket) as an
        OrderImportDraft, to the cent: `totalPrice` and `taxedPrice` are the POS's own
        figures, each line carries the tax the POS computed (`taxedPrice` on the line),
        and discounts are negative custom line items."""
        route = routed.route
        currency = record.currency
        lines: list[dict[str, Any]] = []
        custom: list[dict[str, Any]] = []
        for index, line in enumerate(record.lines):
            if line.voided:
                continue
            # A fee, deposit or service charge has no product behind it; an item at a
            # negative amount in a sale (a coupon or a returned deposit rung up as an item)
            # is a credit on the receipt: both go as custom line items at their amount.
            if not line.sku or (line.amount < 0 < line.quantity):
                value = line.amount - sum((d.amount for d in line.discounts), Decimal(0))
                fee: dict[str, Any] = {
                    "name": {self._locale: line.description or line.type.value},
                    "slug": f"pos-line-{index + 1}",
                    "quantity": 1,
                    "money": money(value, currency),
                }
                if line.taxes:
                    fee["taxRate"] = self._tax_rate(routed, record, line.taxes, value)
                    fee["taxedPrice"] = self._taxed(value, line.taxes, currency)
                custom.append(fee)
                continue
            item = self._line_item(routed, record, line)
            lines.append(item)
            custom += self._discounts(routed, record, line, index + 1, item)
        for number, discount in enumerate(record.discounts, start=1):
            name = discount.description or discount.code or "Discount"
            custom.append(
                self._discount_line(f"pos-discount-{number}", name, discount.amount, currency)
            )
        taxes = _tax_summary(record)
        excluded = sum((t.amount for t in taxes if not t.included), Decimal(0))
        draft: dict[str, Any] = {
            "orderNumber": order_number(routed.key),
            # Without tax in the price, commercetools' totalPrice is the net; the gross
            # (the POS total) is in taxedPrice.
            "totalPrice": money(record.total - excluded, currency),
            "lineItems": lines,
            "orderState": "Complete",
            "paymentState": "Paid",
            "inventoryMode": "None",
            "store": {"typeId": "store", "key": route["store"]},
            "completedAt": record.occurred_at.isoformat(),
        }
        if record.kind == "cancel":
            # A basket abandoned before tender: on record as a cancelled order that was
            # never paid (docs.commercetools.com/api/projects/orders#orderstate).
            draft["orderState"] = "Cancelled"
            del draft["paymentState"], draft["completedAt"]
        if custom:
            draft["customLineItems"] = custom
        if taxes:
            tax = sum((t.amount for t in taxes), Decimal(0))
            draft["taxedPrice"] = {
                "totalNet": money(record.total - tax, currency),
                "totalGross": money(record.total, currency),
                "totalTax": money(tax, currency),
                "taxPortions": [
                    {
                        "name": routed.tax_codes.get(t.code, t.code),
                        # Without a stated rate or base, the one the total implies.
                        "rate": _rate(t, t.taxable if t.taxable is not None else record.total),
                        "amount": money(t.amount, currency),
                    }
                    for t in taxes
                ],
            }
            draft["country"] = self._country(record, route)
        elif route.get("country"):
            draft["country"] = route["country"]
        return draft


def _taxed_parts(value: Decimal, tax: Decimal, included: bool, currency: str) -> dict[str, Any]:
    net = value - tax if included else value
    return {
        "totalNet": money(net, currency),
        "totalGross": money(net + tax, currency),
        "totalTax": money(tax, currency),
    }


def _rate(tax: Tax, base: Decimal | None) -> Decimal:
    """A tax rate as the fraction commercetools takes (19 % → 0.19); without a stated
    rate, the one the POS amounts imply, to four places."""
    if tax.rate is not None:
        return tax.rate / 100
    if base is None or not base:
        raise Unfit(f"tax {tax.code} has neither a rate nor a taxable amount")
    net = base - tax.amount if tax.included else base
    return (tax.amount / net).quantize(Decimal("0.0001")) if net else Decimal(0)


def tax_added(record: Transaction) -> bool:
    """Whether any of the transaction's tax was added to its prices (not included)."""
    return any(t.amount and not t.included for t in _tax_summary(record))


def _tax_summary(record: Transaction) -> list[Tax]:
    """The transaction's taxes: its own summary, else its lines' taxes added up by code,
    rate and inclusion."""
    if record.taxes:
        return list(record.taxes)
    sums: dict[tuple[str, Decimal | None, bool], tuple[Decimal, Decimal]] = {}
    for line in record.lines:
        if line.voided:
            continue
        value = line.amount - sum((d.amount for d in line.discounts), Decimal(0))
        for tax in line.taxes:
            key = (tax.code, tax.rate, tax.included)
            amount, taxable = sums.get(key, (Decimal(0), Decimal(0)))
            sums[key] = (amount + tax.amount, taxable + (tax.taxable or value))
    return [
        Tax(code=code, rate=rate, included=included, amount=amount, taxable=taxable)
        for (code, rate, included), (amount, taxable) in sums.items()
    ]
