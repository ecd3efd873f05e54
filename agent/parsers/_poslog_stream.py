"""The `Transaction` elements of a POSLog file, one at a time, in bounded memory.

The standard library's C `iterparse` walks the file; each top-level `Transaction` is
handed over once its end tag has arrived and dropped when the next is asked for. No
DTD is accepted (so no entity is declared, expanded or fetched), and element names
arrive as local names, whatever namespace or prefix the file uses.

Most exports put every element in one default namespace (the NRF one, or none). Its
declaration on the root is turned into a prefix declaration nobody uses before the
parser sees it, so those names come out of the C parser as plain local names; only
the few elements in another namespace (Xstore's `dtv:`) are renamed in Python.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import BinaryIO
from xml.etree.ElementTree import Element

from ._base import ParseError, rewound

__all__ = ["transactions"]

_PROLOGUE = 64 * 1024
_DOCTYPE = re.compile(rb"<!\s*DOCTYPE|<!\s*ENTITY", re.IGNORECASE)
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")
_ROOT_TAG = re.compile(rb"""<[A-Za-z_][\w.:-]*(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*/?>""")
_DEFAULT_NS = re.compile(rb"""(\s)xmlns(\s*=\s*(?:"[^"]*"|'[^']*'))""")


def transactions(stream: BinaryIO) -> Iterator[Element]:
    """Each top-level `Transaction` element, complete, with local-name tags.

    ET.ParseError, LookupError and UnicodeError escape for the caller to word (see
    `_xml.refusing_unsafe_xml`).
    """
    head = _without_default_namespace(_refusing_dtd(stream.read(_PROLOGUE)))
    depth = 0
    root: Element | None = None
    names: dict[str, str] = {}
    events = ET.iterparse(rewound(head, stream), events=("start", "end"))  # noqa: S314 - no DTD
    for event, element in events:
        if event == "start":
            depth += 1
            tag = element.tag
            if tag[0] == "{":
                name = names.get(tag)
                if name is None:
                    name = names[tag] = tag[tag.index("}") + 1 :]
                element.tag = name
            if depth == 1:
                root = element
                if element.tag != "POSLog":
                    raise ParseError(f"not POSLog: the root element is {element.tag!r}", "/")
            continue
        depth -= 1
        if depth == 1 and element.tag == "Transaction":
            yield element
            if root is not None:
                root.clear()  # bounded memory: the finished transaction is dropped
    if root is None:
        raise ParseError("the file holds no XML element", "byte 0")


def _refusing_dtd(head: bytes) -> bytes:
    """Entities can only be declared, and external resources only named, in a DTD, which
    can only come before the root element: a file that has one is refused outright."""
    probe = head
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        probe = head.decode("utf-16", errors="replace").encode("utf-8", errors="replace")
    first = _FIRST_ELEMENT.search(probe)
    if _DOCTYPE.search(probe[: first.start()] if first else probe):
        raise ParseError(
            "the XML declares a DTD; refused (entities and external references are never expanded)",
            "DOCTYPE",
        )
    return head


def _without_default_namespace(head: bytes) -> bytes:
    """`head` with the root's default namespace declared as an unused prefix instead."""
    first = _FIRST_ELEMENT.search(head)
    if first is None:
        return head
    tag = _ROOT_TAG.match(head, first.start())
    if tag is None:
        return head  # UTF-16, or a start tag longer than what was read: names are renamed
    renamed = _DEFAULT_NS.sub(rb"\1xmlns:tb-default\2", tag.group(), count=1)
    return head[: tag.start()] + renamed + head[tag.end() :]
