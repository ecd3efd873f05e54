"""ARTS/NRF POSLog (2.x and 6.x) and Oracle Xstore's POSLog export, streamed.

Elements are matched by local name, so the NRF namespace, a prefix or none at all read
the same; Xstore's `dtv:` extensions are read where useful and otherwise passed over.
Each `Transaction` is turned into a record when its end tag arrives (header elements
may follow the body) and then dropped, so a 1 GB file stays in bounded memory.

The rules, where POS exports differ:
- Store: `RetailStoreID` (2.x) or `BusinessUnit/UnitID` (6.x), else `context.store`.
  Register: `WorkstationID`. Number: `SequenceNumber` (repeats across registers and
  days; the key holds all three) or `TransactionID`.
- Time: `EndDateTime`, else `BeginDateTime`; without an offset it is local to
  `context.timezone`. The business day is `BusinessDayDate`, which may differ from
  the calendar day.
- Status: `TransactionStatus` Canceled/Cancelled or Voided (voided while being rung up),
  or `CancelFlag="true"`: a `cancel`. PostVoided: a `void` of that transaction, linked
  to it. Suspended: counted, not forwarded. `TrainingModeFlag="true"`: counted, not
  forwarded. `ControlTransaction` (till and drawer operations): counted, not forwarded.
- Lines: `Sale` as signed by the POS; `Return` lines always reduce the transaction
  (quantity and amount made negative) and carry their `TransactionLink`. A line with
  `VoidFlag="true"` is kept, flagged voided; when it is a compensating line (negative,
  after the line it cancels) the earlier line of the same item and opposite amount is
  flagged too. A voided line that is simply absent needs nothing.
- Money: `ExtendedAmount` is the line before its `RetailPriceModifier` discounts; taxes
  say whether they are included (`TaxIncludedInTaxableAmountFlag`, `TaxIncludedFlag`,
  `IncludedInPriceFlag`); with no flag, the reading that reconciles with the POS total
  is taken. The total is `Total[@TotalType="TransactionGrandAmount"]` (else the net
  amount) and is never rewritten: `imbalance` says by how much the lines miss it.
- Tenders: `TenderType`/`TypeCode` to a tender type; `TenderChange` and `Cashback`
  stay with their tender; a refund tender is negative. Card numbers keep only brand
  and last four.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, BinaryIO, ClassVar
from xml.etree.ElementTree import Element

from pydantic import ValidationError

from agent.contract import (
    Customer,
    Discount,
    LineType,
    SourceRef,
    Tax,
    Tender,
    TenderType,
    Transaction,
    TransactionLine,
    TransactionLink,
    card_brand,
    make_key,
)

from . import register
from ._base import ParseContext, Parsed, ParseError, Skipped
from ._xml import child, children, local, refusing_unsafe_xml, safe_iterparse, text

__all__ = ["PoslogParser"]

_SNIFF = re.compile(rb"<(?:[\w.-]+:)?POSLog[\s>/]")
_TRUE = {"true", "1", "yes"}
_TENDERS = {
    "cash": TenderType.CASH,
    "creditdebit": TenderType.CARD,
    "credit": TenderType.CARD,
    "debit": TenderType.CARD,
    "card": TenderType.CARD,
    "creditcard": TenderType.CARD,
    "debitcard": TenderType.CARD,
    "giftcard": TenderType.GIFT_CARD,
    "giftcertificate": TenderType.GIFT_CARD,
    "storedvalue": TenderType.GIFT_CARD,
    "voucher": TenderType.VOUCHER,
    "coupon": TenderType.VOUCHER,
    "creditnote": TenderType.VOUCHER,
    "loyalty": TenderType.LOYALTY,
    "loyaltyredemption": TenderType.LOYALTY,
    "points": TenderType.LOYALTY,
}
_INCLUDED_FLAGS = ("TaxIncludedInTaxableAmountFlag", "TaxIncludedFlag", "IncludedInPriceFlag")
_ROUNDING = {"Rounding", "RoundingAdjustment", "CashRounding"}


def _flag(element: Element | None, name: str) -> bool:
    return element is not None and (element.get(name) or "").strip().lower() in _TRUE


def _attr(element: Element, name: str) -> str | None:
    """An attribute by local name (Xstore sometimes puts them in its own namespace)."""
    value = element.get(name)
    if value is None:
        for key, item in element.attrib.items():
            if local(key) == name:
                return item
    return value


class _Txn:
    """Reads one Transaction element; `place` names it in refusals."""

    def __init__(self, element: Element, place: str, context: ParseContext) -> None:
        self.el = element
        self.place = place
        self.context = context

    def fail(self, reason: str, where: str = "") -> ParseError:
        return ParseError(reason, f"{self.place}{where}")

    def money(self, value: str | None, where: str) -> Decimal | None:
        if value is None:
            return None
        try:
            result = Decimal(value.replace(",", "") if value.count(".") == 1 else value)
        except InvalidOperation:
            raise self.fail(f"not a number: {value[:40]!r}", where) from None
        if not result.is_finite():
            raise self.fail(f"not a finite number: {value[:40]!r}", where)
        return result

    def when(self, value: str, where: str) -> datetime:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise self.fail(f"not a date and time: {value[:40]!r}", where) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.context.timezone)
        return moment

    def day(self, value: str, where: str) -> date:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            raise self.fail(f"not a date: {value[:40]!r}", where) from None


def _header(txn: _Txn) -> dict[str, Any]:
    el = txn.el
    store = text(el, "RetailStoreID") or text(el, "BusinessUnit", "UnitID") or txn.context.store
    if not store:
        raise txn.fail("no store: neither RetailStoreID nor BusinessUnit/UnitID, and none set")
    number = text(el, "SequenceNumber") or text(el, "TransactionID")
    if not number:
        raise txn.fail("no transaction number (SequenceNumber or TransactionID)")
    end = text(el, "EndDateTime") or text(el, "BeginDateTime")
    business = text(el, "BusinessDayDate")
    if end is None and business is None:
        raise txn.fail("no time: neither EndDateTime, BeginDateTime nor BusinessDayDate")
    occurred = (
        txn.when(end, "/EndDateTime")
        if end
        else datetime.fromisoformat(f"{business[:10]}T00:00:00").replace(  # type: ignore[index]
            tzinfo=txn.context.timezone
        )
    )
    return {
        "store": store,
        "register": text(el, "WorkstationID"),
        "transaction_id": number,
        "business_date": txn.day(business, "/BusinessDayDate") if business else occurred.date(),
        "occurred_at": occurred,
        "operator": text(el, "OperatorID"),
        "currency": (text(el, "CurrencyCode") or txn.context.currency).upper(),
    }


def _link(element: Element | None) -> dict[str, Any] | None:
    if element is None:
        return None
    number = text(element, "SequenceNumber") or text(element, "TransactionID")
    if not number:
        return None
    day = text(element, "BusinessDayDate")
    return {
        "store": text(element, "RetailStoreID") or text(element, "BusinessUnit", "UnitID"),
        "register": text(element, "WorkstationID"),
        "business_date": day[:10] if day else None,
        "transaction_id": number,
        "line": text(element, "LineItemSequenceNumber"),
        "reason": _attr(element, "ReasonCode") or text(element, "ReasonCode") or "",
    }


class _Body:
    """The RetailTransaction's line items, tenders, taxes and totals."""

    def __init__(self, txn: _Txn) -> None:
        self.txn = txn
        self.lines: list[dict[str, Any]] = []
        self.tenders: list[dict[str, Any]] = []
        self.taxes: list[dict[str, Any]] = []
        self.discounts: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []
        self.returns = 0
        self.sales = 0

    def read(self, retail: Element) -> None:
        for index, item in enumerate(children(retail, "LineItem"), start=1):
            where = f"/RetailTransaction/LineItem[{index}]"
            voided = _flag(item, "VoidFlag")
            number = text(item, "SequenceNumber") or str(index)
            for part in item:
                name = part.tag
                if name in ("Sale", "Return"):
                    self.item(part, name, number, voided, where + "/" + name)
                elif name == "Tender" and not voided:
                    self.tender(part, where + "/Tender")
                elif name == "Tax" and not voided:
                    self.taxes.append(self.tax(part, where + "/Tax"))
                elif name == "Discount" and not voided:
                    amount = self.txn.money(text(part, "Amount"), where + "/Discount/Amount")
                    if amount is not None:
                        self.discounts.append(
                            {
                                "code": text(part, "DiscountID") or text(part, "PromotionID") or "",
                                "amount": abs(amount),
                                "reason": text(part, "ReasonCode") or "",
                            }
                        )
                elif name in _ROUNDING:
                    amount = self.txn.money(
                        text(part, "Amount") or (part.text or "").strip() or None,
                        where + "/" + name,
                    )
                    if amount is not None:
                        self.lines.append(
                            {
                                "number": number,
                                "type": LineType.ROUNDING,
                                "amount": amount,
                                "voided": voided,
                            }
                        )
        self.compensate()

    def item(self, el: Element, name: str, number: str, voided: bool, where: str) -> None:
        money = self.txn.money
        quantity = money(text(el, "Quantity"), where + "/Quantity")
        unit = money(
            text(el, "ActualSalesUnitPrice") or text(el, "RegularSalesUnitPrice"),
            where + "/ActualSalesUnitPrice",
        )
        amount = money(text(el, "ExtendedAmount"), where + "/ExtendedAmount")
        if quantity is None:
            quantity = Decimal(1)
        if amount is None:
            if unit is None:
                raise self.txn.fail("a line without ExtendedAmount or a unit price", where)
            amount = unit * quantity
        discounts: list[dict[str, Any]] = []
        for mod_index, mod in enumerate(children(el, "RetailPriceModifier"), start=1):
            value = money(text(mod, "Amount"), f"{where}/RetailPriceModifier[{mod_index}]/Amount")
            if value is None:
                continue
            amount_el = child(mod, "Amount")
            action = (_attr(mod if amount_el is None else amount_el, "Action") or "").lower()
            discounts.append(
                {
                    "code": text(mod, "PromotionID") or text(mod, "ReasonCode") or "",
                    "amount": -abs(value) if action == "add" else abs(value),
                    "reason": text(mod, "ReasonCode") or "",
                }
            )
        if name == "Return":
            quantity, amount = -abs(quantity), -abs(amount)
            discounts = [{**d, "amount": -d["amount"]} for d in discounts]
            self.returns += 1
        elif not voided:
            self.sales += 1
        line: dict[str, Any] = {
            "number": number,
            "sku": text(el, "ItemID") or text(el, "POSIdentity", "POSItemID") or "",
            "description": text(el, "Description") or "",
            "quantity": quantity,
            "unit_price": unit,
            "amount": amount,
            "discounts": discounts,
            "taxes": [self.tax(t, f"{where}/Tax") for t in children(el, "Tax")],
            "voided": voided,
        }
        link = _link(child(el, "TransactionLink"))
        if link is not None:
            line["link"] = {k: v for k, v in link.items() if k != "reason"}
            self.links.append({k: v for k, v in link.items() if k != "line"})
        self.lines.append(line)

    def tax(self, el: Element, where: str) -> dict[str, Any]:
        taxable_el = child(el, "TaxableAmount")
        included: bool | None = None
        for candidate in (el, taxable_el):
            for flag in _INCLUDED_FLAGS:
                if candidate is not None and candidate.get(flag) is not None:
                    included = _flag(candidate, flag)
        amount = self.txn.money(text(el, "Amount"), where + "/Amount")
        if amount is None:
            raise self.txn.fail("a tax without an amount", where)
        return {
            "code": text(el, "TaxGroupID")
            or text(el, "TaxAuthority")
            or el.get("TaxType")
            or "tax",
            "rate": self.txn.money(text(el, "Percent"), where + "/Percent"),
            "taxable": self.txn.money(text(el, "TaxableAmount"), where + "/TaxableAmount"),
            "amount": amount,
            "included": included,
        }

    def tender(self, el: Element, where: str) -> None:
        money = self.txn.money
        amount = money(text(el, "Amount"), where + "/Amount")
        if amount is None:
            raise self.txn.fail("a tender without an amount", where)
        method = _attr(el, "TenderType") or text(el, "TenderID") or ""
        type_code = (_attr(el, "TypeCode") or "").lower()
        key = re.sub(r"[^a-z]", "", method.lower())
        kind = _TENDERS.get(key, TenderType.OTHER)
        if type_code in ("refund", "return") and amount > 0:
            amount = -amount
        change = money(
            text(el, "TenderChange", "Amount") or text(el, "TenderChange"), where + "/TenderChange"
        )
        cashback = money(
            text(el, "Cashback") or text(el, "CashBack") or text(el, "Cashback", "Amount"),
            where + "/Cashback",
        )
        if type_code == "change" and self.tenders:
            # Change written as a tender line of its own: it belongs to the tender before.
            last = self.tenders[-1]
            last["change"] = (last.get("change") or Decimal(0)) + abs(amount)
            return
        tender: dict[str, Any] = {
            "type": kind,
            "method": method,
            "amount": amount,
            "change": change,
            "cashback": cashback,
        }
        card_el = child(el, "CreditDebit")
        if card_el is None:
            card_el = child(el, "Card")
        if card_el is not None or kind is TenderType.CARD:
            number = text(card_el, "PrimaryAccountNumber") if card_el is not None else None
            digits = re.sub(r"\D", "", number or "")
            brand = (_attr(card_el, "CardType") if card_el is not None else None) or (
                card_brand(digits) if len(digits) >= 13 else "other"
            )
            tender["card"] = {
                "brand": brand.lower(),
                "last4": digits[-4:] if len(digits) >= 4 else None,
            }
            tender["type"] = TenderType.CARD if kind is TenderType.OTHER else kind
        tender["auth_code"] = text(el, "Authorization", "AuthorizationCode")
        self.tenders.append(tender)

    def compensate(self) -> None:
        """A voided negative line cancels the earlier line of the same item: flag that too."""
        for index, line in enumerate(self.lines):
            if not line["voided"] or line["amount"] >= 0 or line.get("type"):
                continue
            for earlier in reversed(self.lines[:index]):
                if (
                    not earlier["voided"]
                    and not earlier.get("type")
                    and earlier.get("sku") == line.get("sku")
                    and earlier["amount"] == -line["amount"]
                ):
                    earlier["voided"] = True
                    break


def _grand_total(retail: Element, txn: _Txn) -> Decimal | None:
    totals = {(t.get("TotalType") or ""): t for t in children(retail, "Total")}
    for kind in ("TransactionGrandAmount", "TransactionNetAmount", "TransactionTotal"):
        if kind in totals:
            return txn.money((totals[kind].text or "").strip() or None, f"/Total[@{kind}]")
    return None


def _decide_included(body: _Body, total: Decimal) -> None:
    """Taxes that say nothing about inclusion: take the reading that meets the POS total."""
    undecided = [t for t in body.taxes if t["included"] is None] + [
        t for ln in body.lines for t in ln.get("taxes", []) if t["included"] is None
    ]
    if not undecided:
        return
    live = [ln for ln in body.lines if not ln["voided"]]
    net = (
        sum((ln["amount"] for ln in live), Decimal(0))
        - sum((d["amount"] for ln in live for d in ln.get("discounts", [])), Decimal(0))
        - sum((d["amount"] for d in body.discounts), Decimal(0))
    )
    included = net == total
    for tax in undecided:
        tax["included"] = included


def _kind(status: str, body: _Body, total: Decimal) -> str:
    if status in ("postvoided", "postvoid"):
        return "void"
    if status in ("canceled", "cancelled", "voided", "aborted"):
        return "cancel"
    if body.returns and (not body.sales or total < 0):
        return "return"
    return "sale"


class PoslogParser:
    """ARTS/NRF POSLog and Xstore POSLog."""

    name: ClassVar[str] = "poslog"

    def sniff(self, head: bytes) -> bool:
        return bool(_SNIFF.search(head[:4096]))

    def parse(self, stream: BinaryIO, *, context: ParseContext) -> Iterator[Parsed]:
        return refusing_unsafe_xml(self._records(stream, context))

    def _records(self, stream: BinaryIO, context: ParseContext) -> Iterator[Parsed]:
        depth = 0
        root: Element | None = None
        count = 0
        for event, element in safe_iterparse(stream, ("start", "end")):
            if event == "start":
                element.tag = local(element.tag)  # once here, so lookups compare plain names
                depth += 1
                if depth == 1:
                    root = element
                    if element.tag != "POSLog":
                        raise ParseError(f"not POSLog: the root element is {element.tag!r}", "/")
                continue
            depth -= 1
            if depth == 1 and element.tag == "Transaction":
                count += 1
                item = self._transaction(element, f"/POSLog/Transaction[{count}]", context)
                if root is not None:
                    root.clear()  # bounded memory: the finished transaction is dropped
                if item is not None:
                    yield item
        if root is None:
            raise ParseError("the file holds no XML element", "byte 0")

    def _transaction(self, el: Element, place: str, context: ParseContext) -> Parsed | None:
        txn = _Txn(el, place, context)
        head = _header(txn)
        skipped = {
            "store": head["store"],
            "business_date": head["business_date"],
            "transaction_id": head["transaction_id"],
            "register": head["register"],
            "place": place,
        }
        if _flag(el, "TrainingModeFlag") or text(el, "TrainingModeFlag") in ("true", "1"):
            return Skipped(reason="training", **skipped)
        retail = child(el, "RetailTransaction")
        if retail is None:
            # ControlTransaction, TenderControlTransaction and other till operations: no sale.
            return Skipped(reason="control", **skipped)
        status = (
            _attr(retail, "TransactionStatus") or text(retail, "TransactionStatus") or ""
        ).lower()
        if status == "suspended":
            return Skipped(reason="suspended", **skipped)
        body = _Body(txn)
        body.read(retail)
        total = _grand_total(retail, txn)
        if total is None:
            raise txn.fail(
                "no total (Total with TotalType TransactionGrandAmount)", "/RetailTransaction"
            )
        _decide_included(body, total)
        kind = _kind(status, body, total)
        if _flag(el, "CancelFlag") and kind == "sale":
            kind = "cancel"
        for link in [*body.links, *(ln["link"] for ln in body.lines if "link" in ln)]:
            if link.get("business_date") and not link.get("key"):
                # The original is a sale at the linked till; central parks until it has it.
                link["key"] = make_key(
                    "sale",
                    link.get("store") or head["store"],
                    link.get("register"),
                    link["business_date"],
                    link["transaction_id"],
                )
        links = body.links
        if kind == "void":
            own = {
                "store": head["store"],
                "register": head["register"],
                "business_date": head["business_date"].isoformat(),
                "transaction_id": head["transaction_id"],
                "reason": "post-void",
            }
            own["key"] = make_key(
                "return" if body.returns and not body.sales else "sale",
                head["store"],
                head["register"],
                head["business_date"],
                head["transaction_id"],
            )
            links = [own, *links]
        attributes = {"status": status} if status else {}
        for prop in children(el, "PosTransactionProperties"):
            code = text(prop, "PosTransactionPropertyCode")
            value = text(prop, "PosTransactionPropertyValue")
            if code and value:
                attributes[code] = value
        type_code = _attr(el, "TransactionType") or text(el, "TransactionTypeCode")
        if type_code:
            attributes["transaction_type"] = type_code
        customer_el = child(retail, "Customer")
        customer = None
        if customer_el is not None:
            customer = Customer(
                pos_customer_id=text(customer_el, "CustomerID"),
                loyalty_id=text(customer_el, "LoyaltyAccount", "LoyaltyAccountID")
                or text(customer_el, "LoyaltyAccount", "LoyaltyCardNumber"),
                first_name=text(customer_el, "Name", "FirstName"),
                last_name=text(customer_el, "Name", "LastName"),
                email=text(customer_el, "EMail", "EMailAddress") or text(customer_el, "EMail"),
                phone=text(customer_el, "Telephone", "FullTelephoneNumber"),
            )
        key = make_key(
            kind, head["store"], head["register"], head["business_date"], head["transaction_id"]
        )
        try:
            lines = [TransactionLine.model_validate(ln) for ln in body.lines]
            taxes = [Tax.model_validate(t) for t in body.taxes]
            discounts = [Discount.model_validate(d) for d in body.discounts]
            return Transaction(
                kind=kind,
                key=key,
                source=SourceRef(file=context.file_name, position=place, sha256=context.sha256),
                lines=lines,
                tenders=[Tender.model_validate(t) for t in body.tenders],
                taxes=taxes,
                discounts=discounts,
                links=[TransactionLink.model_validate(link) for link in links],
                customer=customer,
                total=total,
                imbalance=Transaction.compute_imbalance(
                    total, lines, taxes, discounts, head["currency"]
                ),
                attributes=attributes,
                **head,
            )
        except ValidationError as exc:
            err = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise txn.fail(f"{where}: {err['msg']}") from None


register(PoslogParser())
