"""POSLog tenders: type, signed amount, change, cash back, and the card's brand and last four.

A change line of its own (`TypeCode="Change"`, `ChangeFlag="true"`) is folded into the
tender before it; a refund tender is negative; a card number is never kept whole.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any
from xml.etree.ElementTree import Element

from contract import TenderType, card_brand

from ._read import Reader, attr, flag, own_text, text

__all__ = ["read_tender"]

_TENDERS = {
    "cash": TenderType.CASH,
    "localcurrency": TenderType.CASH,
    "foreigncurrency": TenderType.CASH,
    "creditdebit": TenderType.CARD,
    "credit": TenderType.CARD,
    "debit": TenderType.CARD,
    "card": TenderType.CARD,
    "creditcard": TenderType.CARD,
    "debitcard": TenderType.CARD,
    "visa": TenderType.CARD,
    "mastercard": TenderType.CARD,
    "amex": TenderType.CARD,
    "americanexpress": TenderType.CARD,
    "maestro": TenderType.CARD,
    "giftcard": TenderType.GIFT_CARD,
    "giftcertificate": TenderType.GIFT_CARD,
    "storedvalue": TenderType.GIFT_CARD,
    "voucher": TenderType.VOUCHER,
    "coupon": TenderType.VOUCHER,
    "creditnote": TenderType.VOUCHER,
    "storecredit": TenderType.VOUCHER,
    "merchandisecredit": TenderType.VOUCHER,
    "loyalty": TenderType.LOYALTY,
    "loyaltyredemption": TenderType.LOYALTY,
    "points": TenderType.LOYALTY,
}
_BRANDS = {
    "visa": "visa",
    "mastercard": "mastercard",
    "mc": "mastercard",
    "amex": "amex",
    "americanexpress": "amex",
    "discover": "discover",
    "maestro": "maestro",
    "jcb": "jcb",
    "diners": "diners",
    "dinersclub": "diners",
    "unionpay": "unionpay",
}
_ZERO = Decimal(0)
_NOT_LETTERS = re.compile(r"[^a-z]")
_NOT_DIGITS = re.compile(r"\D")


def read_tender(el: Element, reader: Reader, where: str, tenders: list[dict[str, Any]]) -> bool:
    """Append the tender `el` to `tenders` (or fold a change line into the last one);
    False, and nothing appended, for a tender the host or the till declined."""
    money = reader.money
    amount_text = text(el, "Amount")
    amount = money(amount_text, where + "/Amount")
    if amount is None or amount_text is None:
        raise reader.fail("a tender without an amount", where)
    authorization = el.find("Authorization")
    if _declined(el, authorization, amount, reader, where):
        return False
    named = attr(el, "TenderType") or ""
    tender_id = text(el, "TenderID") or ""
    method = tender_id or named
    type_code = (attr(el, "TypeCode") or "").lower()
    change_el = el.find("TenderChange")
    change = money(text(change_el, "Amount") or text(el, "TenderChange"), where + "/TenderChange")
    if change is not None and amount_text.startswith("-") and abs(change) == abs(amount):
        # Change written as a negative tender line that names itself change (NCR ACS).
        type_code = "change"
    if type_code == "change" or flag(el, "ChangeFlag"):
        # Change written as a tender line of its own: it belongs to the tender before.
        if tenders:
            last = tenders[-1]
            out = abs(amount)
            if last["cashback"] and last["change"] is None and out >= last["cashback"]:
                out -= last["cashback"]  # the cash handed out holds the tender's cash back
            if out:
                last["change"] = (last["change"] or _ZERO) + out
            return True
        amount = -abs(amount)
    elif type_code in ("refund", "return"):
        amount = -abs(amount)
    keys = [_NOT_LETTERS.sub("", named.lower()), _NOT_LETTERS.sub("", tender_id.lower())]
    kind = _TENDERS.get(keys[0]) or _TENDERS.get(keys[1])
    if kind is None:
        cash = any(k.endswith("currency") for k in keys)
        kind = TenderType.CASH if cash else TenderType.OTHER
    cashback_el = el.find("Cashback")
    if cashback_el is None:
        cashback_el = el.find("CashBack")
    cashback = None
    if cashback_el is not None:
        value = text(cashback_el, "Amount") or own_text(cashback_el)
        cashback = money(value, where + "/" + cashback_el.tag)
    tender: dict[str, Any] = {
        "type": kind,
        "method": method,
        "amount": amount,
        "change": change,
        "cashback": cashback,
        "card": None,
        "auth_code": None,
    }
    card_el = el.find("CreditDebit")
    if card_el is None:
        card_el = el.find("Card")
    if card_el is not None or kind is TenderType.CARD:
        tender["card"] = _card(card_el, keys)
        if kind is TenderType.OTHER:
            tender["type"] = TenderType.CARD
    if authorization is None and card_el is not None:
        authorization = card_el.find("Authorization")
    tender["auth_code"] = text(authorization, "AuthorizationCode") or (
        text(card_el, "AuthorizationCode") if card_el is not None else None
    )
    tenders.append(tender)
    return True


def _card(card_el: Element | None, tender_keys: list[str]) -> dict[str, Any]:
    """Brand and last four only, whatever the POS wrote (full PAN, masked, or none)."""
    number = None
    named = None
    if card_el is not None:
        number = (
            text(card_el, "PrimaryAccountNumber")
            or text(card_el, "MaskedCardNumber")
            or text(card_el, "CardNumber")
        )
        named = attr(card_el, "CardType") or text(card_el, "CardType")
    digits = _NOT_DIGITS.sub("", number or "")
    brand = _BRANDS.get(_NOT_LETTERS.sub("", (named or "").lower()))
    for key in tender_keys:
        brand = brand or _BRANDS.get(key)
    if brand is None:
        plain = number is not None and number.replace(" ", "").isdigit() and len(digits) >= 13
        brand = card_brand(digits) if plain else "other"
    return {"brand": brand, "last4": digits[-4:] if len(digits) >= 4 else None}


def _declined(
    el: Element, authorization: Element | None, amount: Decimal, reader: Reader, where: str
) -> bool:
    """A tender the host or the till refused: a refusal code in its authorization, or
    nothing tendered of an amount requested. It is no payment."""
    if authorization is not None and text(authorization, "RefusalTypeCode"):
        return True
    if amount:
        return False
    requested = text(el, "RequestedAmount") or text(authorization, "RequestedAmount")
    value = reader.money(requested, where + "/RequestedAmount")
    return bool(value)
