"""The `inventory` (CSV counts) and `oms` (OMS inventory transaction XML) parsers:
golden cases, keys, places in refusals, fuzzed input and memory on a large export."""

from __future__ import annotations

import hashlib
import io
import tracemalloc
import zoneinfo
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.parsers import REGISTRY, ParseContext, ParseError, Skipped, parse_bytes

from .golden import TESTDATA, cases, check_case, input_file, mutations, parse_raw

CASES = cases("inventory_", "oms_")
ZONE = zoneinfo.ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path) -> None:
    check_case(case)


def _ctx(name: str = "counts.csv", sha: str = "0" * 64, **kw: Any) -> ParseContext:
    return ParseContext(file_name=name, sha256=sha, store="0042", timezone=ZONE, **kw)


def _parse(data: bytes, fmt: str = "inventory", **kw: Any) -> list[Any]:
    sha = hashlib.sha256(data).hexdigest()
    return parse_bytes(data, fmt, context=_ctx(sha=sha, **kw))


def _keys(data: bytes, fmt: str = "inventory", **kw: Any) -> list[str]:
    return [r.key for r in _parse(data, fmt, **kw)]


# Keys: the same file gives the same keys, a later snapshot new ones.


def test_same_file_same_keys_later_snapshot_new_keys() -> None:
    morning = b"sku,qty,counted_at\nA,1,2024-03-15T08:00:00\n"
    evening = b"sku,qty,counted_at\nA,1,2024-03-15T20:00:00\n"
    assert _keys(morning) == _keys(morning)
    assert _keys(morning) != _keys(evening)
    assert _keys(morning) == ["inventory:0042:0042:A:at-20240315T070000Z"]


def test_date_only_snapshots_are_told_apart_by_content() -> None:
    first = b"sku,qty,date\nA,1,2024-03-15\n"
    second = b"sku,qty,date\nA,2,2024-03-15\n"
    assert _keys(first) == _keys(first)
    assert _keys(first) != _keys(second)
    with pytest.raises(ParseError, match="content hash is unknown"):
        parse_bytes(first, "inventory", context=_ctx(sha=""))


def test_snapshot_id_wins_over_time() -> None:
    data = b"sku,qty,counted_at,snapshot_id\nA,1,2024-03-15T08:00:00,S-9\n"
    (record,) = _parse(data)
    assert record.reference == "S-9"
    assert record.key == "inventory:0042:0042:A:S-9"


def test_business_date_is_the_local_day_of_the_count() -> None:
    (record,) = _parse(b"sku,qty,counted_at\nA,1,2024-03-15T23:30:00Z\n")
    assert str(record.business_date) == "2024-03-16"
    assert record.occurred_at.isoformat() == "2024-03-15T23:30:00+00:00"


def test_file_name_time_stamp_gives_time_and_reference() -> None:
    (record,) = _parse(b"sku,qty\nA,1\n", name="onhand_20240315_181500.csv")
    assert record.occurred_at.isoformat() == "2024-03-15T18:15:00+01:00"
    assert record.reference == "at-20240315T171500Z"


# Places: a refusal names the line and the column.


def test_bad_number_names_line_and_column() -> None:
    data = b"Item,OnHand,counted_at\nA,1,2024-03-15\n\nB,1.2.3,2024-03-15\n"
    with pytest.raises(ParseError) as caught:
        _parse(data)
    assert caught.value.place == 'line 4, column "OnHand"'


def test_quoted_newline_keeps_line_numbers_physical() -> None:
    data = b'sku,qty,note,counted_at\nA,1,"two\nlines",2024-03-15\nB,x,,2024-03-15\n'
    with pytest.raises(ParseError) as caught:
        _parse(data)
    assert caught.value.place == 'line 4, column "qty"'


def test_decimal_comma_only_outside_comma_separated_files() -> None:
    (record,) = _parse(b"sku;qty;date\nA;1,5;2024-03-15\n")
    assert str(record.quantity) == "1.5"
    with pytest.raises(ParseError, match="not a number"):
        _parse(b'sku,qty,date\nA,"1,5",2024-03-15\n')


def test_exponents_and_nan_are_not_quantities() -> None:
    for bad in (b"1e3", b"NaN", b"Infinity", b"--1", b"0x10"):
        with pytest.raises(ParseError, match="not a number"):
            _parse(b"sku,qty,date\nA," + bad + b",2024-03-15\n")


def test_unknown_role_in_column_map_is_refused() -> None:
    with pytest.raises(ParseError, match="unknown role 'skew'"):
        _parse(b"sku,qty,date\nA,1,2024-03-15\n", columns={"skew": "sku"})


def test_delimiter_setting() -> None:
    data = b"sku\tqty\tdate\nA\t1\t2024-03-15\n"
    assert len(_parse(data, delimiter="tab")) == 1
    assert len(_parse(b"sep=;\nsku;qty;date\nA;1;2024-03-15\n")) == 1
    with pytest.raises(ParseError, match="not a single character"):
        _parse(data, delimiter="::")


def test_utf16_without_bom_is_recognised() -> None:
    data = "sku,qty,date\nÄ,1,2024-03-15\n".encode("utf-16-le")
    (record,) = _parse(data)
    assert record.sku == "Ä"


def test_undecodable_byte_late_in_a_utf8_file() -> None:
    body = b"".join(b"A%d,1,2024-03-15\n" % i for i in range(20000))
    data = b"sku,qty,date\n" + body + b"\xff,1,2024-03-15\n"
    with pytest.raises(ParseError, match="not valid utf-8"):
        _parse(data)


# Sniffing: auto detection picks these formats and only for their own files.


def test_sniff() -> None:
    inventory, oms = REGISTRY["inventory"], REGISTRY["oms"]
    assert inventory.sniff(b"\xef\xbb\xbfItemNumber;OnHand\r\n1;2\r\n")
    assert inventory.sniff("item_id\tqty\n".encode("utf-16"))
    assert not inventory.sniff(b"order_id,total\n1,2\n")
    assert not inventory.sniff(b'<?xml version="1.0"?><POSLog/>')
    assert oms.sniff((TESTDATA / "oms_transfer" / "input.xml").read_bytes())
    assert not oms.sniff(b"sku,qty\n1,2\n")
    assert not inventory.sniff((TESTDATA / "oms_transfer" / "input.xml").read_bytes())


def test_oms_documents_are_deduplicated_per_sku_and_location() -> None:
    txn = (
        b'<InventoryTransaction transaction_code="A" transaction_quantity="1" '
        b'identification_nbr="D1"><Transaction item_number="X" warehouse="1"/>'
        b"</InventoryTransaction>"
    )
    data = b"<Message>" + txn + txn + b"</Message>"
    keys = _keys(data, "oms", name="INVTRAN_20240315.xml")
    assert keys == ["inventory:0042:1:X:D1", "inventory:0042:1:X:D1.2"]


def test_oms_store_is_required() -> None:
    data = (TESTDATA / "oms_adjust" / "input.xml").read_bytes()
    context = ParseContext(file_name="INVTRAN_20240315.xml", sha256="0" * 64)
    with pytest.raises(ParseError, match="no store"):
        parse_bytes(data, "oms", context=context)


# Fuzz: mutated inputs; the parser itself lets nothing but ParseError escape.

SEEDS = {
    fmt: [
        input_file(c).read_bytes()
        for c in CASES
        if c.name.startswith(fmt + "_") and (c / "expected.json").exists()
    ]
    for fmt in ("inventory", "oms")
}


NOISE = [b",", b";", b'"', b"\n", b"\r", b"\x00", b"<", b"&", b"-", b"\xff"]


def mutated(fmt: str) -> st.SearchStrategy[bytes]:
    return mutations([(fmt, seed) for seed in SEEDS[fmt]], NOISE).map(lambda pair: pair[1])


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    mutated("inventory"),
    st.sampled_from([None, ";", "\t"]),
    st.sampled_from([None, "cp1252", "utf-16"]),
)
def test_fuzz_inventory(data: bytes, delimiter: str | None, encoding: str | None) -> None:
    context = _ctx(
        name="onhand_20240315.csv",
        sha=hashlib.sha256(data).hexdigest(),
        delimiter=delimiter,
        encoding=encoding,
    )
    parse_raw("inventory", data, context)


@FUZZ
@given(mutated("oms"))
def test_fuzz_oms(data: bytes) -> None:
    context = _ctx(name="INVTRAN_20240315_181500.xml", sha=hashlib.sha256(data).hexdigest())
    parse_raw("oms", data, context)


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    for fmt, name in (("inventory", "onhand_20240315.csv"), ("oms", "INVTRAN_20240315.xml")):
        parse_raw(fmt, data, _ctx(name=name))


# Memory: a large export is read row by row.


class _GeneratedCsv(io.RawIOBase):
    """A CSV export of `rows` rows, produced as it is read."""

    def __init__(self, rows: int) -> None:
        self._lines: Iterator[bytes] = iter(
            [
                b"sku,location,on_hand,description\n",
                *(
                    b"SKU%07d,LOC%02d,%d.%03d,%s\n" % (i, i % 50, i % 997, i % 1000, b"x" * 180)
                    for i in range(rows)
                ),
            ]
        )
        self._pending = b""
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._pending) < len(buffer):
            line = next(self._lines, None)
            if line is None:
                break
            self._pending += line
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        self.size += n
        return n


def test_large_export_in_bounded_memory() -> None:
    rows = 100_000
    source = _GeneratedCsv(rows)
    parser = REGISTRY["inventory"]
    context = _ctx(name="onhand_20240315_2200.csv")
    count = 0
    tracemalloc.start()
    try:
        for record in parser.parse(io.BufferedReader(source), context=context):
            count += 1
            assert not isinstance(record, Skipped)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == rows
    assert source.size > 20_000_000
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes while reading {source.size} bytes"
