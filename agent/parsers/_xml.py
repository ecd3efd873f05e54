"""What every XML parser here shares: one wording for refusals, and local element names.

No DTD entity is expanded and no external resource is fetched (defusedxml, or no DTD at
all where a format has no use for one); an XML bomb, an external entity, truncated or
malformed XML and an unreadable encoding all become a ParseError that names the place.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.etree.ElementTree import ParseError as XmlError

from defusedxml import DefusedXmlException, EntitiesForbidden, ExternalReferenceForbidden

from ._base import Parsed, ParseError

__all__ = ["local", "refusing_unsafe_xml"]


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
