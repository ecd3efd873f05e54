"""The parser seam: a parser turns a POS export into canonical records.

Parsers are pure: they read the stream they are given and nothing else (no
clock, no files, no globals), so golden files pin their behaviour exactly.
"""

from __future__ import annotations

import dataclasses
import io
import zoneinfo
from collections.abc import Iterator
from datetime import date
from typing import BinaryIO, ClassVar, Literal, Protocol, cast

from contract import Limits, Record

__all__ = ["Chain", "ParseContext", "ParseError", "Parsed", "Parser", "Skipped", "rewound"]


class ParseError(Exception):
    """The parser refuses the input. `place` says where (line 12, /POSLog/Transaction[3])."""

    def __init__(self, reason: str, place: str = "") -> None:
        super().__init__(f"{place}: {reason}" if place else reason)
        self.reason = reason
        self.place = place


@dataclasses.dataclass(frozen=True, slots=True)
class ParseContext:
    """What a parser may know besides the bytes: set by the source's config."""

    file_name: str
    sha256: str = ""
    store: str | None = None
    timezone: zoneinfo.ZoneInfo = dataclasses.field(
        default_factory=lambda: zoneinfo.ZoneInfo("UTC")
    )
    currency: str = "EUR"
    encoding: str | None = None
    delimiter: str | None = None
    columns: dict[str, str] = dataclasses.field(default_factory=dict)
    limits: Limits = dataclasses.field(default_factory=Limits)
    """The relay's limits: XML parsers refuse text or a tag far over `string_chars`."""
    transactions_per_file: int = 1_000_000
    """Most transactions (records and skipped ones) one file may hold; past it the file is
    refused whole."""
    thousands: str = ""
    """The thousands separator the source's exports write in amounts ("," or "."), if any."""


@dataclasses.dataclass(frozen=True, slots=True)
class Skipped:
    """A POS transaction that is counted but not forwarded (training, till control, …)."""

    reason: Literal["training", "control", "suspended", "duplicate_in_file"]
    store: str
    business_date: date | None
    transaction_id: str
    register: str | None = None
    place: str = ""


Parsed = Record | Skipped


class Parser(Protocol):
    """One POS format. `parse` yields records lazily so large files stay in bounded memory;
    it raises ParseError on input it refuses (the caller discards what was yielded)."""

    name: ClassVar[str]

    def sniff(self, head: bytes) -> bool:
        """True when the first bytes of a file look like this format."""
        ...

    def parse(self, stream: BinaryIO, *, context: ParseContext) -> Iterator[Parsed]: ...


class Chain(io.RawIOBase):
    """The bytes already read (to sniff or check a file), then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head.nbytes:
            n = min(len(buffer), self._head.nbytes)
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        chunk = self._rest.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def rewound(head: bytes, rest: BinaryIO) -> BinaryIO:
    """A buffered stream that reads `head` again before the rest."""
    return cast(BinaryIO, io.BufferedReader(Chain(head, rest)))
