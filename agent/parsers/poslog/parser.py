"""ARTS/NRF POSLog (2.x and 6.x) and Oracle Xstore's POSLog export, streamed.

Elements are matched by local name, so the NRF namespace, a prefix or none at all read
the same; Xstore's `dtv:` and NCR ACS's `acs:` extensions are kept where useful and
otherwise passed over. Each `Transaction` is turned into a record once it is complete
(header elements may follow the body) and then dropped, so a 1 GB file stays in bounded
memory. A file may also be one `Transaction` alone, with no `POSLog` around it.

A file that is not POSLog, or not well-formed XML, is refused whole. A transaction that
cannot be read is not: it becomes a `refused` record (its XML, place and reason, keyed
by what its header still says) and the next transaction is read.

The rules, where POS exports differ:
- Store: `RetailStoreID` (2.x) or `BusinessUnit/UnitID` (6.x), else `context.store`.
  Register: `WorkstationID`. Number: `SequenceNumber` (repeats across registers and
  days; the key holds all three) or `TransactionID`.
- Time: `EndDateTime`, else `BeginDateTime`, else `ReceiptDateTime`; without an offset
  it is local to `context.timezone`. The business day is `BusinessDayDate`, which may
  differ from the calendar day.
- Status (`TransactionStatus`, attribute or element): Canceled/Cancelled/Aborted/Failed/
  CancelOrphaned or `CancelFlag="true"` is a `cancel`, and so is Voided without a
  `TransactionLink` (voided while being rung up); a cancel without a total totals what
  was rung up. PostVoided, or Voided that links an earlier transaction, is a `void`,
  linked to the voided transaction: the one its `TransactionLink` names, else itself.
  Suspended, `TrainingModeFlag="true"` and till control (`ControlTransaction` and any
  transaction without a `RetailTransaction` or `CustomerOrderTransaction`) are counted,
  not forwarded.
- Online orders: a `CustomerOrderForPickup` / `CustomerOrderForDelivery` line whose
  `OrderStatus` says the store handed over (PickedUp, Complete, Fulfilled), partly
  handed over (Partial), shipped (Shipped) or cancelled (Cancelled) an order placed
  before, named in `AccountNumber` (Xstore) or `OrderID`, is not sold again: it becomes
  a `fulfillment` record per order, keyed by the transaction and the order; a
  transaction holding nothing else gives no sale.
- Lines: `Sale` as signed by the POS (Xstore's `CustomerOrderForDelivery` and
  `CustomerOrderForPickup` lines of an order taken now are sales too; the `Deposit` line
  that closes such an order restates its total and is left out), except that a `Sale` of
  negative quantity with a positive amount is a returned line; `Return` lines always
  reduce the transaction (quantity, amount and tax made negative) and carry their
  `TransactionLink` (6.x links may hold the store in `BusinessUnit` itself and the day
  in `BusinessDayDate/Date`). A basket with returned and sold lines keeps both signs;
  its kind follows the sign of its total (`sale` or `return`) and it says `exchange` in
  its attributes. A line with `VoidFlag="true"` is kept, flagged voided; when it is a
  void entry for an earlier line (it names it with `ItemLink`/`CreateRefNumber`, or has
  the opposite amount of the same item) that line is flagged too. A voided line that is
  simply absent needs nothing.
- Money: a line's amount is before its `RetailPriceModifier`s (`Subtract`, `Add`,
  `Replace` with the new unit price, which may raise it, `Percent`,
  `PreviousPrice`/`NewPrice`); where the
  POS wrote `ExtendedAmount` after them (regular price × quantity − modifiers), the
  amount before them is taken, so nothing is subtracted twice. Unit prices keep every
  decimal the POS wrote; amounts computed from them round half up to the currency.
  Monetary loyalty rewards (ACS `LoyaltyReward`) are transaction discounts. Taxes say
  whether they are in the price (`TaxIncludedInPriceFlag`, `TaxIncludedFlag`,
  `IncludedInPriceFlag`, or `TaxIncludedInTaxableAmountFlag="true"`); a transaction's
  tax summary that says nothing follows its item lines' `TaxIncludedInPriceFlag`; with
  no flag at all, the reading that reconciles with the POS total is taken. An item's
  `Tax` without an amount is tax exempt (0); a transaction-level `Tax` without one only
  restates a rate (Xstore) and is passed over. Rates are percent; Xstore's fractions
  (`0.0475000`) are read as such where the tax amount shows it. The total is
  `TransactionGrandAmount`,
  else `TransactionNetAmount` plus `TransactionTaxAmount`, and is never rewritten:
  `imbalance` says by how much the lines miss it, the `tender_imbalance` attribute by
  how much the tenders (net of change and cash back) do.
- Tenders: `TenderType`/`TenderID` to a tender type; `TenderChange` and `Cashback` stay
  with their tender, as does a change line (`TypeCode="Change"`, `ChangeFlag="true"`, a
  negative tender whose `TenderChange` is itself, or a `TenderChange` line item); a
  refund tender is negative. A declined tender (a `RefusalTypeCode` in its
  authorization, or `Amount` 0 of a `RequestedAmount`) is counted in the attributes,
  not paid; a tender's non-zero `Rounding` is a rounding line (a tender line with only a
  `Rounding` is nothing else). Card numbers keep only brand and last four.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, BinaryIO, ClassVar, Literal
from xml.etree.ElementTree import Element

from pydantic import ValidationError

from contract import Fulfillment, Transaction, make_key, quantize_amount

from .._base import ParseContext, Parsed, ParseError, Skipped
from .._refuse import RECOVERABLE, lenient_day, lenient_time, refused, xml_fragment
from .._xml import longest_run, refusing_unsafe_xml
from ._body import Body
from ._read import Reader, attr, flag, original_key, text
from ._stream import transactions

__all__ = ["PoslogParser"]

_SNIFF = re.compile(rb"<(?:[\w.-]+:)?POSLog[\s>/]")
# One transaction per file, with no POSLog around it: the root is the Transaction itself.
_SNIFF_BARE = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<[?!][^>]*>\s*)*<(?:[\w.-]+:)?Transaction[\s>]")
_SNIFF_BODY = re.compile(rb"<(?:[\w.-]+:)?(?:Retail|Control|CustomerOrder)Transaction[\s>/]")
_CANCEL = frozenset({"canceled", "cancelled", "aborted", "cancelorphaned", "failed"})
_VOID = frozenset({"postvoided", "postvoid", "void"})
_SUSPENDED = frozenset({"suspended", "suspendeddeleted", "suspendedretrieved"})
_GRAND = ("TransactionGrandAmount", "GrandAmount", "TransactionTotal")
_ZERO = Decimal(0)


class PoslogParser:
    """ARTS/NRF POSLog and Xstore POSLog."""

    name: ClassVar[str] = "poslog"

    def sniff(self, head: bytes) -> bool:
        start = head[:4096]
        if start.startswith((b"\xff\xfe", b"\xfe\xff")):
            start = start.decode("utf-16", errors="ignore").encode()
        if _SNIFF.search(start):
            return True
        return bool(_SNIFF_BARE.match(start) and _SNIFF_BODY.search(head))

    def parse(self, stream: BinaryIO, *, context: ParseContext) -> Iterator[Parsed]:
        return refusing_unsafe_xml(self._records(stream, context))

    def _records(self, stream: BinaryIO, context: ParseContext) -> Iterator[Parsed]:
        previous: Parsed | None = None  # its time stands in for a refusal's own, if need be
        longest = longest_run(context.limits.string_chars)
        for count, element in enumerate(transactions(stream, longest), start=1):
            place = f"/POSLog/Transaction[{count}]"
            try:
                parsed, fulfilled = _record(element, place, context)
            except ParseError as exc:
                # One unreadable transaction never holds back the rest of its file.
                yield _refused(element, exc.place or place, exc.reason, context, previous)
                continue
            except RECOVERABLE as exc:
                reason = f"unreadable transaction ({type(exc).__name__}: {exc})"
                yield _refused(element, place, reason, context, previous)
                continue
            previous = parsed if parsed is not None else previous
            if parsed is not None:
                yield parsed
            yield from fulfilled


def _header(el: Element, reader: Reader) -> dict[str, Any]:
    store = text(el, "RetailStoreID")
    if store is None:
        store = text(el.find("BusinessUnit"), "UnitID")
    store = store or reader.context.store
    if not store:
        raise reader.fail("no store: neither RetailStoreID nor BusinessUnit/UnitID, and none set")
    number = text(el, "SequenceNumber") or text(el, "TransactionID")
    if not number:
        raise reader.fail("no transaction number (SequenceNumber or TransactionID)")
    business = text(el, "BusinessDayDate")
    occurred: datetime | None = None
    for name in ("EndDateTime", "BeginDateTime", "ReceiptDateTime"):
        value = text(el, name)
        if value:
            occurred = reader.when(value, "/" + name)
            break
    if occurred is None:
        if business is None:
            raise reader.fail("no time: neither EndDateTime, BeginDateTime nor BusinessDayDate")
        day = reader.day(business, "/BusinessDayDate")
        occurred = datetime(day.year, day.month, day.day, tzinfo=reader.context.timezone)
    return {
        "store": store,
        "register": text(el, "WorkstationID"),
        "transaction_id": number,
        "business_date": reader.day(business, "/BusinessDayDate") if business else occurred.date(),
        "occurred_at": occurred,
        "operator": text(el, "OperatorID"),
        "currency": (text(el, "CurrencyCode") or reader.context.currency).upper(),
    }


def _status(el: Element, retail: Element | None) -> str:
    for holder in (retail, el):
        if holder is None:
            continue
        value = attr(holder, "TransactionStatus") or text(holder, "TransactionStatus")
        if value:
            return value.rpartition(":")[2].lower()
    return ""


def _record(
    el: Element, place: str, context: ParseContext
) -> tuple[Parsed | None, list[Fulfillment]]:
    """The transaction's record, and what it says the store did with online orders."""
    reader = Reader(place, context)
    head = _header(el, reader)
    retail = el.find("RetailTransaction")
    if retail is None:
        retail = el.find("CustomerOrderTransaction")  # an order taken at the till
    status = _status(el, retail)
    skip: Literal["training", "control", "suspended"] | None = None
    if flag(el, "TrainingModeFlag"):
        skip = "training"
    elif retail is None:
        skip = "control"  # ControlTransaction, TenderControlTransaction, drawer and till work
    elif status in _SUSPENDED:
        skip = "suspended"
    if skip is not None or retail is None:
        skipped = Skipped(
            reason=skip or "control",
            store=head["store"],
            business_date=head["business_date"],
            transaction_id=head["transaction_id"],
            register=head["register"],
            place=place,
        )
        return skipped, []
    body = Body(reader, "/RetailTransaction")
    body.currency = head["currency"]
    body.read(retail)
    fulfilled = _fulfilments(body, head, place, context)
    if fulfilled and not body.lines and not body.tenders:
        return None, fulfilled  # only online orders handed over: nothing sold here now
    cancelled = (
        status in _CANCEL or (status == "voided" and not body.links) or flag(el, "CancelFlag")
    )
    total = _grand_total(retail, reader, body if cancelled else None)
    _decide_included(body, total)

    if status in _VOID or (status == "voided" and body.links):
        kind = "void"  # a void of an earlier transaction (named by its link, or itself)
    elif cancelled:
        kind = "cancel"  # voided while being rung up, or failed: nothing was sold
    elif body.returns and (not body.sales or total < 0):
        kind = "return"
    else:
        kind = "sale"
    links = _links(kind, body, head)
    for line in body.lines:
        found = line.get("link")
        if found is not None:
            found["key"] = original_key(found, head["store"])
    attributes = _attributes(el, status)
    if body.returns and body.sales:
        attributes["exchange"] = "true"  # one basket, returned and sold lines, both signs kept
    if body.declined:
        attributes["declined_tenders"] = str(body.declined)

    try:
        record = Transaction(
            kind=kind,
            key=make_key(
                kind, head["store"], head["register"], head["business_date"], head["transaction_id"]
            ),
            source={"file": context.file_name, "position": place, "sha256": context.sha256},
            lines=body.lines,
            tenders=body.tenders,
            taxes=body.taxes,
            discounts=body.discounts,
            links=links,
            customer=_customer(el, retail),
            total=total,
            attributes=attributes,
            **head,
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"])
        raise reader.fail(f"{where}: {err['msg']}") from None
    imbalance = Transaction.compute_imbalance(
        record.total, record.lines, record.taxes, record.discounts, record.currency
    )
    gap = _tender_gap(body.tenders, total) if body.tenders and kind != "cancel" else _ZERO
    if not imbalance and not gap:
        return record, fulfilled
    updates: dict[str, Any] = {}
    if imbalance:
        updates["imbalance"] = imbalance
    if gap:
        shown = format(quantize_amount(gap, record.currency), "f")
        updates["attributes"] = {**record.attributes, "tender_imbalance": shown}
    return record.model_copy(update=updates), fulfilled


def _fulfilments(
    body: Body, head: dict[str, Any], place: str, context: ParseContext
) -> list[Fulfillment]:
    """One `fulfillment` record per online order the transaction handed over, shipped
    or cancelled, keyed by the transaction and the order (a re-read gives the same)."""
    by_order: dict[str, list[dict[str, Any]]] = {}
    for line in body.fulfilled:
        by_order.setdefault(line["order_number"], []).append(line)
    found: list[Fulfillment] = []
    for order, lines in by_order.items():
        said = {line["status"] for line in lines}
        if said == {"cancelled"}:
            status = "cancelled"
        elif "shipped" in said:
            status = "shipped"
        elif "partially_picked_up" in said or "cancelled" in said:
            status = "partially_picked_up"
        else:
            status = "picked_up"
        key = make_key(
            "fulfillment",
            head["store"],
            head["register"],
            head["business_date"],
            f"{head['transaction_id']}:{order}",
        )
        try:
            fulfilment = Fulfillment(
                kind="fulfillment",
                key=key,
                store=head["store"],
                business_date=head["business_date"],
                occurred_at=head["occurred_at"],
                source={"file": context.file_name, "position": place, "sha256": context.sha256},
                order_number=order,
                status=status,
                register=head["register"],
                transaction_id=head["transaction_id"],
                lines=[
                    {k: line[k] for k in ("line_id", "sku", "handed_over", "cancelled")}
                    for line in lines
                ],
            )
        except ValidationError as exc:
            err = exc.errors(include_url=False, include_input=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ParseError(f"order {order!r}: {where}: {err['msg']}", place) from None
        found.append(fulfilment)
    return found


def _tender_gap(tenders: list[dict[str, Any]], total: Decimal) -> Decimal:
    """Total minus what the tenders paid net of change and cash back (0 when they meet the
    total; a cancel, or a transaction without tenders, has nothing to meet it)."""
    if len(tenders) == 1:
        only = tenders[0]  # the common case, met without arithmetic
        if only["change"] is None and only["cashback"] is None and only["amount"] == total:
            return _ZERO
    paid = _ZERO
    for tender in tenders:
        paid += tender["amount"]
        change = tender["change"]
        if change is not None:
            paid -= change
        cashback = tender["cashback"]
        if cashback is not None:
            paid -= cashback
    return total - paid


def _grand_total(retail: Element, reader: Reader, cancelled: Body | None) -> Decimal:
    """The POS's grand total; else its net plus tax; for a cancel without either, what was
    rung up (nothing was paid, so there is nothing to reconcile against)."""
    totals: dict[str, str] = {}
    for found in retail.findall("Total"):
        totals.setdefault(found.get("TotalType") or "", (found.text or "").strip())
    for name in _GRAND:
        if name in totals:
            where = f"/RetailTransaction/Total[@TotalType='{name}']"
            value = reader.money(totals[name] or None, where)
            if value is not None:
                return value
    net = reader.money(totals.get("TransactionNetAmount") or None, "/RetailTransaction/Total")
    tax = reader.money(totals.get("TransactionTaxAmount") or None, "/RetailTransaction/Total")
    if net is not None and tax is not None:
        return net + tax
    if cancelled is not None:
        return _live_net(cancelled) + sum(
            (t["amount"] for t in _taxes(cancelled) if t["included"] is False), _ZERO
        )
    raise reader.fail(
        "no total (Total with TotalType TransactionGrandAmount)", "/RetailTransaction"
    )


def _taxes(body: Body) -> list[dict[str, Any]]:
    if body.taxes:
        return body.taxes
    return [t for ln in body.lines if not ln["voided"] for t in ln.get("taxes", ())]


def _live_net(body: Body) -> Decimal:
    live = [ln for ln in body.lines if not ln["voided"]]
    return (
        sum((ln["amount"] for ln in live), _ZERO)
        - sum((d["amount"] for ln in live for d in ln.get("discounts", ())), _ZERO)
        - sum((d["amount"] for d in body.discounts), _ZERO)
    )


def _decide_included(body: Body, total: Decimal) -> None:
    """Taxes that say nothing about inclusion: take the reading that meets the POS total."""
    undecided = [t for t in body.taxes if t["included"] is None]
    undecided += [t for ln in body.lines for t in ln.get("taxes", ()) if t["included"] is None]
    if undecided:
        included = _live_net(body) == total
        for tax in undecided:
            tax["included"] = included


def _links(kind: str, body: Body, head: dict[str, Any]) -> list[dict[str, Any]]:
    links: list[dict[str, Any]] = []
    seen: set[tuple[Any, ...]] = set()
    for found in body.links:
        # Several returned lines of one original name it once each: list it once.
        ident = (found["store"], found["register"], found["business_date"], found["transaction_id"])
        if ident not in seen:
            seen.add(ident)
            links.append(dict(found))
    if kind == "void" and not links:
        # The voided transaction itself, re-exported with its new status.
        own_kind = "return" if body.returns and not body.sales else "sale"
        links = [
            {
                "store": head["store"],
                "register": head["register"],
                "business_date": head["business_date"],
                "transaction_id": head["transaction_id"],
                "reason": "post-void",
                "key": make_key(
                    own_kind,
                    head["store"],
                    head["register"],
                    head["business_date"],
                    head["transaction_id"],
                ),
            }
        ]
    for found in links:
        found.pop("line", None)
        if "key" not in found:
            found["key"] = original_key(found, head["store"])
    return links


def _customer(el: Element, retail: Element) -> dict[str, Any] | None:
    customer = retail.find("Customer")
    if customer is None:
        customer = el.find("Customer")
    loyalty = customer.find("LoyaltyAccount") if customer is not None else None
    if loyalty is None:
        loyalty = retail.find("LoyaltyAccount")
    if customer is None and loyalty is None:
        return None
    found: dict[str, Any] = {
        "loyalty_id": text(loyalty, "LoyaltyAccountID")
        or text(loyalty, "LoyaltyCardNumber")
        or text(loyalty, "CustomerID")
        if loyalty is not None
        else None,
        "pos_customer_id": text(customer, "CustomerID"),
    }
    if customer is not None:
        name = customer.find("Name")
        email = customer.find("EMail")
        phone = customer.find("Telephone")
        found.update(
            first_name=text(name, "FirstName"),
            last_name=text(name, "LastName"),
            email=text(email, "EMailAddress") or text(customer, "EMail"),
            phone=text(phone, "FullTelephoneNumber") or text(phone, "PhoneNumber"),
        )
    return found


def _attributes(el: Element, status: str) -> dict[str, str]:
    found = {"status": status} if status else {}
    type_code = attr(el, "TransactionType") or text(el, "TransactionTypeCode")
    if type_code:
        found["transaction_type"] = type_code
    till = text(el, "TillID")
    if till:
        found["till"] = till
    for prop in el.findall("PosTransactionProperties"):  # findall: iterfind is not in C
        code = text(prop, "PosTransactionPropertyCode")
        value = text(prop, "PosTransactionPropertyValue")
        if code and value:
            found[code] = value
    return found


def _refused(
    el: Element, place: str, reason: str, context: ParseContext, previous: Parsed | None
) -> Parsed:
    """The `refused` record of a transaction that could not be read: what its header still
    says, and the element itself."""
    last = previous.occurred_at if isinstance(previous, Transaction) else None
    store = text(el, "RetailStoreID") or text(el.find("BusinessUnit"), "UnitID")
    occurred = None
    for name in ("EndDateTime", "BeginDateTime", "ReceiptDateTime"):
        occurred = occurred or lenient_time(text(el, name), context)
    return refused(
        "poslog",
        context,
        place,
        reason,
        xml_fragment(el),
        store=store,
        register=text(el, "WorkstationID"),
        transaction_id=text(el, "SequenceNumber") or text(el, "TransactionID"),
        business_date=lenient_day(text(el, "BusinessDayDate")),
        occurred_at=occurred,
        fallback_time=last,
    )
