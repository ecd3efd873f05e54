"""The `Transaction` elements of a POSLog file, one at a time, in bounded memory.

The standard library's C parser builds the tree chunk by chunk. The root's children are
the top-level elements: every one but the last is complete once a chunk has been fed, so
those are handed over and dropped from the root, and the last follows with the next
chunk. Nothing runs in Python per element, only per transaction. No DTD is accepted
anywhere (so no entity is declared, expanded or fetched), text or a tag far over the
string limit stops the file (`_xml.RawGuard`, two byte searches per chunk), and element
names arrive as local names, whatever namespace or prefix the file uses.

Most exports put every element in one default namespace (the NRF one, or none). Its
declaration on the root is turned into a prefix declaration nobody uses before the
parser sees it, so those names come out of the C parser as plain local names. Names are
renamed only once an element is seen that needs it: one with a prefix the root declares
(Xstore declares `dtv:` and mostly uses it on attributes), or anything after a namespace
declaration below the root.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import BinaryIO
from xml.etree.ElementTree import Element

from .._base import ParseError
from .._xml import RawGuard, local

__all__ = ["transactions"]

_PROLOGUE = 64 * 1024
_CHUNK = 64 * 1024
_FIRST_ELEMENT = re.compile(rb"<[A-Za-z_]")
_ROOT_TAG = re.compile(rb"""<[A-Za-z_][\w.:-]*(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*/?>""")
_DEFAULT_NS = re.compile(rb"""(\s)xmlns(\s*=\s*(?:"[^"]*"|'[^']*'))""")
_PREFIX_DECLARATION = re.compile(rb"""\sxmlns:([^\s=/>]+)\s*=""")
_UNUSED_PREFIX = b"tb-default"
_DECLARATION = b"xmlns"


def transactions(stream: BinaryIO, longest: int) -> Iterator[Element]:
    """Each top-level `Transaction` element, complete, with local-name tags (or the root
    itself, where a file holds one `Transaction` and no `POSLog`).

    ET.ParseError, LookupError and UnicodeError escape for the caller to word (see
    `_xml.refusing_unsafe_xml`). `longest`: most bytes of one text or tag (RawGuard).
    """
    head = stream.read(_PROLOGUE)
    guard = RawGuard(head, longest, dtd=False)
    guard.check(head)
    chunk, root_tag = _without_default_namespace(head)
    pull: ET.XMLPullParser[Element] = ET.XMLPullParser(events=("start",))
    root: Element | None = None
    bare = False  # one transaction per file, as the root, with no POSLog around it
    names: dict[str, str] = {}
    # Names need renaming where the default namespace could not be declared away, once an
    # element uses a prefix the root declares, or after any declaration below the root
    # (looked for in every chunk, with an overlap for a name cut in two).
    renaming = root_tag is None
    used = _prefix_use(root_tag or b"")
    overlap = max(len(needle) for needle in [_DECLARATION, *used])
    tail = b""
    body = chunk[chunk.find(root_tag) + len(root_tag) :] if root_tag else chunk
    while chunk:
        if not renaming:
            probe = tail + body
            renaming = _DECLARATION in probe or any(needle in probe for needle in used)
            tail = probe[-overlap:]
        pull.feed(chunk)
        if root is None:
            root = _root(pull)  # checked by its local name; its own tag is not read again
            bare = root is not None and local(root.tag) == "Transaction"
        if root is not None and not bare and len(root) > 1:
            done = root[:-1]
            del root[:-1]  # bounded memory: finished transactions are dropped
            yield from _finished(done, renaming, names)
        chunk = body = stream.read(_CHUNK)
        guard.check(chunk)
    pull.close()
    if root is None:
        raise ParseError("the file holds no XML element", "byte 0")
    if bare:
        _rename(root, names)
        root.tag = "Transaction"
        yield root
        return
    yield from _finished(root[:], renaming, names)
    del root[:]


def _root(pull: ET.XMLPullParser[Element]) -> Element | None:
    """The root element once its start tag is in, refused when it is not a POSLog; from
    then on no events are collected (a tuple per element saved)."""
    events = pull.read_events()
    for event in events:
        element = event[1] if isinstance(event, tuple) and len(event) == 2 else None
        if not isinstance(element, Element):
            continue  # only start events are asked for: never the case
        parser = getattr(pull, "_parser", None)
        if parser is not None and hasattr(parser, "_setevents"):
            parser._setevents(pull._events_queue, ())  # type: ignore[attr-defined]
        for _rest in events:
            pass  # the start events already queued hold elements: let them go
        name = local(element.tag)
        if name != "POSLog" and name != "Transaction":
            raise ParseError(f"not POSLog: the root element is {name!r}", "/")
        return element
    return None


def _finished(done: list[Element], renaming: bool, names: dict[str, str]) -> Iterator[Element]:
    for element in done:
        if renaming:
            _rename(element, names)
        if element.tag == "Transaction":
            yield element


def _rename(element: Element, names: dict[str, str]) -> None:
    """Local names for `element` and everything inside it."""
    for found in element.iter():
        tag = found.tag
        if tag[:1] == "{":
            name = names.get(tag)
            if name is None:
                name = names[tag] = local(tag)
            found.tag = name


def _without_default_namespace(head: bytes) -> tuple[bytes, bytes | None]:
    """`head` with the root's default namespace declared as an unused prefix instead, and
    the root's start tag as rewritten (None when it was not: UTF-16, or a start tag
    longer than what was read)."""
    first = _FIRST_ELEMENT.search(head)
    if first is None:
        return head, None
    tag = _ROOT_TAG.match(head, first.start())
    if tag is None:
        return head, None
    renamed = _DEFAULT_NS.sub(rb"\1xmlns:tb-default\2", tag.group(), count=1)
    return head[: tag.start()] + renamed + head[tag.end() :], renamed


def _declared(root_tag: bytes) -> list[bytes]:
    return [p for p in _PREFIX_DECLARATION.findall(root_tag) if p != _UNUSED_PREFIX]


def _prefix_use(root_tag: bytes) -> list[bytes]:
    """How an element start tag with a prefix the root declares begins: `<prefix:`.
    Looked for as plain bytes, a tenth of the cost of a regular expression."""
    return [b"<" + prefix + b":" for prefix in _declared(root_tag)]
