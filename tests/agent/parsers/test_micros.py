"""The `micros` parser: Simphony guest check JSON and RES 3700 delimited exports: golden
cases, keys across files, reopened checks, places in refusals, detection and fuzzed input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.parsers import REGISTRY, ParseContext, Parsed, ParseError, Skipped, parse_bytes
from contract import Refused, Transaction

from .golden import TESTDATA, cases, check_case, context_for, input_file, mutations, parse_raw

CASES = cases("micros_")
GOOD = [c for c in CASES if (c / "expected.json").exists()]
AUTO = [
    c
    for c in GOOD
    if not (c / "context.json").exists()
    or "format" not in json.loads((c / "context.json").read_text())
]
OTHERS = [c for c in TESTDATA.iterdir() if c.is_dir() and not c.name.startswith("micros_")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path) -> None:
    check_case(case)


def _parse(data: bytes, name: str = "checks.json", **kw: Any) -> list[Any]:
    sha = hashlib.sha256(data).hexdigest()
    context = ParseContext(file_name=name, sha256=sha, store="0042", **kw)
    return parse_bytes(data, "micros", context=context)


def _keys(data: bytes, name: str = "checks.json") -> list[str]:
    return [r.key for r in _parse(data, name) if not isinstance(r, Skipped)]


def _doc(case: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(input_file(TESTDATA / case).read_text())
    return loaded


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# Keys: the same check gives the same key whatever file it comes in.


def test_a_check_exported_again_keeps_its_key() -> None:
    data = input_file(TESTDATA / "micros_simphony_basic").read_bytes()
    again = data.replace(b'"curUTC": "2024-05-02T02:00:00"', b'"curUTC": "2024-05-03T02:00:00"')
    assert again != data
    assert _keys(data, "day1.json") == _keys(again, "day2.json")
    assert _keys(data) == ["sale:0042:2:2024-05-01:1201"]


def test_a_reopened_check_keeps_the_key_of_its_first_close() -> None:
    doc = _doc("micros_reopened")
    first, reopened = doc["guestChecks"]
    before = _keys(_bytes({**doc, "guestChecks": [first]}), "monday.json")
    after = _keys(_bytes({**doc, "guestChecks": [reopened]}), "tuesday.json")
    assert before == after == ["sale:0042:2:2024-05-01:1212"]


def test_the_latest_state_of_a_check_wins_in_either_order() -> None:
    doc = _doc("micros_reopened")
    first, reopened = doc["guestChecks"]
    items = _parse(_bytes({**doc, "guestChecks": [reopened, first]}))
    record, stale = items
    assert isinstance(record, Transaction)
    assert str(record.total) == "6.50"
    assert record.attributes["reopened"] == "true"
    assert isinstance(stale, Skipped)
    assert stale.reason == "duplicate_in_file"
    assert stale.place == "guestChecks[1]"


def test_res_and_simphony_keys_name_the_register_and_business_day() -> None:
    data = input_file(TESTDATA / "micros_res_pipe").read_bytes()
    assert _keys(data, "res.txt") == ["sale:0042:WS2:2024-05-01:3001"]


# Refusals name the place.


def _refused(items: list[Parsed]) -> Refused:
    (item,) = items
    assert isinstance(item, Refused)
    return item


def test_a_bad_amount_names_the_detail_line() -> None:
    doc = _doc("micros_simphony_basic")
    doc["guestChecks"][0]["detailLines"][1]["dspTtl"] = "3,50"
    item = _refused(_parse(_bytes(doc)))
    assert item.place == "guestChecks[0].detailLines[1].dspTtl"
    # The check as the file holds it (numbers read exactly come back as strings).
    fragment = json.loads(item.fragment)
    assert fragment["chkNum"] == doc["guestChecks"][0]["chkNum"]
    assert fragment["detailLines"][1]["dspTtl"] == "3,50"


def test_more_decimals_than_the_currency_has_are_refused() -> None:
    doc = _doc("micros_simphony_basic")
    doc["guestChecks"][0]["chkTtl"] = "12.505"
    item = _refused(_parse(_bytes(doc)))
    assert "more decimals than EUR allows" in item.reason
    assert item.place == "guestChecks[0]"


def test_an_amount_no_till_can_hold_is_refused() -> None:
    data = input_file(TESTDATA / "micros_simphony_basic").read_bytes()
    huge = b"1" + b"0" * 30 + b".5"  # 1e30 written out (E notation has a rule of its own)
    item = _refused(_parse(data.replace(b'"chkTtl": 12.5', b'"chkTtl": ' + huge)))
    assert "out of range" in item.reason


def test_one_unreadable_check_never_holds_back_the_others() -> None:
    doc = _doc("micros_simphony_basic")
    good = dict(doc["guestChecks"][0])
    broken = dict(good, chkNum=good["chkNum"] + 1, opnBusDt="yesterday")
    doc["guestChecks"] = [broken, good]
    items = _parse(_bytes(doc))
    assert [item.kind for item in items if not isinstance(item, Skipped)] == ["refused", "sale"]
    item = items[0]
    assert isinstance(item, Refused)
    assert item.place == "guestChecks[0].opnBusDt"
    assert item.transaction_id == str(broken["chkNum"])


def test_money_stays_exact() -> None:
    (record,) = _parse(input_file(TESTDATA / "micros_split_tender_change").read_bytes())
    assert isinstance(record, Transaction)
    assert str(record.tenders[1].change) == "2.70"
    assert sum(t.amount - (t.change or 0) for t in record.tenders) == record.total


def test_res_rows_name_their_line() -> None:
    data = b"H|1|2024-05-01|2024-05-01T10:00:00|WS1|1|1.00|\n\nD|1|1|M|5|X|1|1.0x|\n"
    with pytest.raises(ParseError) as caught:
        _parse(data, "res.txt")
    assert caught.value.place == "line 3"


def test_res_column_map_positions_must_be_numbers() -> None:
    data = b"H|1|2024-05-01|2024-05-01T10:00:00|WS1|1|1.00|\n"
    with pytest.raises(ParseError, match=r"columns\.H\.total must be a field position"):
        _parse(data, "res.txt", columns={"H.total": "Total"})


def test_a_tender_map_naming_no_tender_type_is_refused() -> None:
    data = input_file(TESTDATA / "micros_simphony_basic").read_bytes()
    with pytest.raises(ParseError, match=r"columns\.tmed\.101: 'visa' is not a tender type"):
        _parse(data, columns={"tmed.101": "visa"})


def test_res_delimiter_setting() -> None:
    data = b"H;1;2024-05-01;2024-05-01T10:00:00;WS1;1;1.00;\nD;1;1;M;5;X;1;1.00;\n"
    (record,) = _parse(data, "res.txt", delimiter=";")
    assert isinstance(record, Transaction)
    assert record.total == 1


# Detection: auto picks `micros` for its files and leaves other formats' files alone.


@pytest.mark.parametrize("case", AUTO, ids=[c.name for c in AUTO])
def test_sniff_takes_every_micros_input(case: Path) -> None:
    head = input_file(case).read_bytes()[: 64 * 1024]
    assert REGISTRY["micros"].sniff(head)
    assert [n for n, p in REGISTRY.items() if n != "micros" and p.sniff(head)] == []


@pytest.mark.parametrize("case", OTHERS, ids=[c.name for c in OTHERS])
def test_sniff_leaves_other_formats_alone(case: Path) -> None:
    assert not REGISTRY["micros"].sniff(input_file(case).read_bytes()[: 64 * 1024])


# Fuzz: mutated golden inputs; the parser lets nothing but ParseError escape.

NOISE = [b"|", b",", b";", b'"', b"\n", b"{", b"[", b"null", b"1e999", b"\x00", b"\xff"]


def micros_mutations(seeds: list[tuple[Path, bytes]]) -> st.SearchStrategy[tuple[Path, bytes]]:
    return mutations(seeds, NOISE)


def parse_or_refuse(fmt: str, case: Path, data: bytes) -> None:
    """Parse with the case's context; a refusal is fine, anything else fails the test."""
    context, _ = context_for(case, data)
    parse_raw(fmt, data, context)


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(micros_mutations([(c, input_file(c).read_bytes()) for c in GOOD]))
def test_fuzz_only_parse_errors_escape(sample: tuple[Path, bytes]) -> None:
    parse_or_refuse("micros", *sample)
