"""The `poslog` parser: golden cases for every field shape, keys that do not depend on
the file, refusals that name the place, fuzzed input, and bounded memory on a large file."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.contract import Transaction
from agent.parsers import REGISTRY, ParseContext, ParseError, detect, parse_bytes, parse_stream

from .golden import TESTDATA, cases, check_case, input_file

CASES = cases("poslog_")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path) -> None:
    check_case(case)


def _context(name: str, data: bytes) -> ParseContext:
    return ParseContext(file_name=name, sha256=hashlib.sha256(data).hexdigest())


def test_the_same_transaction_has_the_same_key_in_any_file() -> None:
    multi = input_file(TESTDATA / "poslog_multi_txn").read_bytes()
    alone = multi.replace(
        b"<SequenceNumber>2001</SequenceNumber>", b"<SequenceNumber>x</SequenceNumber>"
    )
    first = parse_bytes(multi, "poslog", context=_context("a.xml", multi))
    second = parse_bytes(alone, "poslog", context=_context("b.xml", alone))
    assert [r.key for r in first][1:] == [r.key for r in second][1:]
    assert first[0].key != second[0].key


def test_auto_detection_picks_poslog_and_nothing_else_claims_it() -> None:
    data = input_file(TESTDATA / "poslog_xstore_dtv").read_bytes()
    assert detect(data).name == "poslog"
    others = [p for name, p in REGISTRY.items() if name != "poslog"]
    assert not any(p.sniff(data) for p in others)


def test_a_refusal_names_the_transaction() -> None:
    data = input_file(TESTDATA / "poslog_bad_amount").read_bytes()
    with pytest.raises(ParseError) as caught:
        parse_bytes(data, "poslog", context=_context("bad.xml", data))
    assert caught.value.place.startswith("/POSLog/Transaction[1]/RetailTransaction/LineItem[1]")


SEEDS = [input_file(c).read_bytes() for c in CASES if (c / "expected.json").exists()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    cut=st.integers(min_value=0, max_value=4000),
    junk=st.binary(max_size=12),
    where=st.integers(min_value=0, max_value=4000),
)
def test_mutated_input_is_parsed_or_refused_never_crashes(
    seed: bytes, cut: int, junk: bytes, where: int
) -> None:
    data = seed[:where] + junk + seed[where + len(junk) :]
    data = data[: max(cut, 1)] if cut < len(data) else data
    try:
        items = parse_bytes(data, "poslog", context=_context("fuzz.xml", data))
    except ParseError:
        return
    for item in items:
        if isinstance(item, Transaction):
            assert item.key.split(":")[0] == item.kind


def _big_file(transactions: int) -> Iterator[bytes]:
    template = input_file(TESTDATA / "poslog_2x_sale_basic").read_bytes()
    head, _, rest = template.partition(b"<Transaction")
    body, _, tail = rest.rpartition(b"</Transaction>")
    txn = b"<Transaction" + body + b"</Transaction>\n"
    yield head
    for n in range(transactions):
        yield txn.replace(
            b"<SequenceNumber>1001</SequenceNumber>", b"<SequenceNumber>%d</SequenceNumber>" % n
        )
    yield tail


class _Chunks(io.RawIOBase):
    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


def test_a_large_file_is_streamed_in_bounded_memory() -> None:
    count = 8_000  # about 12 MB of XML
    stream = io.BufferedReader(_Chunks(_big_file(count)))
    tracemalloc.start()
    try:
        seen = 0
        for _ in parse_stream(stream, "poslog", context=ParseContext(file_name="big.xml")):
            seen += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == count
    assert peak < 4 * 1024 * 1024  # a fraction of the file: one transaction at a time
