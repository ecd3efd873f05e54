"""Oracle MICROS guest checks: Simphony's Reporting & Analytics `getGuestChecks` JSON, and
RES 3700 delimited check exports.

Simphony JSON (`{"locRef": …, "curUTC": …, "guestChecks": [{…}]}`, or a bare list of checks):
- A check: `chkNum` (the transaction id), `guestCheckId`, `opnBusDt` (business day;
  `clsdBusDt` when it is missing), `clsdUTC`/`clsdLcl` (when it closed; `…UTC` is UTC,
  `…Lcl` local to `context.timezone`; UTC wins when both are there), `chkTtl` (the total,
  never rewritten), `rvcNum` (revenue center: the register), `empNum` (operator),
  `taxes[]` (`taxNum`, `txblSlsTtl`, `taxCollTtl`, `taxRate`), `detailLines[]`.
  `tblNum`, `gstCnt`, `otNum` and the workstation (`wsNum` of the check, else of its
  last detail line) are kept as attributes.
- The store is the check's or the export's `locRef`, else `context.store`.
- `clsdFlag: false` (or, without the flag, no close time or day) is a check still open:
  skipped as suspended (it is forwarded once closed). `cancelFlag` makes a `cancel`; a
  training check (`trngFlag`, `trainingFlag`) is skipped as training.
- A detail line carries one of `menuItem` (`miNum`; `inclTax` > 0 means the tax is in the
  price), `serviceCharge` (`svcChgNum`), `discount` (`dscNum`; attached to the item its
  `parDtlId` names, else a check discount) or `tenderMedia` (`tmedNum`); lines with none
  (`errorCorrect`, `other`) carry no money of the check and are left out. The amount is
  `dspTtl` (`aggTtl` when missing), the quantity `dspQty`. `vdFlag` and `errCorFlag` keep
  the line, flagged voided; a voided line of the opposite sign also voids the earlier line
  it takes back. `rtnFlag`/`returnFlag` marks a returned item (negative); a check whose
  total is negative with returned items is a `return`.
- Tender media numbers are the property's own: `context.columns` maps them to tender
  types (`"tmed.101": "card"`); unmapped media are typed from their `name` when the export
  includes it, else "other". A negative tender after one of the same media is change.
- Keys are `kind:locRef:rvcNum:opnBusDt:chkNum`. A reopened check (`reopnClsdChkFlag`)
  closed again is the same check, so it keeps its key whatever business day it closes
  on: re-exports never double it. Its record says `reopened` (and `closed_business_date`
  when it closed on another day) in its attributes. Within one file the latest state of
  a check wins and earlier states are skipped as `duplicate_in_file`.
- An error body of the reporting API (`{"status": 4xx, "title": …}`) is refused.

RES 3700 delimited (`|` or `,`; `context.delimiter` overrides), one row per record, the
first field says which:
    H|check|business_date|closed_at|workstation|employee|total|flags
        flags: T training, C cancelled, O open, R reopened
    D|check|line|kind|item|description|quantity|amount|flags
        kind: M item (default), D discount, S service charge; flags: V void,
        E error correct, R return
    T|check|line|tender|amount|change
`context.columns` moves a field: `"H.total": "6"` is its position in the row (0 is the
row type). Times are local to `context.timezone`. The workstation is the register. RES
exports do not name the store: `context.store` is required. Tender codes map like
Simphony's (`"tmed.VISA": "card"`), else by their name.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, BinaryIO, ClassVar

from .._base import ParseContext, Parsed, ParseError
from .._refuse import RECOVERABLE, json_fragment, lenient_day, lenient_time, refused
from .._tabular import amount, flag, ident, read_json, refuse_binary, sniff_head
from .._text import HEAD_BYTES, Repeated, refuse_repeated
from ._check import Check, Detail, day, moment, records
from ._res import read_res

__all__ = ["MicrosParser"]

_ATTRIBUTES = (
    ("wsNum", "workstation"),
    ("tblNum", "table"),
    ("gstCnt", "guests"),
    ("otNum", "order_type"),
)
_SETTINGS = "columns"  # the place of a refusal that is the source's config, not the file
_KINDS = (
    ("menuItem", "item", ("miNum",)),
    ("serviceCharge", "service_charge", ("svcChgNum",)),
    ("discount", "discount", ("dscNum",)),
    ("tenderMedia", "tender", ("tmedNum", "tndMdNum")),
)


def _text(raw: dict[str, Any], *names: str) -> str:
    return next((ident(raw[n]) for n in names if ident(raw.get(n))), "")


def _simphony_check(raw: Any, place: str, loc: str, context: ParseContext) -> Check:
    if not isinstance(raw, dict):
        raise ParseError("a guest check must be an object", place)
    check = Check(place, number=_text(raw, "chkNum"), instance=_text(raw, "guestCheckId"))
    check.store = _text(raw, "locRef") or loc or (context.store or "")
    if not check.store:
        raise ParseError("no store: the export has no locRef and the source sets none", place)
    check.register = _text(raw, "rvcNum") or None
    check.operator = _text(raw, "empNum") or None
    for field in ("opnBusDt", "clsdBusDt"):
        if raw.get(field):
            check.business_date = day(raw[field], f"{place}.{field}")
            break
    check.closed_at = _when(raw, "clsd", place, context)
    check.opened_at = _when(raw, "opn", place, context)
    check.total = amount(raw.get("chkTtl"), f"{place}.chkTtl")
    check.training = flag(raw.get("trngFlag")) or flag(raw.get("trainingFlag"))
    check.cancelled = flag(raw.get("cancelFlag"))
    check.reopened = flag(raw.get("reopnClsdChkFlag"))
    closed = raw.get("clsdFlag")
    if closed is not None:
        check.open = not flag(closed)
    else:
        check.open = check.closed_at is None and not raw.get("clsdBusDt")
    for key, name in _ATTRIBUTES:
        if ident(raw.get(key)):
            check.attributes[name] = ident(raw[key])
    closed_day = ident(raw.get("clsdBusDt"))[:10]
    if check.business_date and closed_day and closed_day != check.business_date.isoformat():
        check.attributes["closed_business_date"] = closed_day
    taxes = raw.get("taxes") or []
    if not isinstance(taxes, list):
        raise ParseError("taxes must be a list", f"{place}.taxes")
    for index, tax in enumerate(taxes):
        _simphony_tax(check, tax, f"{place}.taxes[{index}]")
    details = raw.get("detailLines") or []
    if not isinstance(details, list):
        raise ParseError("detailLines must be a list", f"{place}.detailLines")
    for index, line in enumerate(details):
        _simphony_line(check, line, index, f"{place}.detailLines[{index}]")
    if "workstation" not in check.attributes:
        # Checks move between workstations; the last line's is where the check closed.
        stations = [ident(d.get("wsNum")) for d in details if isinstance(d, dict)]
        if any(stations):
            check.attributes["workstation"] = [w for w in stations if w][-1]
    return check


def _when(raw: dict[str, Any], prefix: str, place: str, context: ParseContext) -> datetime | None:
    for suffix, utc in (("UTC", True), ("Lcl", False)):
        value = raw.get(prefix + suffix)
        if value:
            return moment(value, utc, context, f"{place}.{prefix}{suffix}")
    return None


def _simphony_tax(check: Check, tax: Any, where: str) -> None:
    if not isinstance(tax, dict):
        raise ParseError("a tax must be an object", where)
    collected = amount(tax.get("taxCollTtl"), where + ".taxCollTtl")
    if collected is None:
        return
    check.taxes.append(
        {
            "code": _text(tax, "taxNum", "num") or "tax",
            "rate": amount(tax.get("taxRate"), where + ".taxRate"),
            "taxable": amount(tax.get("txblSlsTtl"), where + ".txblSlsTtl"),
            "amount": collected,
        }
    )


def _simphony_line(check: Check, line: Any, index: int, where: str) -> None:
    if not isinstance(line, dict):
        raise ParseError("a detail line must be an object", where)
    found = next(((k, kind, ids) for k, kind, ids in _KINDS if isinstance(line.get(k), dict)), None)
    if found is None:
        return  # error correct references, reference entries: no money of the check
    key, kind, ids = found
    obj: dict[str, Any] = line[key]
    total = line.get("dspTtl") if line.get("dspTtl") is not None else line.get("aggTtl")
    value = amount(total, where + ".dspTtl") or Decimal(0)
    quantity = amount(line.get("dspQty"), where + ".dspQty")
    returned = any(flag(src.get("rtnFlag") or src.get("returnFlag")) for src in (line, obj))
    if kind == "item" and returned:
        value, quantity = -abs(value), -abs(quantity or Decimal(1))
        check.returns += 1
    if (amount(obj.get("inclTax"), f"{where}.{key}.inclTax") or 0) > 0:
        check.included_tax = True
    name = obj.get("name")
    ref = _text(obj, *ids)
    check.details.append(
        Detail(
            kind,
            _text(line, "lineNum", "guestCheckLineItemId") or str(index + 1),
            ref,
            value,
            quantity=quantity if quantity is not None else Decimal(1),
            voided=flag(line.get("vdFlag")) or flag(line.get("errCorFlag")),
            description=name.strip() if isinstance(name, str) else "",
            detail_id=_text(line, "dtlId"),
            parent=_text(line, "parDtlId"),
            method=f"tmed {ref}" if kind == "tender" else "",
        )
    )


def _simphony(data: bytes, context: ParseContext) -> Iterator[Parsed]:
    repeats: list[str] = []
    doc = read_json(data, repeats)
    loc = ""
    if isinstance(doc, dict):
        if (
            "guestChecks" not in doc
            and doc.get("status")
            and (doc.get("title") or doc.get("detail"))
        ):
            reason = ident(doc.get("title")) or ident(doc.get("detail"))
            raise ParseError(f"the export is an error response of the reporting API: {reason}")
        loc = ident(doc.get("locRef"))
        checks = doc.get("guestChecks")
    else:
        checks = doc
    if not isinstance(checks, list):
        raise ParseError("no guestChecks list: not a Simphony guest check export", "guestChecks")
    built: list[Check] = []
    kept: list[Any] = []  # the raw check of each one built, for its fragment if refused
    for index, raw in enumerate(checks):
        place = f"guestChecks[{index}]"
        try:
            if repeats:
                refuse_repeated(raw, place)  # which value the POS meant cannot be known
            built.append(_simphony_check(raw, place, loc, context))
            kept.append(raw)
        except ParseError as exc:
            if exc.place == _SETTINGS:
                raise
            # One unreadable check never holds back the rest of the file.
            yield _refused(raw, exc.place or place, exc.reason, loc, context)
        except RECOVERABLE as exc:
            reason = f"unreadable check ({type(exc).__name__}: {exc})"
            yield _refused(raw, place, reason, loc, context)

    def refuse(index: int, exc: ParseError) -> Parsed:
        if exc.place == _SETTINGS:
            raise exc  # the source's settings are wrong, not this check: refuse the file
        return _refused(kept[index], exc.place or built[index].place, exc.reason, loc, context)

    yield from records(built, context, refuse)


def _refused(raw: Any, place: str, reason: str, loc: str, context: ParseContext) -> Parsed:
    """The `refused` record of a guest check, with what it still says about itself."""
    # An object that repeats a key says nothing certain about itself (not even its store).
    fields = raw if isinstance(raw, dict) and not isinstance(raw, Repeated) else {}
    business = None
    for name in ("opnBusDt", "clsdBusDt"):
        business = business or lenient_day(ident(fields.get(name)))
    occurred = None
    for name in ("clsdUTC", "clsdLcl", "opnUTC", "opnLcl"):
        occurred = occurred or lenient_time(ident(fields.get(name)), context)
    return refused(
        "micros",
        context,
        place,
        reason,
        json_fragment(raw),
        store=_text(fields, "locRef") or loc or None,
        register=_text(fields, "rvcNum") or None,
        transaction_id=_text(fields, "chkNum") or None,
        business_date=business,
        occurred_at=occurred,
    )


class MicrosParser:
    """MICROS Simphony guest checks (JSON) and RES 3700 delimited exports."""

    name: ClassVar[str] = "micros"

    def sniff(self, head: bytes) -> bool:
        start = head = sniff_head(head)
        if start[:1] in (b"{", b"["):
            return b'"guestChecks"' in head or (b'"chkNum"' in head and b'"detailLines"' in head)
        first = start.split(b"\n", 1)[0]
        return first[:2] in (b"H|", b"H,") and first.count(first[1:2]) >= 6

    def parse(self, stream: BinaryIO, *, context: ParseContext) -> Iterator[Parsed]:
        data = stream.read()  # checks are small; a day's export is a few MB
        if not data.strip():
            raise ParseError("the file is empty", "byte 0")
        refuse_binary(data[:HEAD_BYTES], "a MICROS export")
        if sniff_head(data[:HEAD_BYTES])[:1] in (b"{", b"["):
            return _simphony(data, context)
        return read_res(data, context)
