"""One Magestore order (or credit memo) as Magento and the web POS state it, turned into
canonical records; the rules are documented in `magestore.py`."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from contract import LineType, TenderType, make_key

from .._base import ParseContext, Parsed, ParseError
from .._tabular import amount, card_brand, flag, ident, mapped_tender, tender_type, transaction

__all__ = ["is_memo", "order_records"]

_CARD_CODES = {"VI": "visa", "MC": "mastercard", "AE": "amex", "DI": "discover", "JCB": "jcb"}
_PAYMENT_LISTS = ("payments", "webpos_order_payments")
_CANCELED = {"canceled", "cancelled"}


def field(raw: dict[str, Any], *names: str) -> Any:
    """A value from the object or its `extension_attributes` (Magento's REST shape)."""
    extra = raw.get("extension_attributes")
    for source in (raw, extra if isinstance(extra, dict) else {}):
        for name in names:
            value = source.get(name)
            if value not in (None, ""):
                return value
    return None


def is_memo(raw: dict[str, Any]) -> bool:
    """A credit memo names its order; an order never does."""
    if "order_increment_id" in raw:
        return True
    items = raw.get("items")
    ordered = isinstance(items, list) and any(
        isinstance(i, dict) and "qty_ordered" in i for i in items
    )
    return "order_id" in raw and not ordered


def _when(value: Any, place: str) -> datetime:
    """Magento stores times in UTC and writes them without an offset."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise ParseError("no created_at", place)
    try:
        moment = datetime.fromisoformat(text.replace(" ", "T", 1).replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(f"not a date and time: {text[:40]!r}", place) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rate_code(rate: Decimal | None) -> str:
    return f"{rate.normalize():f}%" if rate is not None else "tax"


class _Doc:
    """What an order and its credit memos share: where, when, who, which till."""

    def __init__(self, raw: dict[str, Any], place: str, context: ParseContext) -> None:
        self.raw, self.place, self.context = raw, place, context
        self.number = ident(raw.get("increment_id"))
        if not self.number:
            raise ParseError("an order or credit memo without increment_id", place)
        self.created = _when(raw.get("created_at"), place + ".created_at")
        self.day: date = self.created.astimezone(context.timezone).date()
        self.register = ident(field(raw, "pos_id")) or None
        self.location = ident(field(raw, "pos_location_id", "location_id"))
        mapped = context.columns.get(f"location.{self.location}") if self.location else None
        self.store = mapped or context.store or self.location
        if not self.store:
            raise ParseError(
                "no store: the order names no location and the source sets none", place
            )
        code = ident(raw.get("order_currency_code")) or context.currency
        self.currency = code.upper()

    def source(self, place: str) -> dict[str, str]:
        return {"file": self.context.file_name, "position": place, "sha256": self.context.sha256}

    def attributes(self, memo: bool = False) -> dict[str, str]:
        raw = self.raw
        out = {
            "creditmemo_id" if memo else "order_id": ident(raw.get("entity_id")),
            "order_entity_id": ident(raw.get("order_id")) if memo else "",
            "status": ident(self.raw.get("status")),
            "location_id": self.location,
            "staff": ident(field(self.raw, "pos_staff_name", "webpos_staff_name")),
            "shift_id": ident(field(self.raw, "shift_id", "pos_shift_id", "shift_increment_id")),
        }
        return {k: v for k, v in out.items() if v}

    def lines(
        self, items: Any, place: str, sign: int, link: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        if not isinstance(items, list):
            raise ParseError("items must be a list", place)
        rows = [(i, item) for i, item in enumerate(items)]
        for index, item in rows:
            if not isinstance(item, dict):
                raise ParseError("an item must be an object", f"{place}[{index}]")
        totals = {ident(i.get("item_id")): i.get("row_total") for _, i in rows}
        parents = {ident(i.get("parent_item_id")) for _, i in rows} - {""}
        out = []
        for index, item in rows:
            where = f"{place}[{index}]"
            parent = ident(item.get("parent_item_id"))
            if parent and parent in totals and amount(totals[parent], where) not in (None, 0):
                continue  # a configurable product's child repeats its priced parent
            own = amount(item.get("row_total"), where + ".row_total")
            if ident(item.get("item_id")) in parents and not own:
                continue  # a bundle priced by its children
            line = self._line(item, where, sign, index)
            if line is not None and link is not None:
                line["link"] = {**link, "line": ident(item.get("order_item_id")) or None}
            if line is not None:
                out.append(line)
        return out

    def _line(
        self, item: dict[str, Any], where: str, sign: int, index: int
    ) -> dict[str, Any] | None:
        quantity = amount(item.get("qty_ordered", item.get("qty")), where + ".qty")
        if quantity == 0 and sign < 0:
            return None  # a credit memo lists the items it does not refund with qty 0
        quantity = Decimal(1) if quantity is None else quantity
        price = amount(item.get("price"), where + ".price")
        value = amount(item.get("row_total"), where + ".row_total")
        if value is None:
            value = amount((price or Decimal(0)) * quantity, where + ".price") or Decimal(0)
        discount = abs(
            amount(item.get("discount_amount"), where + ".discount_amount") or Decimal(0)
        )
        compensation = amount(
            item.get("discount_tax_compensation_amount", item.get("hidden_tax_amount")),
            where + ".discount_tax_compensation_amount",
        )
        discount -= abs(compensation or Decimal(0))
        tax = amount(item.get("tax_amount"), where + ".tax_amount")
        rate = amount(item.get("tax_percent"), where + ".tax_percent")
        line: dict[str, Any] = {
            "number": ident(item.get("item_id"))
            or ident(item.get("order_item_id"))
            or str(index + 1),
            "sku": ident(item.get("sku")),
            "description": ident(item.get("name")),
            "quantity": sign * abs(quantity),
            "unit_price": price,
            "amount": sign * abs(value),
            "discounts": [{"amount": sign * discount}] if discount else [],
            "taxes": [],
        }
        if tax:
            line["taxes"].append(
                {
                    "code": _rate_code(rate),
                    "rate": rate,
                    "amount": sign * abs(tax),
                    "included": False,
                }
            )
        return line

    def fee(
        self, name: str, sign: int, value: Any, tax: Any = None, discount: Any = None
    ) -> list[dict[str, Any]]:
        """A shipping or adjustment amount as a fee line; none when zero."""
        where = f"{self.place}.{name}"
        money = amount(value, where)
        if not money:
            return []
        line: dict[str, Any] = {
            "number": name,
            "type": LineType.FEE,
            "sku": name,
            "amount": sign * abs(money),
        }
        taxed = amount(tax, where + "_tax")
        if taxed:
            line["taxes"] = [{"code": name, "amount": sign * abs(taxed), "included": False}]
        taken = amount(discount, where + "_discount")
        if taken:
            line["discounts"] = [{"amount": sign * abs(taken)}]
        return [line]

    def tenders(self, sign: int, refunds: bool | None) -> list[dict[str, Any]]:
        """The split payments (`webpos_order_payment`): type 0 pays the order, type 1 refunds
        it; `refunds=None` takes them all (a credit memo's own payments)."""
        source = self.raw
        out = []
        for key in _PAYMENT_LISTS:
            payments = field(source, key)
            if payments is None:
                continue
            if not isinstance(payments, list):
                raise ParseError(f"{key} must be a list", f"{self.place}.{key}")
            for index, pay in enumerate(payments):
                where = f"{self.place}.{key}[{index}]"
                if not isinstance(pay, dict):
                    raise ParseError("a payment must be an object", where)
                if refunds is not None and (ident(pay.get("type")) == "1") != refunds:
                    continue
                tender = self._tender(pay, where, sign)
                if tender is not None:
                    out.append(tender)
            break
        else:
            own = source.get("payment")
            if refunds is False and isinstance(own, dict):
                # A Magento order without web POS payments (the REST `GET /V1/orders`
                # shape) carries one `payment`: what it paid, else what it ordered.
                paid = own.get("amount_paid") or own.get("base_amount_paid")
                pay = {**own, "amount_paid": paid or own.get("amount_ordered")}
                tender = self._tender(pay, f"{self.place}.payment", sign)
                if tender is not None:
                    out.append(tender)
        return out

    def _tender(self, pay: dict[str, Any], where: str, sign: int) -> dict[str, Any] | None:
        paid = next(
            (
                pay[k]
                for k in (
                    "amount_paid",
                    "payment_amount",
                    "base_amount_paid",
                    "base_payment_amount",
                )
                if pay.get(k) not in (None, "")
            ),
            None,
        )
        value = amount(paid, where + ".amount_paid")
        if not value:
            return None
        method = ident(pay.get("method")) or ident(pay.get("title")) or "payment"
        card_type = ident(pay.get("card_type"))
        mapped = mapped_tender(self.context.columns, f"payment.{method}")
        if mapped:
            kind = mapped
        elif card_type:
            kind = TenderType.CARD
        else:
            kind = tender_type(f"{method} {ident(pay.get('title'))}")
        tender: dict[str, Any] = {"type": kind, "method": method, "amount": sign * abs(value)}
        if kind is TenderType.CARD:
            brand = _CARD_CODES.get(card_type.upper()) or card_brand(card_type or method)
            tender["card"] = {"brand": brand or "other"}
            tender["auth_code"] = ident(pay.get("reference_number")) or None
        return tender


def _give_change(tenders: list[dict[str, Any]], change: Decimal | None, total: Decimal) -> None:
    """Magestore keeps the change of a cash payment on the order (`pos_change`)."""
    cash = [t for t in tenders if t["type"] is TenderType.CASH]
    if not change or not cash:
        return
    if sum((t["amount"] for t in tenders), Decimal(0)) == total:
        cash[-1]["amount"] += change  # the payments are net: what was tendered is more
    cash[-1]["change"] = change


def _customer(raw: dict[str, Any]) -> dict[str, Any] | None:
    if flag(raw.get("customer_is_guest")) or not ident(raw.get("customer_id")):
        return None
    return {
        "pos_customer_id": ident(raw.get("customer_id")),
        "email": ident(raw.get("customer_email")) or None,
        "first_name": ident(raw.get("customer_firstname")) or None,
        "last_name": ident(raw.get("customer_lastname")) or None,
    }


def order_records(raw: Any, place: str, context: ParseContext) -> Iterator[Parsed]:
    """An order's sale (or cancel) and a return for each of its credit memos; or a credit
    memo exported on its own."""
    if not isinstance(raw, dict):
        raise ParseError("an order must be an object", place)
    if is_memo(raw):
        yield _memo(raw, place, context, None, [])
        return
    order = _Doc(raw, place, context)
    total = amount(raw.get("grand_total"), place + ".grand_total")
    if total is None:
        raise ParseError("an order without grand_total", place)
    state = (ident(raw.get("state")) or ident(raw.get("status"))).lower()
    kind = "cancel" if state in _CANCELED else "sale"
    lines = order.lines(raw.get("items") or [], place + ".items", 1)
    lines += order.fee(
        "shipping",
        1,
        raw.get("shipping_amount"),
        raw.get("shipping_tax_amount"),
        raw.get("shipping_discount_amount"),
    )
    tenders = order.tenders(1, refunds=False)
    _give_change(
        tenders, amount(field(raw, "pos_change", "webpos_change"), place + ".pos_change"), total
    )
    staff = ident(field(raw, "pos_staff_id", "webpos_staff_id")) or None
    yield transaction(
        place,
        kind=kind,
        key=make_key(kind, order.store, order.register, order.day, order.number),
        store=order.store,
        register=order.register,
        operator=staff,
        transaction_id=order.number,
        business_date=order.day,
        occurred_at=order.created.astimezone(context.timezone),
        source=order.source(place),
        currency=order.currency,
        total=total,
        lines=lines,
        tenders=tenders,
        taxes=[],
        discounts=[],
        customer=_customer(raw),
        attributes=order.attributes(),
    )
    memos = raw.get("creditmemos") or []
    if not isinstance(memos, list):
        raise ParseError("creditmemos must be a list", place + ".creditmemos")
    refunds = order.tenders(-1, refunds=True)
    for index, memo in enumerate(memos):
        where = f"{place}.creditmemos[{index}]"
        if not isinstance(memo, dict):
            raise ParseError("a credit memo must be an object", where)
        yield _memo(memo, where, context, order, refunds if len(memos) == 1 else [])


def _memo(
    raw: dict[str, Any],
    place: str,
    context: ParseContext,
    order: _Doc | None,
    refunds: list[dict[str, Any]],
) -> Parsed:
    """A credit memo: a return linked to its order and the order's lines. Its key does not
    name a till (a memo does not say which), so it is the same in whatever file it comes."""
    if order is not None and raw.get("created_at") in (None, ""):
        raw = {**raw, "created_at": order.raw.get("created_at")}
    if order is not None:
        raw = {"order_currency_code": order.currency, "pos_location_id": order.location, **raw}
    memo = _Doc(raw, place, context)
    total = amount(raw.get("grand_total"), place + ".grand_total")
    if total is None:
        raise ParseError("a credit memo without grand_total", place)
    original = (
        order.number
        if order
        else ident(raw.get("order_increment_id")) or ident(raw.get("order_id"))
    )
    link: dict[str, Any] = {"transaction_id": original or "unknown"}
    if order is not None:
        link.update(
            register=order.register,
            business_date=order.day,
            key=make_key("sale", order.store, order.register, order.day, order.number),
        )
    lines = memo.lines(raw.get("items") or [], place + ".items", -1)
    for line in lines:
        line["link"] = {**link, "line": line["number"]}
        line["number"] = ident(line["number"])
    for item, line in zip(
        (i for i in raw.get("items") or [] if isinstance(i, dict)), lines, strict=False
    ):
        line["link"]["line"] = ident(item.get("order_item_id")) or line["link"]["line"]
    lines += memo.fee("shipping", -1, raw.get("shipping_amount"), raw.get("shipping_tax_amount"))
    lines += memo.fee("adjustment_positive", -1, raw.get("adjustment_positive"))
    lines += memo.fee("adjustment_negative", 1, raw.get("adjustment_negative"))
    tenders = memo.tenders(-1, refunds=None) or refunds
    return transaction(
        place,
        kind="return",
        key=make_key("return", memo.store, None, memo.day, memo.number),
        store=memo.store,
        transaction_id=memo.number,
        business_date=memo.day,
        occurred_at=memo.created.astimezone(context.timezone),
        source=memo.source(place),
        currency=memo.currency,
        total=-abs(total),
        lines=lines,
        tenders=tenders,
        taxes=[],
        discounts=[],
        links=[{**link, "reason": "credit memo"}],
        attributes=memo.attributes(memo=True),
    )
