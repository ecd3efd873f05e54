"""Values the inventory parsers (`inventory` CSV, `oms` XML) read the same way:
quantities, count times, the date stamp a file's name may carry, and a stream that
replays the bytes read to detect the encoding.

Importing this module registers no parser, so it does not disturb the sniffing order.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

from ._base import Chain

__all__ = ["Chain", "Moment", "moment_from_name", "parse_moment", "parse_quantity", "stamp"]

_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")  # ASCII digits only
_COMMA_NUMBER = re.compile(r"[+-]?[0-9]+,[0-9]+")
_DOTTED = re.compile(
    r"(\d{1,2})\.(\d{1,2})\.(\d{4})(?:[ T](\d{1,2}):(\d{2})(?::(\d{2}))?)?",
)
_DATE_ONLY = re.compile(r"\d{4}-?\d{2}-?\d{2}")
_NAME_STAMP = re.compile(
    r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})"
    r"(?:[T_ -]?(\d{2})[:-]?(\d{2})(?:[:-]?(\d{2}))?)?(?!\d)"
)


@dataclass(frozen=True, slots=True)
class Moment:
    """A count or movement time: aware, in the store's zone unless the file gave an offset."""

    at: datetime
    has_time: bool

    def local_date(self, zone: zoneinfo.ZoneInfo) -> date:
        """The calendar day of this moment in the store's zone."""
        return self.at.astimezone(zone).date()


def parse_quantity(text: str, *, decimal_comma: bool = False) -> Decimal | None:
    """A plain decimal ("12", "-3", "0.250"); None when the text is not one.

    Exponents, NaN, infinities, underscores and digits other than 0-9 are refused; "-0"
    is 0. With `decimal_comma`, "12,5" reads as 12.5 (semicolon- and tab-separated
    exports from European locales write it so).
    """
    value = text.strip()
    if _NUMBER.fullmatch(value):
        result = Decimal(value)
    elif decimal_comma and _COMMA_NUMBER.fullmatch(value):
        result = Decimal(value.replace(",", "."))
    else:
        return None
    return result.copy_abs() if not result and result.is_signed() else result  # "-0" is 0


def parse_moment(text: str, zone: zoneinfo.ZoneInfo) -> Moment:
    """ISO 8601 (date, or date and time, with or without offset) or `DD.MM.YYYY[ HH:MM[:SS]]`.

    A time without offset is local to `zone`; a date alone means the start of that day.
    Raises ValueError saying what was expected; dates with slashes are refused because
    day/month and month/day cannot be told apart.
    """
    value = text.strip()
    if not value:
        raise ValueError("the date is empty")
    if "/" in value:
        raise ValueError(
            f"{value!r} is ambiguous (day/month or month/day); use YYYY-MM-DD or DD.MM.YYYY"
        )
    dotted = _DOTTED.fullmatch(value)
    if dotted:
        day, month, year, hour, minute, second = dotted.groups()
        try:
            naive = datetime(
                int(year),
                int(month),
                int(day),
                int(hour or 0),
                int(minute or 0),
                int(second or 0),
            )
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid date: {exc}") from None
        return Moment(naive.replace(tzinfo=zone), has_time=hour is not None)
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a date or time (expected ISO 8601 such as 2024-03-15T18:30:00)"
        ) from None
    has_time = not _DATE_ONLY.fullmatch(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return Moment(parsed, has_time=has_time)


def moment_from_name(file_name: str, zone: zoneinfo.ZoneInfo) -> Moment | None:
    """The date (and time) stamped in a file name, `onhand_20240315.csv` or
    `INV_2024-03-15_181500.xml`, local to `zone`; None when the name carries none."""
    for match in _NAME_STAMP.finditer(file_name):
        year, month, day, hour, minute, second = match.groups()
        try:
            day_ = date(int(year), int(month), int(day))
            clock = time(int(hour or 0), int(minute or 0), int(second or 0))
        except ValueError:
            continue
        if not 2000 <= day_.year <= 2099:
            continue
        return Moment(datetime.combine(day_, clock, tzinfo=zone), has_time=hour is not None)
    return None


def stamp(moment: Moment) -> str:
    """A compact UTC stamp of a moment (`20240315T173000Z`), used as a key reference."""
    utc = moment.at.astimezone(zoneinfo.ZoneInfo("UTC"))
    text = utc.strftime("%Y%m%dT%H%M%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"
