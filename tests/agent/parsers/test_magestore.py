"""The `magestore` parser: web POS orders and credit memos, JSON and CSV."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.contract import Transaction
from agent.parsers import ParseContext, parse_bytes

from .golden import TESTDATA, cases, check_case, input_file

CASES = cases("magestore_")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path) -> None:
    check_case(case)


def test_a_credit_memo_returns_against_the_order_it_refunds() -> None:
    data = input_file(TESTDATA / "magestore_creditmemo_return").read_bytes()
    context = ParseContext(file_name="orders.json", store="0042")
    sale, refund = parse_bytes(data, "magestore", context=context)
    assert isinstance(sale, Transaction)
    assert isinstance(refund, Transaction)
    assert refund.kind == "return"
    assert refund.links[0].key == sale.key
    assert refund.lines[0].link is not None
    assert refund.lines[0].link.key == sale.key
    assert refund.total == -sum(t.amount for t in sale.tenders) / 2
