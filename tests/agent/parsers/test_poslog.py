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

from agent.parsers import (
    REGISTRY,
    ParseContext,
    ParseError,
    Skipped,
    detect,
    parse_bytes,
    parse_stream,
)
from contract import Refused, Transaction

from .golden import TESTDATA, cases, check_case, input_file

CASES = cases("poslog_")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path) -> None:
    check_case(case)


def _context(name: str, data: bytes) -> ParseContext:
    return ParseContext(file_name=name, sha256=hashlib.sha256(data).hexdigest())


def _sales(data: bytes, name: str = "x.xml") -> list[Transaction]:
    """The transactions of a file (there are no skipped ones in the files used)."""
    items = parse_bytes(data, "poslog", context=_context(name, data))
    records = [item for item in items if isinstance(item, Transaction)]
    assert len(records) == len(items)
    return records


def test_the_same_transaction_has_the_same_key_in_any_file() -> None:
    multi = input_file(TESTDATA / "poslog_multi_txn").read_bytes()
    alone = multi.replace(
        b"<SequenceNumber>2001</SequenceNumber>", b"<SequenceNumber>x</SequenceNumber>"
    )
    first = _sales(multi, "a.xml")
    second = _sales(alone, "b.xml")
    assert [r.key for r in first][1:] == [r.key for r in second][1:]
    assert first[0].key != second[0].key


def _transactions(data: bytes) -> list[bytes]:
    _head, _, rest = data.partition(b"<Transaction")
    return [b"<Transaction" + part for part in rest.split(b"<Transaction")]


def test_a_transaction_alone_in_another_file_keeps_its_key() -> None:
    multi = input_file(TESTDATA / "poslog_multi_txn").read_bytes()
    head = multi.partition(b"<Transaction")[0]
    third = _transactions(multi)[2].partition(b"</POSLog>")[0]
    alone = head + third + b"</POSLog>\n"
    in_multi = _sales(multi, "day.xml")[2]
    by_itself = _sales(alone, "resend.xml")
    assert len(by_itself) == 1
    assert by_itself[0].key == in_multi.key == "sale:0042:3:2024-05-01:2003"
    assert by_itself[0].source.position == "/POSLog/Transaction[1]"
    assert in_multi.source.position == "/POSLog/Transaction[3]"


def test_registers_that_reuse_a_sequence_number_get_distinct_keys() -> None:
    data = input_file(TESTDATA / "poslog_repeat_seq_two_workstations").read_bytes()
    keys = [r.key for r in _sales(data)]
    assert len(set(keys)) == 2
    assert all(k.endswith(":55") for k in keys)


def test_utf16_and_utf8_exports_read_the_same() -> None:
    utf8 = input_file(TESTDATA / "poslog_tax_included").read_bytes()
    utf16 = input_file(TESTDATA / "poslog_utf16").read_bytes()
    a = [r.model_dump(exclude={"source"}) for r in _sales(utf8)]
    b = [r.model_dump(exclude={"source"}) for r in _sales(utf16)]
    assert a == b


def test_a_compensating_void_pair_nets_out_of_the_total() -> None:
    data = input_file(TESTDATA / "poslog_void_compensating").read_bytes()
    (record,) = _sales(data)
    live = [ln for ln in record.lines if not ln.voided]
    assert [ln.sku for ln in live] == ["4712"]
    assert sum(ln.amount for ln in live) == record.total
    assert record.imbalance == 0


def test_a_full_card_number_never_reaches_the_record() -> None:
    data = input_file(TESTDATA / "poslog_card_pan").read_bytes()
    (record,) = _sales(data)
    assert record.tenders[0].card is not None
    assert (record.tenders[0].card.brand, record.tenders[0].card.last4) == ("visa", "1111")
    dump = record.model_dump_json()
    assert "4111111111111111" not in dump
    assert "4111 1111" not in dump


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"<POSLog><Transaction><RetailStoreID>1</RetailStoreID>", "malformed XML"),
        (b"\x00\x01binary\xff", "malformed XML"),
        (b"<Inventory/>", "not POSLog"),
        (
            b'<?xml version="1.0"?><!DOCTYPE POSLog SYSTEM "http://example.com/x.dtd"><POSLog/>',
            "DTD",
        ),
        (b"<POSLog>&undefined;</POSLog>", "malformed XML"),
    ],
)
def test_unreadable_input_is_refused_with_a_reason(data: bytes, fragment: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse_bytes(data, "poslog", context=_context("bad.xml", data))
    assert fragment in str(caught.value)


def test_auto_detection_picks_poslog_and_nothing_else_claims_it() -> None:
    data = input_file(TESTDATA / "poslog_xstore_dtv").read_bytes()
    assert detect(data).name == "poslog"
    others = [p for name, p in REGISTRY.items() if name != "poslog"]
    assert not any(p.sniff(data) for p in others)


def test_a_refusal_names_the_transaction() -> None:
    data = input_file(TESTDATA / "poslog_bad_amount").read_bytes()
    (item,) = parse_bytes(data, "poslog", context=_context("bad.xml", data))
    assert isinstance(item, Refused)
    assert item.place.startswith("/POSLog/Transaction[1]/RetailTransaction/LineItem[1]")
    assert "not a number" in item.reason
    assert item.fragment.startswith("<Transaction")


def test_one_unreadable_transaction_never_holds_back_the_rest_of_its_file() -> None:
    multi = input_file(TESTDATA / "poslog_multi_txn").read_bytes()
    good = _sales(multi, "day.xml")
    second = _transactions(multi)[1]
    broken = second.replace(b"<ExtendedAmount>", b"<ExtendedAmount>x", 1)
    assert broken != second
    data = multi.replace(second, broken)
    items = parse_bytes(data, "poslog", context=_context("day.xml", data))
    kinds = [item.kind for item in items if not isinstance(item, Skipped)]
    assert kinds == [good[0].kind, "refused", *[r.kind for r in good[2:]]]
    refused = items[1]
    assert isinstance(refused, Refused)
    assert refused.transaction_id == good[1].transaction_id
    assert refused.business_date == good[1].business_date
    assert refused.key == f"refused:{good[1].store}:{good[1].register}:" + (
        f"{good[1].business_date.isoformat()}:{good[1].transaction_id}"
    )
    assert "not a number" in refused.reason
    assert "<ExtendedAmount>x" in refused.fragment
    # The same transaction refused again, in any file, has the same key.
    again = parse_bytes(data, "poslog", context=_context("resend.xml", data))[1]
    assert isinstance(again, Refused)
    assert again.key == refused.key


def test_a_transaction_without_any_header_is_refused_with_a_key_from_its_place() -> None:
    data = (
        b"<POSLog><Transaction><RetailTransaction><Total TotalType='TransactionGrandAmount'>1"
        b"</Total></RetailTransaction></Transaction></POSLog>"
    )
    (item,) = parse_bytes(data, "poslog", context=_context("odd.xml", data))
    assert isinstance(item, Refused)
    assert item.key == f"refused:unknown:{hashlib.sha256(data).hexdigest()[:16]}:" + (
        "/POSLog/Transaction[1]"
    )
    assert item.reason.startswith("no store")


def test_contact_details_never_reach_a_refused_fragment() -> None:
    data = input_file(TESTDATA / "poslog_2x_sale_basic").read_bytes()
    customer = (
        b"<Customer><CustomerID>C-1</CustomerID><Name><FirstName>Erika</FirstName></Name>"
        b"<EMail><EMailAddress>erika@example.com</EMailAddress></EMail></Customer>"
        b"</RetailTransaction>"
    )
    data = data.replace(b"</RetailTransaction>", customer, 1)
    data = data.replace(b"<ExtendedAmount>", b"<ExtendedAmount>x", 1)
    (item,) = parse_bytes(data, "poslog", context=_context("c.xml", data))
    assert isinstance(item, Refused)
    assert "erika" not in item.fragment.lower()
    assert "<EMail />" in item.fragment
    assert "<CustomerID>C-1</CustomerID>" in item.fragment


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


_NO_SALE = (
    b"<Transaction><RetailStoreID>0042</RetailStoreID><WorkstationID>3</WorkstationID>"
    b"<SequenceNumber>%d</SequenceNumber><BusinessDayDate>2024-05-01</BusinessDayDate>"
    b"<EndDateTime>2024-05-01T10:16:05+02:00</EndDateTime>"
    b"<ControlTransaction><NoSale/></ControlTransaction></Transaction>\n"
)


def _big_file(transactions: int, sale_every: int = 1) -> Iterator[bytes]:
    """A POSLog file of `transactions`, one in `sale_every` a sale, the rest till control."""
    template = input_file(TESTDATA / "poslog_2x_sale_basic").read_bytes()
    head, _, rest = template.partition(b"<Transaction")
    body, _, tail = rest.rpartition(b"</Transaction>")
    txn = b"<Transaction" + body + b"</Transaction>\n"
    yield head
    for n in range(transactions):
        if n % sale_every:
            yield _NO_SALE % n
            continue
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
    # 50,000 transactions (about 30 MB of XML, generated while it is read): every tenth a
    # sale turned into a record, the rest till control that is only walked and counted.
    count, sale_every = 50_000, 10
    stream = io.BufferedReader(_Chunks(_big_file(count, sale_every)))
    tracemalloc.start()
    try:
        sales = skipped = 0
        for item in parse_stream(stream, "poslog", context=ParseContext(file_name="big.xml")):
            if isinstance(item, Skipped):
                skipped += 1
            else:
                sales += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (sales, skipped) == (count // sale_every, count - count // sale_every)
    assert peak < 4 * 1024 * 1024  # a fraction of the file: one transaction at a time


def test_an_absurd_amount_is_refused_not_rounded() -> None:
    data = input_file(TESTDATA / "poslog_2x_sale_basic").read_bytes()
    huge = b"5" + b"0" * 40  # 5E+40 written out (E notation is refused by a rule of its own)
    data = data.replace(b"<ExtendedAmount>5.00<", b"<ExtendedAmount>" + huge + b"<")
    (item,) = parse_bytes(data, "poslog", context=_context("big.xml", data))
    assert isinstance(item, Refused)
    assert "out of range" in item.reason
    assert item.place.endswith("/LineItem[1]/Sale/ExtendedAmount")


def test_a_namespace_declared_deep_in_a_large_file_still_reads_by_local_name() -> None:
    # Far past the first chunk, one transaction redeclares the default namespace and one
    # uses a prefix declared on itself: both read exactly as their plain neighbours.
    data = input_file(TESTDATA / "poslog_2x_sale_basic").read_bytes()
    start = data.index(b"<Transaction")
    end = data.index(b"</Transaction>") + len(b"</Transaction>")
    plain = data[start:end]
    default = plain.replace(
        b"<Transaction", b'<Transaction xmlns="http://www.nrf-arts.org/IXRetail/namespace/"', 1
    )
    prefixed = (
        plain.replace(b"<", b"<x:").replace(b"<x:/", b"</x:").replace(b"<x:!", b"<!")
    ).replace(b"<x:Transaction", b'<x:Transaction xmlns:x="urn:example:pos"', 1)
    filler = plain * 200  # well over 64 KB of ordinary transactions first
    mixed = data[:start] + filler + default + prefixed + plain + data[end:]
    records = _sales(mixed)
    assert len(records) == 203
    reference = records[0].model_dump(exclude={"source"})
    for record in records[-3:]:
        assert record.model_dump(exclude={"source"}) == reference


@pytest.mark.parametrize("cut", [0, 1, 2, 3])
def test_a_prefix_the_root_declares_first_used_across_a_chunk_boundary(cut: int) -> None:
    # The root declares `x:`; the first element to use it, a transaction's total, starts
    # `cut` bytes before the end of a 64 KB read, so `<x:` arrives in two reads.
    data = input_file(TESTDATA / "poslog_2x_sale_basic").read_bytes()
    root = data.index(b"<POSLog") + len(b"<POSLog")
    data = data[:root] + b' xmlns:x="urn:example:pos"' + data[root:]
    start = data.index(b"<Transaction")
    end = data.index(b"</Transaction>") + len(b"</Transaction>")
    plain = data[start:end]
    prefixed = plain.replace(b"<Total", b"<x:Total").replace(b"</Total>", b"</x:Total>")
    head = data[:start] + plain * 100
    boundary = 3 * 64 * 1024
    pad = boundary - cut - len(head) - prefixed.index(b"<x:Total")
    assert pad > 0
    mixed = head + b" " * pad + prefixed + plain + data[end:]
    assert mixed[boundary - cut : boundary - cut + 3] == b"<x:"
    records = _sales(mixed)
    assert len(records) == 102
    reference = records[0].model_dump(exclude={"source"})
    assert records[-2].model_dump(exclude={"source"}) == reference


@pytest.mark.parametrize(
    ("percent", "amount", "rate"),
    [("0.0475000", "4.75", "4.7500000"), ("0.5", "0.50", "0.5"), ("19", "19.00", "19")],
    ids=["xstore-fraction", "half-percent", "percent"],
)
def test_a_tax_rate_is_held_as_percent(percent: str, amount: str, rate: str) -> None:
    total = f"{100 + float(amount):.2f}"
    data = (
        "<POSLog><Transaction><RetailStoreID>0042</RetailStoreID><WorkstationID>1"
        "</WorkstationID><SequenceNumber>9</SequenceNumber><BusinessDayDate>2024-05-01"
        "</BusinessDayDate><RetailTransaction><LineItem><Sale><ItemID>1</ItemID>"
        "<ExtendedAmount>100.00</ExtendedAmount><Quantity>1</Quantity><Tax>"
        f"<TaxableAmount>100.00</TaxableAmount><Amount>{amount}</Amount>"
        f"<Percent>{percent}</Percent></Tax></Sale></LineItem>"
        f'<Total TotalType="TransactionGrandAmount">{total}</Total>'
        "</RetailTransaction></Transaction></POSLog>"
    ).encode()
    (record,) = parse_bytes(data, "poslog", context=_context("rate.xml", data))
    assert isinstance(record, Transaction)
    (tax,) = record.lines[0].taxes
    assert str(tax.rate) == rate
    assert record.imbalance == 0
