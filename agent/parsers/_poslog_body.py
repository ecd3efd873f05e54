"""The inside of a POSLog `RetailTransaction`: lines, taxes, discounts, links, tenders.

Values are gathered as plain dicts for the `Transaction` model to validate in one go.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

from agent.contract import LineType

from ._poslog_read import TRUE, Reader, attr, flag, link, own_text, text
from ._poslog_tender import read_tender
from ._xml import local

__all__ = ["Body"]

_INCLUDED_FLAGS = frozenset(
    {
        "TaxIncludedInTaxableAmountFlag",
        "TaxIncludedInPriceFlag",
        "TaxIncludedFlag",
        "IncludedInPriceFlag",
    }
)
_EXTRA_LINES = {
    "Rounding": LineType.ROUNDING,
    "RoundingAdjustment": LineType.ROUNDING,
    "CashRounding": LineType.ROUNDING,
    "Fee": LineType.FEE,
    "ServiceCharge": LineType.SERVICE_CHARGE,
    "Deposit": LineType.DEPOSIT,
}
_PARTS = frozenset({"Sale", "Return", "Tender", "Tax", "Discount", *_EXTRA_LINES})


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
        self.returns = 0
        self.sales = 0
        self._origins: dict[int, tuple[Element, Element]] = {}  # item line -> LineItem, Sale

    def read(self, retail: Element) -> None:
        for found in retail.findall("TransactionLink"):
            parsed = link(found, self.reader, self.where + "/TransactionLink")
            if parsed is not None:
                self.links.append(parsed)
        for index, item in enumerate(retail.findall("LineItem"), start=1):
            self._line_item(item, index, f"{self.where}/LineItem[{index}]")
        self._compensate()

    def _line_item(self, item: Element, index: int, where: str) -> None:
        voided = flag(item, "VoidFlag")
        number = text(item, "SequenceNumber") or str(index)
        own_link = item.find("TransactionLink")
        for part in item:
            name = part.tag
            if name not in _PARTS:
                continue
            if name == "Sale" or name == "Return":
                line = self._item(
                    part, name, number, voided or _void_attr(part), where + "/" + name
                )
                found = part.find("TransactionLink")
                found = own_link if found is None else found
                self._link_line(line, found, name, where + "/" + name)
                self._origins[id(line)] = (item, part)
                self.lines.append(line)
            elif voided or _void_attr(part):
                continue
            elif name == "Tender":
                read_tender(part, self.reader, where + "/Tender", self.tenders)
            elif name == "Tax":
                self.taxes.append(self._tax(part, where + "/Tax", None))
            elif name == "Discount":
                self._discount(part, where + "/Discount")
            elif name in _EXTRA_LINES:
                self._extra(part, name, number, where + "/" + name)

    def _item(
        self, el: Element, name: str, number: str, voided: bool, where: str
    ) -> dict[str, Any]:
        money = self.reader.money
        quantity = money(text(el, "Quantity"), where + "/Quantity")
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
        for mod_index, mod in enumerate(el.findall("RetailPriceModifier"), start=1):
            discount = self._modifier(mod, f"{where}/RetailPriceModifier[{mod_index}]")
            if discount is not None:
                discounts.append(discount)
        if amount is None:
            net = money(text(el, "ExtendedDiscountAmount"), where + "/ExtendedDiscountAmount")
            if net is not None:
                amount = net + sum((d["amount"] for d in discounts), Decimal(0))
            elif unit is not None:
                amount = unit * quantity
            else:
                raise self.reader.fail("a line without ExtendedAmount or a unit price", where)
        included = attr(el, "TaxIncludedInPriceFlag")
        taxes = [
            self._tax(t, f"{where}/Tax[{i}]", included)
            for i, t in enumerate(el.findall("Tax"), start=1)
            if not _void_attr(t)
        ]
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

    def _modifier(self, mod: Element, where: str) -> dict[str, Any] | None:
        amount_el = mod.find("Amount")
        value = self.reader.money(text(mod, "Amount"), where + "/Amount")
        if value is None or amount_el is None:
            return None
        action = (attr(amount_el, "Action") or attr(mod, "Action") or "").lower()
        code = text(mod, "PromotionID") or text(mod, "DiscountID") or text(mod, "ReasonCode")
        return {
            "code": code or "",
            "description": text(mod, "Description") or "",
            "amount": -abs(value) if action == "add" else abs(value),
            "reason": text(mod, "ReasonCode") or "",
        }

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
                if (local(key) if key[0] == "{" else key) in _INCLUDED_FLAGS:
                    included = value.strip().lower() in TRUE
        amount = money(text(el, "Amount"), where + "/Amount")
        if amount is None:
            raise self.reader.fail("a tax without an amount", where)
        code = (
            text(el, "TaxGroupID")
            or text(el, "TaxAuthority")
            or text(el, "TaxRuleID")
            or attr(el, "TaxType")
            or "tax"
        )
        return {
            "code": code,
            "rate": money(text(el, "Percent"), where + "/Percent"),
            "taxable": money(own_text(taxable_el), where + "/TaxableAmount"),
            "amount": amount,
            "included": included,
        }

    def _discount(self, el: Element, where: str) -> None:
        found = el.find("RetailPriceModifier")
        if found is not None and el.find("Amount") is None:
            discount = self._modifier(found, where + "/RetailPriceModifier")
        else:
            discount = self._modifier(el, where)
        if discount is not None:
            self.discounts.append(discount)

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
