"""XML the parsers refuse before they spend time or memory on it: a DTD wherever it
stands (after a comment that looks like an element, inside the document, in UTF-16),
an encoding the guard could not read markup in, and text or an attribute far longer
than any field may be, in POSLog and in OMS alike; each refusal names its reason."""

from __future__ import annotations

import time

import pytest

from agent.parsers import ParseContext, ParseError, parse_bytes
from contract import Limits
from tests.agent.parsers.golden import TESTDATA, input_file

POSLOG = input_file(TESTDATA / "poslog_multi_txn").read_bytes()
ENTITY = b'<!DOCTYPE POSLog [<!ENTITY e "EXPANDED">]>'


def _parse(data: bytes, fmt: str = "poslog", **context: object) -> list[object]:
    return list(parse_bytes(data, fmt, context=ParseContext(file_name="f.xml", **context)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        # A comment holding "<a" before the DTD used to hide it from the check.
        POSLOG.replace(b"<POSLog", b"<!-- <a href> -->" + ENTITY + b"<POSLog", 1),
        POSLOG.replace(b"<POSLog", b"<?pi <b?>" + ENTITY + b"<POSLog", 1),
        # Past the first 64 KB read, and inside the document.
        POSLOG.replace(b"<POSLog", b"<!--" + b" " * 70_000 + b"-->" + ENTITY + b"<POSLog", 1),
        POSLOG.replace(b"</POSLog>", b"<![CDATA[" + ENTITY + b"]]></POSLog>"),
        # UTF-16, with its byte order mark.
        POSLOG.replace(b'encoding="UTF-8"', b'encoding="UTF-16"')
        .replace(b"<POSLog", b"<!-- <a -->" + ENTITY + b"<POSLog", 1)
        .decode()
        .encode("utf-16"),
    ],
    ids=["after-comment", "after-pi", "after-64k", "in-document", "utf-16"],
)
def test_a_dtd_anywhere_refuses_the_file(data: bytes) -> None:
    with pytest.raises(ParseError, match="declares a DTD") as caught:
        _parse(data)
    assert caught.value.place == "DOCTYPE"


def test_an_encoding_that_hides_markup_is_refused() -> None:
    data = POSLOG.replace(b'encoding="UTF-8"', b'encoding="cp500"')
    with pytest.raises(ParseError, match="'cp500' is not one a POS export uses"):
        _parse(data)


def test_the_plain_file_still_reads() -> None:
    wide = POSLOG.replace(b'encoding="UTF-8"', b'encoding="UTF-16"').decode().encode("utf-16")
    assert len(_parse(POSLOG)) == len(_parse(wide)) == 5


@pytest.mark.parametrize("fmt", ["poslog", "oms"])
def test_a_huge_attribute_is_refused_in_a_fraction_of_a_second(fmt: str) -> None:
    if fmt == "poslog":
        data = POSLOG.replace(b"<Transaction>", b'<Transaction a="' + b"x" * 30_000_000 + b'">', 1)
    else:
        data = (
            b'<?xml version="1.0"?><Message><InventoryTransaction transaction_code="A" '
            b'transaction_quantity="1" x="' + b"x" * 30_000_000 + b'"><Transaction item_id="1" '
            b'warehouse="W"/></InventoryTransaction></Message>'
        )
    started = time.monotonic()
    with pytest.raises(ParseError, match="text or a tag of more than 1048576 bytes"):
        _parse(data, fmt, store="0042")
    assert time.monotonic() - started < 2.0


def test_the_cap_follows_the_string_limit() -> None:
    long_text = POSLOG.replace(b"Item 471", b"y" * 200_000, 1)
    assert _parse(long_text)  # within 16 x 65,536 bytes (its record is over: the outbox says)
    with pytest.raises(ParseError, match="more than 65536 bytes"):
        _parse(long_text, limits=Limits(string_chars=4096))
