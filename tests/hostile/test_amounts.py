"""Amounts by the contract's money rules, in every parser and on the wire: no exponent,
no underscore, no digits other than 0-9, a thousands separator only where the source
declares one, "-0" read as 0; and a JSON object that repeats a key is refused with its
check or order (which value the POS meant cannot be known), the rest of the file flowing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from agent.parsers import ParseContext, ParseError, parse_bytes
from agent.parsers.inventory_time import parse_quantity
from contract import Refused, Transaction, read_decimal, to_decimal
from tests.agent.parsers.golden import TESTDATA, input_file
from tests.hostile.test_agent_limits import poslog

SIMPHONY = input_file(TESTDATA / "micros_simphony_basic").read_text()
MAGESTORE = input_file(TESTDATA / "magestore_search_result_shape").read_text()


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("1e2", "E notation"),
        ("1E-70000000", "E notation"),
        ("5_000.00", "separator '_'"),
        ("1,000.00", "separator ','"),
        ("1 000.00", "separator ' '"),
        ("５.００", "digits other than 0-9"),
        ("١٢", "digits other than 0-9"),
        ("NaN", "not a finite number"),
        ("12x", "not a (decimal )?number"),
        ("--1", "not a (decimal )?number"),
    ],
)
def test_the_money_rules_refuse_and_say_why(written: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        read_decimal(written)
    with pytest.raises(ValueError, match=said):
        to_decimal(written)  # the record contract: what the relay validates


def test_the_money_rules_read_plain_numbers_and_declared_separators() -> None:
    assert read_decimal(" 12.30 ") == Decimal("12.30")
    assert str(read_decimal("-0.00")) == "0.00"
    assert str(to_decimal("-0")) == "0"
    assert read_decimal("1,234,567.50", ",") == Decimal("1234567.50")
    assert read_decimal("1'234.50", "'") == Decimal("1234.50")
    with pytest.raises(ValueError, match="separator ','"):
        read_decimal("1,23.50", ",")  # not groups of three
    with pytest.raises(ValueError, match="separator ','"):
        read_decimal("1,234.50", "'")


def test_the_inventory_reader_takes_ascii_digits_only() -> None:
    assert parse_quantity("５") is None
    assert parse_quantity("5_0") is None
    assert str(parse_quantity("-0.0")) == "0.0"


def _poslog(amount: bytes, context: ParseContext | None = None) -> list[Any]:
    data = poslog([(1, 1, "Tea"), (2, 1, "Tea")])
    first, sep, rest = data.partition(b"</Transaction>")
    first = first.replace(b"<ExtendedAmount>1.00<", b"<ExtendedAmount>" + amount + b"<")
    first = first.replace(b">1.00</Total>", b">" + amount + b"</Total>")
    first = first.replace(b"<Amount>1.00<", b"<Amount>" + amount + b"<")
    return parse_bytes(first + sep + rest, "poslog", context=context or ParseContext("f.xml"))


@pytest.mark.parametrize("amount", [b"1,000.00", b"5_000.00", "５.００".encode(), b"1e3"])
def test_a_poslog_amount_against_the_rules_refuses_its_transaction(amount: bytes) -> None:
    first, second = _poslog(amount)
    assert isinstance(first, Refused)
    assert first.place.endswith("ExtendedAmount")
    assert amount.decode() in first.reason
    assert isinstance(second, Transaction)
    assert second.total == Decimal("1.00")


def test_a_poslog_thousands_separator_reads_where_the_source_declares_it() -> None:
    first, _ = _poslog(b"1,000.00", ParseContext("f.xml", thousands=","))
    assert isinstance(first, Transaction)
    assert first.total == Decimal("1000.00")


def test_minus_zero_is_zero_in_records() -> None:
    first, _ = _poslog(b"-0.00")
    assert isinstance(first, Transaction)
    body = json.loads(first.model_dump_json())
    assert body["total"] == "0.00"
    assert body["lines"][0]["amount"] == "0.00"


def _simphony(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def test_a_simphony_number_in_e_notation_refuses_its_check() -> None:
    doc = json.loads(SIMPHONY)
    second = json.loads(json.dumps(doc["guestChecks"][0]))
    second["chkNum"] = 1202
    doc["guestChecks"].append(second)
    data = _simphony(doc).replace(b'"chkTtl": 12.5', b'"chkTtl": 1.25e1', 1)
    first, other = parse_bytes(data, "micros", context=ParseContext("f.json"))
    assert isinstance(first, Refused)
    assert "E notation" in first.reason
    assert isinstance(other, Transaction)
    assert other.total == Decimal("12.50")


def test_a_key_repeated_inside_a_simphony_check_refuses_that_check_alone() -> None:
    doc = json.loads(SIMPHONY)
    second = json.loads(json.dumps(doc["guestChecks"][0]))
    second["chkNum"] = 1202
    doc["guestChecks"].append(second)
    text = json.dumps(doc)
    # The first check names its store twice: the last would have moved it to store 9999.
    text = text.replace('"chkNum": 1201,', '"chkNum": 1201, "locRef": "0042", "locRef": "9999",')
    first, other = parse_bytes(text.encode(), "micros", context=ParseContext("f.json"))
    assert isinstance(first, Refused)
    assert first.reason.startswith("the key 'locRef' appears twice in one object")
    assert first.store == "0042"
    assert first.place == "guestChecks[0]"
    assert isinstance(other, Transaction)
    assert other.transaction_id == "1202"


def test_a_key_repeated_at_the_top_of_an_export_refuses_the_file() -> None:
    text = SIMPHONY.replace('"locRef": "0042",', '"locRef": "0042", "locRef": "9999",', 1)
    with pytest.raises(ParseError, match="'locRef' appears twice"):
        parse_bytes(text.encode(), "micros", context=ParseContext("f.json"))


def test_a_key_repeated_inside_a_magestore_order_refuses_that_order_alone() -> None:
    doc = json.loads(MAGESTORE)
    second = json.loads(json.dumps(doc["items"][0]))
    second["increment_id"] = "POS000107"
    doc["items"].append(second)
    text = json.dumps(doc).replace('"sku": "WS-12"', '"sku": "WS-12", "sku": "WS-99"', 1)
    context = ParseContext("f.json", store="0042")
    items = parse_bytes(text.encode(), "magestore", context=context)
    refused = [i for i in items if isinstance(i, Refused)]
    sold = [i for i in items if isinstance(i, Transaction)]
    assert len(refused) == 1
    assert "'sku' appears twice" in refused[0].reason
    assert [t.transaction_id for t in sold] == ["POS000107"]


def test_a_quantity_in_e_notation_is_a_small_refusal_not_a_70_mb_record() -> None:
    data = poslog([(1, 1, "Tea"), (2, 1, "Tea")]).replace(
        b"<Quantity>1</Quantity>", b"<Quantity>1e-70000000</Quantity>", 1
    )
    first, second = parse_bytes(data, "poslog", context=ParseContext("f.xml"))
    assert isinstance(first, Refused)
    assert "'1e-70000000' is in E notation" in first.reason
    assert len(first.model_dump_json()) < 4096
    assert isinstance(second, Transaction)
