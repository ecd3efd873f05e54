"""Oracle MICROS guest checks: Simphony's Reporting & Analytics `getGuestChecks` JSON, and
RES 3700 delimited check exports.

Simphony JSON (`{"locRef": …, "guestChecks": [{…}]}`, or a bare list of checks):
- A check: `chkNum`, `guestCheckId`, `opnBusDt` (business day), `clsdLcl`/`clsdUTC`
  (when; `…UTC` is UTC, `…Lcl` is local to `context.timezone`), `chkTtl` (total),
  `rvcNum` (revenue center: the register in the key), `empNum`, `cancelFlag`,
  `trngFlag` (training: counted, not forwarded), `taxes[]` (`taxNum`, `txblSlsTtl`,
  `taxCollTtl`, `taxRate`), `detailLines[]`.
- A detail line carries exactly one of `menuItem` (`miNum`; `inclTax` > 0 means the tax
  is in the price), `discount` (`dscNum`), `serviceCharge` (`svcChgNum`), `tenderMedia`
  (`tmedNum`); its amount is `dspTtl`, its quantity `dspQty`. `vdFlag` (void) and
  `errCorFlag` (error correct) keep the line, flagged voided; a voided negative line also
  voids the earlier line of the same item it cancels. `rtnFlag` marks a returned item.
- Tender media numbers are the property's own: `context.columns` maps them to tender
  types (`"tmed.101": "card"`), unmapped ones are "other" with method `tmed 101`.
  A negative tender line after a tender of the same media is change given.
- Reopened checks (`reopnClsdChkFlag`, or `reopnFrmChk`): the check closed again after it
  was reopened is a new closing with its own key (`<chkNum>.<guestCheckId>`) linked to the
  original check number, so central sees both the original and the correction.

RES 3700 delimited (`|` or `,`), one row per record, the first field says which:
    H|check|business_date|closed_at|workstation|employee|total|flags   (flags: T training,
                                                                        C cancelled)
    D|check|line|kind|item|description|quantity|amount|flags           (kind: M item,
                                            D discount, S service charge; flags V void,
                                            E error correct, R return)
    T|check|line|tender|amount|change
`context.columns` moves a field: `"H.total": "6"` is the 0-based position in the row.
The store is `context.store`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, BinaryIO, ClassVar

from pydantic import ValidationError

from agent.contract import (
    Discount,
    LineType,
    SourceRef,
    Tax,
    Tender,
    TenderType,
    Transaction,
    TransactionLine,
    make_key,
)

from . import register
from ._base import ParseContext, Parsed, ParseError, Skipped
from ._text import (
    HEAD_BYTES,
    choose_encoding,
    delimiter_setting,
    exact_decimal,
    first_error,
    load_json,
)

__all__ = ["MicrosParser"]

_TENDER_TYPES = {t.value: t for t in TenderType}
_OPTIONAL = {"flags", "change", "description"}
_RES_LAYOUT = {
    "H": ("check", "business_date", "closed_at", "workstation", "employee", "total", "flags"),
    "D": ("check", "line", "kind", "item", "description", "quantity", "amount", "flags"),
    "T": ("check", "line", "tender", "amount", "change"),
}


class _Check:
    """A guest check in one shape, whichever export it came from."""

    def __init__(self, place: str) -> None:
        self.place = place
        self.number = ""
        self.instance = ""  # guestCheckId
        self.store = ""
        self.register: str | None = None
        self.operator: str | None = None
        self.business_date: date | None = None
        self.closed_at: datetime | None = None
        self.total: Decimal | None = None
        self.training = False
        self.cancelled = False
        self.reopened_from: str | None = None
        self.lines: list[dict[str, Any]] = []
        self.discounts: list[dict[str, Any]] = []
        self.tenders: list[dict[str, Any]] = []
        self.taxes: list[dict[str, Any]] = []
        self.included_tax = False
        self.returns = 0


def _moment(value: str, utc: bool, context: ParseContext, place: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ParseError(f"not a date and time: {value[:40]!r}", place) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC if utc else context.timezone)
    return moment.astimezone(context.timezone)


def _day(value: str, place: str) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ParseError(f"not a date: {str(value)[:40]!r}", place) from None


def _tender_type(number: str, context: ParseContext) -> TenderType:
    mapped = context.columns.get(f"tmed.{number}", "").lower()
    return _TENDER_TYPES.get(mapped, TenderType.OTHER)


def _add_tender(
    check: _Check, number: str, amount: Decimal, change: Decimal | None, context: ParseContext
) -> None:
    if amount < 0 and change is None:
        for tender in reversed(check.tenders):
            if tender["method"] == f"tmed {number}":
                tender["change"] = (tender["change"] or Decimal(0)) - amount
                return
    check.tenders.append(
        {
            "type": _tender_type(number, context),
            "method": f"tmed {number}",
            "amount": amount,
            "change": change,
        }
    )


def _compensate(lines: list[dict[str, Any]]) -> None:
    for index, line in enumerate(lines):
        if not line["voided"] or line["amount"] >= 0:
            continue
        for earlier in reversed(lines[:index]):
            if (
                not earlier["voided"]
                and earlier["sku"] == line["sku"]
                and earlier["type"] == line["type"]
                and earlier["amount"] == -line["amount"]
            ):
                earlier["voided"] = True
                break


def _record(check: _Check, context: ParseContext) -> Parsed:
    if not check.number:
        raise ParseError("a check without a check number", check.place)
    if check.business_date is None:
        raise ParseError("a check without a business date", check.place)
    register_id = check.register
    number = f"{check.number}.{check.instance}" if check.reopened_from else check.number
    if check.training:
        return Skipped(
            "training", check.store, check.business_date, number, register_id, check.place
        )
    if check.total is None:
        raise ParseError("a check without a total", check.place)
    _compensate(check.lines)
    kind = (
        "cancel" if check.cancelled else ("return" if check.returns and check.total < 0 else "sale")
    )
    occurred = check.closed_at or datetime.combine(
        check.business_date, datetime.min.time(), context.timezone
    )
    links = []
    if check.reopened_from:
        links.append(
            {
                "transaction_id": check.reopened_from,
                "register": register_id,
                "business_date": check.business_date,
                "reason": "reopened",
                "key": make_key(
                    "sale", check.store, register_id, check.business_date, check.reopened_from
                ),
            }
        )
    try:
        lines = [TransactionLine.model_validate(ln) for ln in check.lines]
        discounts = [Discount.model_validate(d) for d in check.discounts]
        included = check.included_tax or _reconciles_without_tax(lines, discounts, check.total)
        taxes = [Tax.model_validate({**t, "included": included}) for t in check.taxes]
        currency = context.currency
        return Transaction(
            kind=kind,
            key=make_key(kind, check.store, register_id, check.business_date, number),
            store=check.store,
            register=register_id,
            operator=check.operator,
            transaction_id=number,
            business_date=check.business_date,
            occurred_at=occurred,
            source=SourceRef(file=context.file_name, position=check.place, sha256=context.sha256),
            currency=currency,
            total=check.total,
            lines=lines,
            tenders=[Tender.model_validate(t) for t in check.tenders],
            taxes=taxes,
            discounts=discounts,
            links=links,
            imbalance=Transaction.compute_imbalance(check.total, lines, taxes, discounts, currency),
            attributes={"guest_check_id": check.instance} if check.instance else {},
        )
    except ValidationError as exc:
        raise ParseError(first_error(exc), check.place) from None


def _reconciles_without_tax(
    lines: list[TransactionLine], discounts: list[Discount], total: Decimal
) -> bool:
    live = sum((ln.amount for ln in lines if not ln.voided), Decimal(0))
    return live - sum((d.amount for d in discounts), Decimal(0)) == total


# -- Simphony JSON ---------------------------------------------------------------------------


def _simphony_check(raw: Any, index: int, loc: str | None, context: ParseContext) -> _Check:
    place = f"guestChecks[{index}]"
    if not isinstance(raw, dict):
        raise ParseError("a guest check must be an object", place)
    check = _Check(place)
    check.number = str(raw.get("chkNum") or "").strip()
    check.instance = str(raw.get("guestCheckId") or "").strip()
    check.store = str(raw.get("locRef") or loc or context.store or "").strip()
    if not check.store:
        raise ParseError("no store: the export has no locRef and none is set", place)
    check.register = str(raw["rvcNum"]) if raw.get("rvcNum") is not None else None
    check.operator = str(raw["empNum"]) if raw.get("empNum") is not None else None
    day = raw.get("opnBusDt") or raw.get("clsdBusDt")
    check.business_date = _day(day, place + ".opnBusDt") if day else None
    if raw.get("clsdLcl"):
        check.closed_at = _moment(str(raw["clsdLcl"]), False, context, place + ".clsdLcl")
    elif raw.get("clsdUTC"):
        check.closed_at = _moment(str(raw["clsdUTC"]), True, context, place + ".clsdUTC")
    check.total = exact_decimal(raw.get("chkTtl"), place + ".chkTtl")
    check.training = bool(raw.get("trngFlag"))
    check.cancelled = bool(raw.get("cancelFlag"))
    reopened = raw.get("reopnFrmChk") or (raw.get("reopnClsdChkFlag") and check.number)
    check.reopened_from = str(reopened) if reopened else None
    for t_index, tax in enumerate(raw.get("taxes") or []):
        where = f"{place}.taxes[{t_index}]"
        amount = exact_decimal(tax.get("taxCollTtl"), where + ".taxCollTtl")
        if amount is None:
            continue
        check.taxes.append(
            {
                "code": str(tax.get("taxNum", "tax")),
                "rate": exact_decimal(tax.get("taxRate"), where + ".taxRate"),
                "taxable": exact_decimal(tax.get("txblSlsTtl"), where + ".txblSlsTtl"),
                "amount": amount,
            }
        )
    details = raw.get("detailLines") or []
    if not isinstance(details, list):
        raise ParseError("detailLines must be a list", place)
    for d_index, line in enumerate(details):
        _simphony_line(check, line, f"{place}.detailLines[{d_index}]", context)
    return check


def _simphony_line(check: _Check, line: Any, where: str, context: ParseContext) -> None:
    if not isinstance(line, dict):
        raise ParseError("a detail line must be an object", where)
    amount = exact_decimal(line.get("dspTtl"), where + ".dspTtl")
    if amount is None:
        amount = Decimal(0)
    voided = bool(line.get("vdFlag") or line.get("errCorFlag"))
    number = str(line.get("lineNum") or line.get("guestCheckLineItemId") or "")
    if isinstance(line.get("menuItem"), dict):
        item = line["menuItem"]
        quantity = exact_decimal(line.get("dspQty"), where + ".dspQty") or Decimal(1)
        if line.get("rtnFlag"):
            quantity, amount = -abs(quantity), -abs(amount)
            check.returns += 1
        if (exact_decimal(item.get("inclTax"), where + ".menuItem.inclTax") or 0) > 0:
            check.included_tax = True
        check.lines.append(
            {
                "number": number,
                "type": LineType.ITEM,
                "sku": str(item.get("miNum", "")),
                "quantity": quantity,
                "amount": amount,
                "voided": voided,
            }
        )
    elif isinstance(line.get("serviceCharge"), dict):
        check.lines.append(
            {
                "number": number,
                "type": LineType.SERVICE_CHARGE,
                "sku": str(line["serviceCharge"].get("svcChgNum", "")),
                "amount": amount,
                "voided": voided,
            }
        )
    elif isinstance(line.get("discount"), dict):
        if not voided:
            check.discounts.append(
                {"code": str(line["discount"].get("dscNum", "")), "amount": -amount}
            )
    elif isinstance(line.get("tenderMedia"), dict) and not voided:
        _add_tender(check, str(line["tenderMedia"].get("tmedNum", "")), amount, None, context)


def _simphony(data: bytes, context: ParseContext) -> Iterator[Parsed]:
    doc = load_json(data)
    loc = None
    if isinstance(doc, dict):
        loc = str(doc["locRef"]) if doc.get("locRef") is not None else None
        checks = doc.get("guestChecks")
    else:
        checks = doc
    if not isinstance(checks, list):
        raise ParseError("no guestChecks list: not a Simphony guest check export", "guestChecks")
    for index, raw in enumerate(checks):
        yield _record(_simphony_check(raw, index, loc, context), context)


# -- RES 3700 delimited ----------------------------------------------------------------------


def _res(data: bytes, context: ParseContext) -> Iterator[Parsed]:
    if not context.store:
        raise ParseError("no store: RES exports do not name one; set the source's store")
    encoding = choose_encoding(data[:HEAD_BYTES], context.encoding)
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise ParseError(f"the text is not valid {encoding}", f"byte {exc.start}") from None
    first = text.lstrip().split("\n", 1)[0]
    delimiter = delimiter_setting(context.delimiter) or ("|" if "|" in first else ",")
    layout = {
        kind: {
            name: int(context.columns.get(f"{kind}.{name}", pos + 1))
            for pos, name in enumerate(names)
        }
        for kind, names in _RES_LAYOUT.items()
    }
    checks: dict[str, _Check] = {}
    order: list[str] = []
    for number, row in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), start=1):
        if not row or not "".join(row).strip():
            continue
        kind = row[0].strip().upper()
        if kind not in layout:
            raise ParseError(f"unknown row type {row[0][:10]!r} (H, D or T)", f"line {number}")
        fields = layout[kind]
        needed = 1 + max(p for n, p in fields.items() if n not in _OPTIONAL)
        if len(row) < needed:
            raise ParseError(
                f"a {kind} row needs {needed} fields, found {len(row)}", f"line {number}"
            )

        def get(name: str, row: list[str] = row, fields: dict[str, int] = fields) -> str:
            pos = fields[name]
            return row[pos].strip() if pos < len(row) else ""

        place = f"line {number}"
        check_no = get("check")
        if not check_no:
            raise ParseError("no check number", place)
        if kind == "H":
            check = checks.setdefault(check_no, _Check(place))
            if check_no not in order:
                order.append(check_no)
            check.place, check.number, check.store = place, check_no, context.store
            check.business_date = _day(get("business_date"), place)
            closed = get("closed_at")
            check.closed_at = _moment(closed, False, context, place) if closed else None
            check.register = get("workstation") or None
            check.operator = get("employee") or None
            check.total = exact_decimal(get("total"), place)
            flags = get("flags").upper()
            check.training, check.cancelled = "T" in flags, "C" in flags
            continue
        found = checks.get(check_no)
        if found is None:
            raise ParseError(f"a {kind} row for check {check_no} before its H row", place)
        check = found
        amount = exact_decimal(get("amount"), place) or Decimal(0)
        if kind == "T":
            _add_tender(check, get("tender"), amount, exact_decimal(get("change"), place), context)
            continue
        flags = get("flags").upper()
        voided = "V" in flags or "E" in flags
        line_kind = get("kind").upper() or "M"
        if line_kind == "D":
            if not voided:
                check.discounts.append({"code": get("item"), "amount": abs(amount)})
            continue
        quantity = exact_decimal(get("quantity"), place) or Decimal(1)
        if "R" in flags:
            quantity, amount = -abs(quantity), -abs(amount)
            check.returns += 1
        check.lines.append(
            {
                "number": get("line"),
                "sku": get("item"),
                "description": get("description"),
                "type": LineType.SERVICE_CHARGE if line_kind == "S" else LineType.ITEM,
                "quantity": quantity,
                "amount": amount,
                "voided": voided,
            }
        )
    if not order:
        raise ParseError("no check header (H) rows", "line 1")
    for check_no in order:
        yield _record(checks[check_no], context)


class MicrosParser:
    """MICROS Simphony guest checks (JSON) and RES 3700 delimited exports."""

    name: ClassVar[str] = "micros"

    def sniff(self, head: bytes) -> bool:
        start = head.lstrip()[:1]
        if start in (b"{", b"["):
            return b'"guestChecks"' in head or (b'"chkNum"' in head and b'"detailLines"' in head)
        first = head.lstrip().split(b"\n", 1)[0]
        return first[:2] in (b"H|", b"H,") and first.count(first[1:2]) >= 6

    def parse(self, stream: BinaryIO, *, context: ParseContext) -> Iterator[Parsed]:
        data = stream.read()  # checks are small; a day's export is a few MB
        if not data.strip():
            raise ParseError("the file is empty", "byte 0")
        if b"\0" in data[:HEAD_BYTES] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise ParseError("the file is binary, not a MICROS export", f"byte {data.index(0)}")
        if data.lstrip()[:1] in (b"{", b"["):
            return _simphony(data, context)
        return _res(data, context)


register(MicrosParser())
