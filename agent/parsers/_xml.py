"""What every XML parser here shares: safe streaming and one wording for refusals.

No DTD entity is expanded and no external resource is fetched (defusedxml, or no DTD at
all where a format has no use for one); an XML
bomb, an external entity, truncated or malformed XML and an unreadable encoding all
become a ParseError that names the place.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import BinaryIO, Literal
from xml.etree.ElementTree import Element
from xml.etree.ElementTree import ParseError as XmlError

from defusedxml import DefusedXmlException, EntitiesForbidden, ExternalReferenceForbidden

from ._base import Parsed, ParseError, rewound

__all__ = ["child", "children", "local", "refusing_unsafe_xml", "safe_iterparse", "text"]

_PROLOGUE = 64 * 1024
_DOCTYPE = re.compile(rb"<!\s*DOCTYPE|<!\s*ENTITY", re.IGNORECASE)
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")


def safe_iterparse(
    stream: BinaryIO, events: tuple[Literal["start", "end"], ...]
) -> Iterator[tuple[str, Element]]:
    """The standard library's fast (C) iterparse, for documents that must not declare a DTD.

    Entities can only be declared, and external resources only named, in a DTD, which
    can only come before the root element; so a document whose prologue has none cannot
    carry an XML bomb or an external entity, and one that has one is refused outright.
    """
    head = stream.read(_PROLOGUE)
    probe = head
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        probe = head.decode("utf-16", errors="replace").encode("utf-8", errors="replace")
    first = _FIRST_ELEMENT.search(probe)
    if _DOCTYPE.search(probe[: first.start()] if first else probe):
        raise ParseError(
            "the XML declares a DTD; refused (entities and external references are never expanded)",
            "DOCTYPE",
        )
    return ET.iterparse(rewound(head, stream), events=events)  # noqa: S314 - no DTD, checked above


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


def child(element: Element, name: str) -> Element | None:
    """The first child named `name` (the parser has made tags local names by then)."""
    for item in element:
        if item.tag == name:
            return item
    return None


def children(element: Element, name: str) -> list[Element]:
    return [item for item in element if item.tag == name]


def text(element: Element | None, *path: str) -> str | None:
    """Stripped text at `path` below `element`, or None when absent or blank."""
    for name in path:
        if element is None:
            return None
        element = child(element, name)
    if element is None or element.text is None:
        return None
    value = element.text.strip()
    return value or None
