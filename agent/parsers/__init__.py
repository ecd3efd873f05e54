"""POS export parsers, registered by name (the `format` key of a source).

`parse_stream` is the only way records leave a parser: it picks the parser,
masks card numbers in every record, and turns any stray exception into a
ParseError so no half-read file is ever forwarded.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

from contract import scrub_model_fields

from ._base import ParseContext, Parsed, ParseError, Parser, Skipped, rewound
from ._refuse import RECOVERABLE, bounded

__all__ = [
    "MASKED",
    "REGISTRY",
    "ParseContext",
    "ParseError",
    "Parsed",
    "Parser",
    "Skipped",
    "bounded",
    "compiled",
    "detect",
    "parse_bytes",
    "parse_stream",
    "register",
]

REGISTRY: dict[str, Parser] = {}
"""Every parser by name, in sniffing order (the most specific formats first); filled from
the table at the end of this module."""
SNIFF_BYTES = 64 * 1024
MASKED: Counter[str] = Counter()
"""Card numbers masked since the process started, by field name (never a value)."""

log = logging.getLogger("tillbridge.agent.parsers")


def register(parser: Parser) -> Parser:
    """Add a parser to the registry under its `name` (a format of a site's own)."""
    REGISTRY[parser.name] = parser
    return parser


def detect(head: bytes) -> Parser:
    """The parser whose `sniff` accepts these first bytes; ParseError when none does."""
    if not head.strip():
        raise ParseError("the file is empty", "byte 0")
    for parser in REGISTRY.values():
        if parser.sniff(head):
            return parser
    raise ParseError("not a format this agent reads (POSLog, MICROS, Magestore, inventory)")


def parse_stream(stream: BinaryIO, fmt: str, *, context: ParseContext) -> Iterator[Parsed]:
    """Records (PAN-masked) and skipped transactions of one file, lazily."""
    if fmt == "auto":
        head = stream.read(SNIFF_BYTES)
        parser = detect(head)
        stream = rewound(head, stream)
    else:
        try:
            parser = REGISTRY[fmt]
        except KeyError:
            raise ParseError(f"unknown format {fmt!r}") from None
    most = context.transactions_per_file
    count = 0
    try:
        for item in parser.parse(stream, context=context):
            count += 1
            if count > most:
                raise ParseError(
                    f"the file holds more than {most} transactions (the agent's "
                    "limits.transactions_per_file); split it, or raise the limit and retry it"
                )
            if isinstance(item, Skipped):
                yield item
                continue
            scrubbed, fields = scrub_model_fields(item)
            if fields:
                MASKED.update(fields)
                log.info(
                    "Card number masked.",
                    extra={"file": context.file_name, "key": scrubbed.key, "fields": fields},
                )
            yield scrubbed
    except ParseError:
        raise
    except RecursionError:
        raise ParseError("the file nests too deeply to be a POS export") from None
    except RECOVERABLE as exc:
        # A parser bug or an input shape nobody anticipated: refuse the file, never crash.
        raise ParseError(f"unreadable input ({type(exc).__name__}: {exc})") from None


def compiled() -> bool:
    """True when the POSLog reader runs compiled (setup.py), False when as plain Python."""
    from .poslog import parser

    return not str(parser.__file__).endswith(".py")


def parse_bytes(data: bytes, fmt: str, *, context: ParseContext) -> list[Parsed]:
    """All of `parse_stream` for a file already in memory (tests, the parse command)."""
    return list(parse_stream(io.BytesIO(data), fmt, context=context))


# The built-in formats, in sniffing order: adding a format is its own module or folder and
# one line here.
from .inventory import InventoryParser  # noqa: E402
from .magestore.parser import MagestoreParser  # noqa: E402
from .micros.parser import MicrosParser  # noqa: E402
from .oms import OmsParser  # noqa: E402
from .poslog.parser import PoslogParser  # noqa: E402

BUILTIN: tuple[Parser, ...] = (
    PoslogParser(),
    OmsParser(),
    MicrosParser(),
    MagestoreParser(),
    InventoryParser(),
)
for _parser in BUILTIN:
    register(_parser)
