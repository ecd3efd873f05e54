"""What every XML parser here shares: one wording for refusals, local element names, and
a guard on the raw bytes.

No DTD entity is expanded and no external resource is fetched (defusedxml, or no DTD at
all where a format has no use for one); an XML bomb, an external entity, truncated or
malformed XML and an unreadable encoding all become a ParseError that names the place.
The guard looks at each chunk before the parser does: a DTD anywhere (where the format
takes none) and text or a tag far longer than any field may be (a 50 MB attribute) are
refused before the parser spends time on them, with two byte searches per chunk.
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Iterator
from typing import BinaryIO, cast
from xml.etree.ElementTree import ParseError as XmlError

from defusedxml import DefusedXmlException, EntitiesForbidden, ExternalReferenceForbidden

from ._base import Parsed, ParseError

__all__ = ["RawGuard", "guarded", "local", "longest_run", "refusing_unsafe_xml"]

_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*?\sencoding\s*=\s*["']([A-Za-z0-9._-]{1,40})["']""")
_DTD_WORDS = ("<!DOCTYPE", "<!ENTITY")
# Raw bytes between two `<` beyond which text or a tag is refused, per character of the
# string limit: a character takes up to 4 bytes in UTF-8 and up to 10 as a reference
# (&#x10FFFF;), so a field within the limit always fits.
_BYTES_PER_CHAR = 16


def longest_run(string_chars: int) -> int:
    """Most raw bytes of one text or tag the guard lets through."""
    return _BYTES_PER_CHAR * string_chars


class RawGuard:
    """Checks the raw bytes of one XML document chunk by chunk, in the encoding its first
    bytes say: refuses a DTD (when `dtd` is False) and a run of more than `longest` bytes
    without a `<` (text, or a tag with its attributes). Only runs that reach past a chunk
    are measured (a find from each end): one inside a chunk is no longer than the chunk,
    so the parser's work stays bounded all the same."""

    def __init__(self, head: bytes, longest: int, *, dtd: bool) -> None:
        encoding = _encoding(head)
        self.longest = longest
        self.opening = "<".encode(encoding)
        self.needles = [] if dtd else [word.encode(encoding) for word in _DTD_WORDS]
        self.overlap = max((len(n) for n in self.needles), default=1) - 1
        self.tail = b""
        self.run = 0
        self.offset = 0

    def check(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self.needles:
            probe = self.tail + chunk[: self.overlap]
            for needle in self.needles:
                if needle in chunk or needle in probe:
                    raise ParseError(
                        "the XML declares a DTD; refused (entities and external references "
                        "are never expanded)",
                        "DOCTYPE",
                    )
            self.tail = chunk[-self.overlap :]
        first = chunk.find(self.opening)
        self.run += first if first >= 0 else len(chunk)
        if self.run > self.longest:
            end = self.offset + (first if first >= 0 else len(chunk))
            raise ParseError(
                f"text or a tag of more than {self.longest} bytes, far over any field's "
                "limit (agent.limits.string_chars); refused",
                f"byte {end - self.run}",
            )
        if first >= 0:
            self.run = len(chunk) - chunk.rfind(self.opening) - len(self.opening)
        self.offset += len(chunk)


def _encoding(head: bytes) -> str:
    """The encoding to look for markup in: the BOM's, else the declaration's when it
    writes ASCII as ASCII (else refused: the guard could not see a DTD), else UTF-8."""
    if head.startswith((codecs.BOM_UTF16_LE, b"<\0?\0")):
        return "utf-16-le"
    if head.startswith((codecs.BOM_UTF16_BE, b"\0<\0?")):
        return "utf-16-be"
    found = _DECLARED.match(head)
    if found is None:
        return "utf-8"
    name = found.group(1).decode("ascii")
    try:
        markup = "".join(_DTD_WORDS).encode(name)
    except (LookupError, UnicodeError):
        return "utf-8"  # the parser refuses an encoding it does not know, with its name
    if name.lower().replace("_", "-").startswith(("utf-16", "utf16")):
        return "utf-16-le"  # declared without a BOM: expat takes it as little-endian
    if markup != "".join(_DTD_WORDS).encode("ascii"):
        raise ParseError(f"the XML's encoding {name!r} is not one a POS export uses; refused")
    return "utf-8"


class _Guarded(io.RawIOBase):
    def __init__(self, stream: BinaryIO, guard: RawGuard) -> None:
        self._stream = stream
        self._guard = guard

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._stream.read(len(buffer))
        self._guard.check(chunk)
        buffer[: len(chunk)] = chunk
        return len(chunk)


def guarded(head: bytes, stream: BinaryIO, longest: int, *, dtd: bool) -> BinaryIO:
    """`stream` (which starts with `head`) read through a RawGuard."""
    return cast(BinaryIO, io.BufferedReader(_Guarded(stream, RawGuard(head, longest, dtd=dtd))))


def refusing_unsafe_xml(items: Iterator[Parsed]) -> Iterator[Parsed]:
    """`items`, with XML-level failures turned into ParseError."""
    try:
        yield from items
    except EntitiesForbidden:
        raise ParseError(
            "the XML declares entities; refused (entities and external references are "
            "never expanded)",
            "DOCTYPE",
        ) from None
    except ExternalReferenceForbidden:
        raise ParseError("the XML references an external resource; refused") from None
    except DefusedXmlException as exc:
        raise ParseError(f"the XML uses a refused feature ({type(exc).__name__})") from None
    except (LookupError, UnicodeError) as exc:
        raise ParseError(f"the XML's text encoding cannot be read: {exc}") from None
    except XmlError as exc:
        line, column = exc.position
        what = str(exc).rsplit(": line ", 1)[0]
        raise ParseError(f"malformed XML: {what}", f"line {line}, column {column}") from None


def local(tag: str) -> str:
    """An element's name without its namespace: POSLog comes with and without one."""
    return tag.rpartition("}")[2] if tag[:1] == "{" else tag.rpartition(":")[2]
