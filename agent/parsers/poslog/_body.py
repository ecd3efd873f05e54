"""The inside of a POSLog `RetailTransaction`: lines, taxes, discounts, links, tenders.

Values are gathered as plain dicts for the `Transaction` model to validate in one go.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from xml.etree.ElementTree import Element

from contract import LineType, currency_exponent

from .._xml import local
from ._read import TRUE, Reader, attr, flag, link, own_text, text
from ._tender import read_tender

__all__ = ["Body"]

_INCLUDED_FLAGS = frozenset({"TaxIncludedInPriceFlag", "TaxIncludedFlag", "IncludedInPriceFlag"})
# Says whether the taxable amount holds the tax, not the price: only its "true" tells
# anything about the price (a taxable amount with the tax in it is a gross price).
_TAXABLE_FLAG = "TaxIncludedInTaxableAmountFlag"
_EXTRA_LINES = {
    "Rounding": LineType.ROUNDING,
    "RoundingAdjustment": LineType.ROUNDING,
    "CashRounding": LineType.ROUNDING,
    "Fee": LineType.FEE,
    "ServiceCharge": LineType.SERVICE_CHARGE,
    "Deposit": LineType.DEPOSIT,
}
_ZERO = Decimal(0)
_ONE = Decimal(1)
# The minor unit of each currency met, as a Decimal exponent (0.01 for EUR).
_QUANTA: dict[str, Decimal] = {}
# Item lines by element name, as the line kind they are read as. Oracle Xstore writes an
# order taken at the till for delivery or pickup as `CustomerOrderForDelivery` /
# `CustomerOrderForPickup` lines, priced and taxed like a `Sale`.
_ITEM_PARTS = {
    "Sale": "Sale",
    "Return": "Return",
    "CustomerOrderForDelivery": "Sale",
    "CustomerOrderForPickup": "Sale",
}
_ORDERS = frozenset({"CustomerOrderForDelivery", "CustomerOrderForPickup"})
# What a customer-order line's `OrderStatus` says the store did with an order placed
# before (Oracle Xstore's xcenter POSLog schema: `CustomerOrderForPickup` and
# `CustomerOrderForDelivery` carry an `OrderStatus` attribute and the order in
# `AccountNumber`). A line in any other status (`New`, `Open`) is an order taken at the
# till now: a sale line, as before.
_FULFILLED = {
    "pickedup": "picked_up",
    "picked_up": "picked_up",
    "complete": "picked_up",
    "completed": "picked_up",
    "fulfilled": "picked_up",
    "partiallypickedup": "partially_picked_up",
    "partially_picked_up": "partially_picked_up",
    "partial": "partially_picked_up",
    "shipped": "shipped",
    "cancelled": "cancelled",
    "canceled": "cancelled",
}
_PARTS = frozenset(
    {"Tender", "TenderChange", "Tax", "Discount", "LoyaltyReward", *_ITEM_PARTS, *_EXTRA_LINES}
)


class Body:
    """Reads a RetailTransaction's line items into contract-shaped dicts."""

    def __init__(self, reader: Reader, where: str) -> None:
        self.reader = reader
        self.where = where
        self.lines: list[dict[str, Any]] = []
        self.tenders: list[dict[str, Any]] = []
        self.taxes: list[dict[str, Any]] = []
        self.discounts: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []
        # Lines of online orders the store handed over, shipped or cancelled: not sold
        # now (the platform holds the order and its payment), told back as fulfilment.
        self.fulfilled: list[dict[str, Any]] = []
        self.returns = 0
        self.sales = 0
        self.declined = 0  # tenders the host refused: kept out of the payments, counted
        self.currency = reader.context.currency  # the transaction's, once its header is read
        self._price_flags: list[bool] = []  # TaxIncludedInPriceFlag of each item line
        self._origins: dict[int, tuple[Element, Element]] = {}  # item line -> LineItem, Sale

    def read(self, retail: Element) -> None:
        for found in retail.findall("TransactionLink"):
            parsed = link(found, self.reader, self.where + "/TransactionLink")
            if parsed is not None:
                self.links.append(parsed)
        for index, item in enumerate(retail.findall("LineItem"), start=1):
            self._line_item(item, index, f"{self.where}/LineItem[{index}]")
        self._compensate()
        flags = self._price_flags
        if self.taxes and flags and (all(flags) or not any(flags)):
            # A transaction's tax summary that says nothing itself follows its item lines.
            for tax in self.taxes:
                if tax["included"] is None:
                    tax["included"] = flags[0]

    def _line_item(self, item: Element, index: int, where: str) -> None:
        voided = flag(item, "VoidFlag")
        number = text(item, "SequenceNumber") or str(index)
        own_link = item.find("TransactionLink")
        for part in item:
            name = part.tag
            if name not in _PARTS:
                continue
            kind = _ITEM_PARTS.get(name)
            if kind is not None:
                if name in _ORDERS and (attr(part, "ItemType") or "").lower() == "deposit":
                    # Xstore closes a customer order with a `Deposit` line that restates
                    # the order's total (tax 0); its priced lines already carry it.
                    continue
                if name in _ORDERS and self._fulfilled(part, voided, where + "/" + name):
                    continue
                line = self._item(
                    part, kind, number, voided or _void_attr(part), where + "/" + name
                )
                found = part.find("TransactionLink")
                found = own_link if found is None else found
                self._link_line(line, found, kind, where + "/" + name)
                self._origins[id(line)] = (item, part)
                self.lines.append(line)
            elif voided or _void_attr(part):
                continue
            elif name == "Tender":
                self._tender(part, number, where + "/Tender")
            elif name == "TenderChange":
                self._change(part, where + "/TenderChange")
            elif name == "LoyaltyReward":
                self._reward(part, where + "/LoyaltyReward")
            elif name == "Tax":
                if part.find("Amount") is None:
                    # A transaction's tax line without an amount only restates a rate
                    # (Oracle Xstore repeats each authority so after the item taxes);
                    # the item lines hold the tax. An exempt item says so on its line.
                    continue
                self.taxes.append(self._tax(part, where + "/Tax", None))
            elif name == "Discount":
                self._discount(part, where + "/Discount")
            elif name in _EXTRA_LINES:
                self._extra(part, name, number, where + "/" + name)

    def _fulfilled(self, part: Element, voided: bool, where: str) -> bool:
        """Note a line of an earlier order the store now handed over, shipped or
        cancelled; False when the line is an order taken now (a sale line)."""
        status = (attr(part, "OrderStatus") or "").replace(" ", "").replace("-", "_").lower()
        said = _FULFILLED.get(status)
        if said is None:
            return False
        if voided:
            return True  # voided on the till: nothing was handed over
        order = text(part, "AccountNumber") or text(part, "OrderID") or text(part, "OrderNumber")
        if not order:
            raise self.reader.fail(
                f"an order line in status {attr(part, 'OrderStatus')!r} names no order "
                "(AccountNumber or OrderID)",
                where,
            )
        quantity = self.reader.money(text(part, "Quantity"), where + "/Quantity")
        count = abs(quantity) if quantity is not None else _ONE
        self.fulfilled.append(
            {
                "order_number": order,
                "status": said,
                "line_id": text(part, "OrderLineID") or text(part, "OrderLineId"),
                "sku": text(part, "ItemID") or "",
                "handed_over": _ZERO if said == "cancelled" else count,
                "cancelled": count if said == "cancelled" else _ZERO,
            }
        )
        return True

    def _item(
        self, el: Element, name: str, number: str, voided: bool, where: str
    ) -> dict[str, Any]:
        money = self.reader.money
        quantity_text = text(el, "Quantity")
        quantity = money(quantity_text, where + "/Quantity")
        unit_text = (
            text(el, "ActualSalesUnitPrice")
            or text(el, "RegularSalesUnitPrice")
            or text(el, "UnitListPrice")
        )
        unit = money(unit_text, where + "/ActualSalesUnitPrice")
        amount = money(text(el, "ExtendedAmount"), where + "/ExtendedAmount")
        if quantity is None:
            quantity = Decimal(1)
        discounts = []
        modifiers = el.findall("RetailPriceModifier")
        regular = unit
        if modifiers:  # the price before them matters only where a modifier is
            regular_text = text(el, "RegularSalesUnitPrice") or text(el, "UnitListPrice")
            if regular_text:
                regular = money(regular_text, where + "/RegularSalesUnitPrice")
        for mod_index, mod in enumerate(modifiers, start=1):
            mod_where = f"{where}/RetailPriceModifier[{mod_index}]"
            discount = self._modifier(mod, mod_where, regular, quantity)
            if discount is not None:
                discounts.append(discount)
        if amount is None:
            net = money(text(el, "ExtendedDiscountAmount"), where + "/ExtendedDiscountAmount")
            if net is not None:
                amount = net + sum((d["amount"] for d in discounts), Decimal(0))
            elif unit is not None:
                amount = self._round(unit * quantity)  # a unit price may be finer than cents
            else:
                raise self.reader.fail("a line without ExtendedAmount or a unit price", where)
        elif discounts and regular is not None:
            amount = self._before_modifiers(amount, regular, quantity, discounts)
        included = attr(el, "TaxIncludedInPriceFlag")
        if included is not None:
            self._price_flags.append(included.strip().lower() in TRUE)
        taxes = [
            self._tax(t, f"{where}/Tax[{i}]", included)
            for i, t in enumerate(el.findall("Tax"), start=1)
            if not _void_attr(t)
        ]
        negative = quantity_text is not None and quantity_text.startswith("-")
        if name == "Sale" and negative and amount > _ZERO:
            # A return rung up as a sale of a negative quantity: the line reduces the
            # transaction, whatever sign the POS gave its amount.
            name = "Return"
        if name == "Return":
            # A returned item reduces the transaction, however the POS signs the line.
            quantity, amount = -abs(quantity), -abs(amount)
            for discount in discounts:
                discount["amount"] = -discount["amount"]
            for tax in taxes:
                tax["amount"] = -abs(tax["amount"])
                if tax["taxable"] is not None:
                    tax["taxable"] = -abs(tax["taxable"])
            if not voided:
                self.returns += 1
        elif not voided:
            self.sales += 1
        sku = text(el, "ItemID")
        if sku is None:
            identity = el.find("POSIdentity")
            sku = text(identity, "POSItemID") or ""
        return {
            "number": number,
            "sku": sku,
            "description": text(el, "Description") or "",
            "quantity": quantity,
            "unit_price": unit,
            "amount": amount,
            "discounts": discounts,
            "taxes": taxes,
            "voided": voided,
        }

    def _modifier(
        self, mod: Element, where: str, regular: Decimal | None, quantity: Decimal
    ) -> dict[str, Any] | None:
        """A price modifier as the amount it takes off the line. `Subtract` (or no action)
        takes its amount off; `Add` puts it on; `Replace` makes its amount the new unit
        price; a `Percent` takes that share of the line; `PreviousPrice` with `NewPrice`
        is the difference of the two, per unit."""
        money = self.reader.money
        amount_el = mod.find("Amount")
        value = money(text(mod, "Amount"), where + "/Amount")
        action = ""
        if amount_el is not None:
            action = (attr(amount_el, "Action") or attr(mod, "Action") or "").lower()
        new_price: Decimal | None = None
        if action == "replace" and value is not None:
            new_price, value = value, None
        if value is None:
            # Only a modifier without an amount to take off needs its prices or percent.
            units = abs(quantity)
            previous = money(text(mod, "PreviousPrice"), where + "/PreviousPrice")
            if new_price is None:
                new_price = money(text(mod, "NewPrice"), where + "/NewPrice")
            before = previous if previous is not None else regular
            percent = money(text(mod, "Percent"), where + "/Percent")
            if new_price is not None and before is not None:
                value = self._round((before - new_price) * units)
            elif percent is not None and before is not None:
                value = self._round(before * units * percent / 100)
            else:
                return None
            # Signed: a new price above the one before (Xstore's prompted price on a
            # delivery fee listed at 0.00) raises the line instead of lowering it.
            action = "price"
        code = text(mod, "PromotionID") or text(mod, "DiscountID") or text(mod, "ReasonCode")
        off = value if action == "price" else -abs(value) if action == "add" else abs(value)
        return {
            "code": code or "",
            "description": text(mod, "Description") or "",
            "amount": off,
            "reason": text(mod, "ReasonCode") or "",
        }

    def _before_modifiers(
        self, amount: Decimal, regular: Decimal, quantity: Decimal, discounts: list[dict[str, Any]]
    ) -> Decimal:
        """The line before its modifiers. Some POS write `ExtendedAmount` after them: the
        regular price times the quantity, less the modifiers, gives it away; taking the
        modifiers off again would count them twice."""
        gross = self._round(regular * quantity)
        off = sum((d["amount"] for d in discounts), _ZERO)
        if amount != gross and abs(amount) == abs(gross) - off:
            return gross
        return amount

    def _round(self, value: Decimal) -> Decimal:
        """An amount to the currency's minor unit (half up, as tills round)."""
        quantum = _QUANTA.get(self.currency)
        if quantum is None:
            quantum = _QUANTA[self.currency] = _ONE.scaleb(-currency_exponent(self.currency))
        return value.quantize(quantum, ROUND_HALF_UP)

    def _link_line(
        self, line: dict[str, Any], found: Element | None, name: str, where: str
    ) -> None:
        parsed = link(found, self.reader, where + "/TransactionLink") if found is not None else None
        if parsed is None:
            if name != "Return" or len(self.links) != 1:
                return
            # A return linked once, for the whole transaction: each returned line refers to it.
            parsed = {**self.links[0], "line": None}
        else:
            self.links.append({k: v for k, v in parsed.items() if k != "line"})
        line["link"] = {k: v for k, v in parsed.items() if k != "reason"}

    def _tax(self, el: Element, where: str, line_flag: str | None) -> dict[str, Any]:
        money = self.reader.money
        taxable_el = el.find("TaxableAmount")
        included: bool | None = None
        if line_flag is not None:
            included = line_flag.strip().lower() in TRUE
        for candidate in (el, taxable_el):
            if candidate is None or not candidate.attrib:
                continue
            for key, value in candidate.attrib.items():
                name = local(key) if key[0] == "{" else key
                if name in _INCLUDED_FLAGS:
                    included = value.strip().lower() in TRUE
                elif name == _TAXABLE_FLAG and value.strip().lower() in TRUE:
                    included = True
        amount = money(text(el, "Amount"), where + "/Amount")
        if amount is None:
            amount = _ZERO  # tax exempt: the line is taxable at nothing
        rate = money(text(el, "Percent"), where + "/Percent")
        taxable = money(own_text(taxable_el), where + "/TaxableAmount")
        # Oracle Xstore writes the rate as a fraction (0.0475000 for 4.75 %); the amount
        # it gives says which reading is meant. The record holds percent.
        if rate is not None and taxable and amount and _ZERO < rate < _ONE:
            closer = abs(taxable * rate - amount) < abs(taxable * rate / 100 - amount)
            rate = rate * 100 if closer else rate
        code = (
            text(el, "TaxGroupID")
            or text(el, "TaxAuthority")
            or text(el, "TaxRuleID")
            or attr(el, "TaxID")
            or attr(el, "TaxType")
            or "tax"
        )
        return {
            "code": code,
            "rate": rate,
            "taxable": taxable,
            "amount": amount,
            "included": included,
        }

    def _discount(self, el: Element, where: str) -> None:
        found = el.find("RetailPriceModifier")
        holder = el
        if found is not None and el.find("Amount") is None:
            holder, where = found, where + "/RetailPriceModifier"
        base: Decimal | None = None
        if holder.find("Amount") is None:
            # A percent off the transaction is a share of the lines rung up before it.
            base = sum(
                (
                    ln["amount"] - sum((d["amount"] for d in ln.get("discounts", ())), _ZERO)
                    for ln in self.lines
                    if not ln["voided"]
                ),
                _ZERO,
            )
        discount = self._modifier(holder, where, base, _ONE)
        if discount is not None:
            self.discounts.append(discount)

    def _tender(self, el: Element, number: str, where: str) -> None:
        """A tender line: a payment, a change line, a declined attempt (counted, not a
        payment), or only a cash rounding (a rounding line, not a payment)."""
        rounding_text = text(el, "Rounding")
        rounding = None
        if rounding_text is not None:
            rounding = self.reader.money(rounding_text, where + "/Rounding")
        if rounding:
            self.lines.append(
                {
                    "number": number,
                    "type": LineType.ROUNDING,
                    "description": "cash rounding",
                    "amount": rounding,
                    "voided": False,
                }
            )
        if rounding_text is not None and el.find("Amount") is None:
            return
        if not read_tender(el, self.reader, where, self.tenders):
            self.declined += 1

    def _change(self, el: Element, where: str) -> None:
        """Change as a line item of its own (`TenderChange`): the tender before it gave it."""
        inner = el.find("TenderChange")
        holder = inner if inner is not None else el
        amount = self.reader.money(text(holder, "Amount"), where + "/Amount")
        if not amount:
            return
        if self.tenders:
            last = self.tenders[-1]
            last["change"] = (last["change"] or _ZERO) + abs(amount)
            return
        read_tender(holder, self.reader, where, self.tenders)
        self.tenders[-1]["amount"] = -abs(amount)

    def _reward(self, el: Element, where: str) -> None:
        """A loyalty reward in a vendor extension (NCR ACS): a monetary one lowers the
        total like a transaction discount. ACS writes some rewards twice, once in detail
        and once as a summary; the summary-only copy is not counted again."""
        category = (text(el, "RewardCategory") or "").lower()
        if category != "monetary":
            return  # points, messages and custom offers move no money
        if flag(el, "summarizedActivity") and not flag(el, "detailedData"):
            return
        value = self.reader.money(
            text(el, "ExtendedRewardAmount") or text(el, "Amount"), where + "/ExtendedRewardAmount"
        )
        if not value:
            return
        self.discounts.append(
            {
                "code": text(el, "PromotionID") or "",
                "description": text(el, "RewardType") or "",
                "amount": -value,  # written as a negative amount on the receipt
                "reason": "loyalty",
            }
        )

    def _extra(self, el: Element, name: str, number: str, where: str) -> None:
        value = text(el, "Amount") or text(el, "ExtendedAmount") or own_text(el)
        amount = self.reader.money(value, where + "/Amount")
        if amount is None:
            return
        direction = (attr(el, "RoundingDirection") or attr(el, "Direction") or "").lower()
        if direction == "down":
            amount = -abs(amount)
        self.lines.append(
            {
                "number": number,
                "type": _EXTRA_LINES[name],
                "description": text(el, "Description") or "",
                "amount": amount,
                "voided": False,
            }
        )

    def _compensate(self) -> None:
        """A void entry cancels the line it refers to: flag that line voided too.

        The entry names its line (`ItemLink`, `CreateRefNumber`), or it is a voided line
        of the opposite amount and the same item after the line it cancels.
        """
        entries = [ln for ln in self.lines if ln["voided"] and id(ln) in self._origins]
        if not entries:
            return
        refs: dict[str, dict[str, Any]] = {}  # line number or create number -> line
        for line in self.lines:
            if id(line) in self._origins:
                refs.setdefault(line["number"], line)
                created = text(self._origins[id(line)][0], "CreateNumber")
                if created:
                    refs.setdefault(created, line)
        for line in entries:
            item, part = self._origins[id(line)]
            points_at = (
                text(item, "CreateRefNumber")
                or text(item, "VoidedLineItemSequenceNumber")
                or text(part, "ItemLink")
            )
            target = refs.get(points_at) if points_at else None
            if (
                target is not None
                and target is not line
                and not target["voided"]
                and target.get("sku") == line.get("sku")
                and abs(target["amount"]) == abs(line["amount"])
            ):
                target["voided"] = True
                continue
            if line["amount"] == 0:
                continue
            position = next(i for i, ln in enumerate(self.lines) if ln is line)
            for back in range(position - 1, -1, -1):
                earlier = self.lines[back]
                if (
                    not earlier["voided"]
                    and not earlier.get("type")
                    and earlier.get("sku") == line.get("sku")
                    and earlier["amount"] == -line["amount"]
                ):
                    earlier["voided"] = True
                    break


def _void_attr(element: Element) -> bool:
    value = attr(element, "VoidFlag")
    return value is not None and value.strip().lower() in TRUE
