"""The `micros` parser: Simphony guest check JSON and RES 3700 delimited exports."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from agent.parsers import ParseContext, parse_bytes

from .golden import TESTDATA, cases, check_case, input_file

CASES = cases("micros_")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path) -> None:
    check_case(case)


def _keys(data: bytes, name: str) -> list[str]:
    context = ParseContext(file_name=name, sha256=hashlib.sha256(data).hexdigest(), store="0042")
    return [r.key for r in parse_bytes(data, "micros", context=context)]


def test_a_check_exported_again_keeps_its_key() -> None:
    data = input_file(TESTDATA / "micros_simphony_basic").read_bytes()
    again = data.replace(b'"curUTC": "2024-05-02T02:00:00"', b'"curUTC": "2024-05-03T02:00:00"')
    assert again != data
    assert _keys(data, "day1.json") == _keys(again, "day2.json")


def test_a_reopened_check_is_a_new_closing_linked_to_the_first() -> None:
    data = input_file(TESTDATA / "micros_reopened").read_bytes()
    first, second = parse_bytes(data, "micros", context=ParseContext(file_name="r.json"))
    assert first.key != second.key
    assert second.links[0].key == first.key  # type: ignore[union-attr]
