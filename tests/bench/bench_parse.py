"""POSLog parse + normalise rate on one core, beside the raw rate of walking the same
bytes with the standard library's `iterparse` doing nothing else (same run)."""

from __future__ import annotations

import io
import time
import xml.etree.ElementTree as ET

from agent.parsers import ParseContext, parse_stream
from tests.agent.parsers.golden import TESTDATA, input_file
from tests.bench.run import Row

TRANSACTIONS = 20_000


def poslog_file(count: int) -> bytes:
    """`count` everyday transactions: two lines with VAT included, one cash tender."""
    template = input_file(TESTDATA / "poslog_tax_included").read_bytes()
    head, _, rest = template.partition(b"<Transaction")
    body, _, tail = rest.rpartition(b"</Transaction>")
    txn = b"<Transaction" + body + b"</Transaction>\n"
    parts = [head]
    for n in range(count):
        parts.append(txn.replace(b"<SequenceNumber>1001<", b"<SequenceNumber>%d<" % n))
    parts.append(tail)
    return b"".join(parts)


def run() -> list[Row]:
    data = poslog_file(TRANSACTIONS)
    started = time.perf_counter()
    for _event, element in ET.iterparse(io.BytesIO(data), events=("end",)):  # noqa: S314
        element.tag  # noqa: B018 - touch each element, nothing more
    raw = TRANSACTIONS / (time.perf_counter() - started)

    context = ParseContext(file_name="bench.xml")
    started = time.perf_counter()
    count = sum(1 for _ in parse_stream(io.BytesIO(data), "poslog", context=context))
    rate = count / (time.perf_counter() - started)
    assert count == TRANSACTIONS
    return [
        Row(
            f"POSLog parse + normalise + PAN scrub ({len(data) // 1_000_000} MB, one core)",
            rate,
            "transactions/s",
            "stdlib iterparse of the same bytes, no work (same run)",
            raw,
            ">= 10000",
            rate >= 10_000,
        )
    ]
