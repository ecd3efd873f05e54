"""One unreadable transaction as a `refused` record, so the rest of its file still flows.

A parser that reads a file transaction by transaction catches the refusal of one and
hands it here with what it could still make out (store, register, number, day, time);
the record keeps the raw fragment, the place and the reason for the exception queue.
The key is deterministic: the same transaction refused again gives the same key.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from typing import Any
from xml.etree import ElementTree as ET
from xml.etree.ElementTree import Element

from contract import Limits, Record, Refused, check_text, make_key

from ._base import ParseContext

__all__ = [
    "FRAGMENT_CHARS",
    "RECOVERABLE",
    "bounded",
    "json_fragment",
    "lenient_day",
    "lenient_time",
    "refused",
    "xml_fragment",
]

FRAGMENT_CHARS = 64 * 1024
# What reading one transaction may raise besides ParseError: a shape nobody anticipated.
RECOVERABLE: tuple[type[Exception], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    LookupError,
    ArithmeticError,
)
# Elements whose text is a person's contact detail: blanked in a kept fragment.
_CONTACT = frozenset(
    {
        "Name",
        "FirstName",
        "LastName",
        "FullName",
        "OfficialName",
        "EMail",
        "EMailAddress",
        "Email",
        "Telephone",
        "FullTelephoneNumber",
        "PhoneNumber",
        "Address",
        "AddressLine",
        "City",
        "PostalCode",
        "BirthDayMonth",
        "BirthYear",
        "BirthDate",
    }
)
# Parts of a JSON key that name a person's contact detail (Magento's customer_email,
# billing_address, telephone, customer_firstname, …): blanked in a kept fragment.
_CONTACT_KEYS = (
    "email",
    "phone",
    "firstname",
    "lastname",
    "middlename",
    "first_name",
    "last_name",
    "street",
    "postcode",
    "address",
    "birth",
    "dob",
    "fax",
    "city",
    "remote_ip",
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def lenient_day(value: str | None) -> date | None:
    """A business day if `value` starts with one, else None (never raises)."""
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()[:10])
    except ValueError:
        return None


def lenient_time(value: str | None, context: ParseContext) -> datetime | None:
    """A timestamp if `value` is one (local to the store without an offset), else None."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=context.timezone)


def xml_fragment(element: Element) -> str:
    """The element as XML, contact details blanked, cut at FRAGMENT_CHARS."""
    for found in element.iter():
        if found.tag.rpartition("}")[2] in _CONTACT:
            found.text = "(blanked)" if (found.text or "").strip() else found.text
            found.attrib.clear()
            for child in list(found):
                found.remove(child)
    return ET.tostring(element, encoding="unicode")[:FRAGMENT_CHARS]


def json_fragment(raw: Any) -> str:
    """A JSON value as text, contact details blanked, cut at FRAGMENT_CHARS. Numbers
    read exactly (Decimal) come back as strings."""
    try:
        text = json.dumps(_blanked(raw), ensure_ascii=False, default=str)
    except ValueError:  # a structure json cannot write (a cycle): what Python says of it
        text = repr(raw)
    return text[:FRAGMENT_CHARS]


def _blanked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "(blanked)"
            if isinstance(key, str) and any(part in key.lower() for part in _CONTACT_KEYS)
            else _blanked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_blanked(item) for item in value]
    return value


def refused(
    fmt: str,
    context: ParseContext,
    place: str,
    reason: str,
    fragment: str,
    *,
    store: str | None = None,
    register: str | None = None,
    transaction_id: str | None = None,
    business_date: date | None = None,
    occurred_at: datetime | None = None,
    fallback_time: datetime | None = None,
) -> Refused:
    """The `refused` record of one transaction. Without its own time it takes the day's
    midnight, else the time of the transaction read before it (`fallback_time`)."""
    store = store or context.store or "unknown"
    if occurred_at is None and business_date is not None:
        occurred_at = datetime(
            business_date.year, business_date.month, business_date.day, tzinfo=context.timezone
        )
    occurred_at = occurred_at or fallback_time or _EPOCH
    business_date = business_date or occurred_at.date()
    if transaction_id:
        key = make_key("refused", store, register, business_date, transaction_id)
    else:
        where = context.sha256[:16] or context.file_name
        key = f"refused:{store}:{where}:{place}"
    values: dict[str, Any] = {
        "kind": "refused",
        "key": key,
        "store": store,
        "business_date": business_date,
        "occurred_at": occurred_at,
        "source": {"file": context.file_name, "position": place, "sha256": context.sha256},
        "format": fmt,
        "register": register,
        "transaction_id": transaction_id,
        "place": place,
        "reason": reason,
        "fragment": fragment[:FRAGMENT_CHARS],
    }
    return Refused.model_validate(values)


def bounded(record: Record, text: str, limits: Limits) -> tuple[Record, str]:
    """`record` and its JSON `text` when both are within `limits` (the relay's, so that the
    agent never sends what the relay refuses); else the `refused` record of it, with the
    limit it is over as its reason and its own JSON, cut, as its fragment."""
    over = check_text(text, limits)
    if over is None:
        return record, text
    if isinstance(record, Refused):
        over_again = record  # a refusal's fragment or reason is what is over: cut them
    else:
        register = getattr(record, "register", None)
        number = getattr(record, "transaction_id", None)
        source = record.source
        if number:
            key = make_key("refused", record.store, register, record.business_date, number)
        else:
            key = f"refused:{record.store}:{source.sha256[:16] or source.file}:{source.position}"
        over_again = Refused.model_validate(
            {
                "kind": "refused",
                "key": key[:512],
                "store": record.store,
                "business_date": record.business_date,
                "occurred_at": record.occurred_at,
                "source": source,
                "format": "limits",
                "register": register,
                "transaction_id": number,
                "place": source.position,
                "reason": f"over a limit: {over}",
                "fragment": text,
            }
        )
    keep = min(FRAGMENT_CHARS, limits.string_chars) // 2
    cut = over_again.model_copy(
        update={
            "reason": over_again.reason[:keep],
            "fragment": over_again.fragment[:keep],
        }
    )
    text = cut.model_dump_json()
    if check_text(text, limits) is None:
        return cut, text
    # What is over is an identifier the refusal repeats (a register "1e-70000000", a file
    # name of fifty digits): the refusal names the transaction by its place alone.
    source = cut.source
    plain = cut.model_copy(
        update={
            "key": f"refused:{cut.store}:{source.sha256[:16]}:{source.position}"[:512],
            "register": None,
            "transaction_id": None,
            "source": source.model_copy(update={"file": f"sha256-{source.sha256[:16]}"})
            if check_text(source.model_dump_json(), limits) is not None
            else source,
        }
    )
    return plain, plain.model_dump_json()
