"""The real-world corpus: exports other producers wrote (or, where a file's licence does
not allow it here, a minimal file with the same shape), read as a new store would.

Each case folder holds `input.*`, an optional `context.json` (as for golden cases) and an
`expected.json` whose values were read off the file's own totals by hand (SOURCES.md
says where each file comes from). Per transaction, in file order, the record's kind and
total must match, it must balance (`imbalance` 0 and tenders net of change and cash back
equal to the total) unless the case says by how much it does not, and every other value
the case lists must match. The expected values themselves must add up, so a typo in a
case fails as surely as a parser bug.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.parsers import Skipped, parse_bytes
from contract import LineType, Refused, Transaction

from .golden import context_for, input_file

CORPUS = Path(__file__).parent / "realworld"
CASES = sorted(p for p in CORPUS.iterdir() if (p / "expected.json").exists())
ZERO = Decimal(0)


def _facts(txn: Transaction) -> dict[str, Any]:
    """The values a case may pin, computed from one record."""
    live = [ln for ln in txn.lines if not ln.voided]
    items = [ln for ln in live if ln.type is LineType.ITEM]
    taxes = txn.taxes or [t for ln in live for t in ln.taxes]
    return {
        "lines": sum((ln.amount for ln in live), ZERO),
        "line_discounts": sum((d.amount for ln in live for d in ln.discounts), ZERO),
        "discounts": sum((d.amount for d in txn.discounts), ZERO),
        "rounding": sum((ln.amount for ln in live if ln.type is LineType.ROUNDING), ZERO),
        "tax": sum((t.amount for t in taxes), ZERO),
        "tax_excluded": sum((t.amount for t in taxes if not t.included), ZERO),
        "paid": sum(
            (t.amount - (t.change or ZERO) - (t.cashback or ZERO) for t in txn.tenders), ZERO
        ),
        "change": sum((t.change or ZERO for t in txn.tenders), ZERO),
        "cashback": sum((t.cashback or ZERO for t in txn.tenders), ZERO),
        "tenders": [[t.type.value, str(t.amount)] for t in txn.tenders],
        "returned_lines": sum(1 for ln in items if ln.quantity < 0),
        "voided_lines": sum(1 for ln in txn.lines if ln.voided),
        "line_amounts": [str(ln.amount) for ln in items],
        "unit_prices": [str(ln.unit_price) for ln in items],
        "quantities": [str(ln.quantity) for ln in items],
        "links": [
            {
                "store": link.store,
                "register": link.register,
                "business_date": link.business_date and link.business_date.isoformat(),
                "transaction_id": link.transaction_id,
            }
            for link in txn.links
        ],
        "rates": sorted({str(t.rate) for t in taxes if t.rate is not None}),
        "attributes": txn.attributes,
        "currency": txn.currency,
    }


def _same(name: str, got: Any, want: Any) -> bool:
    if isinstance(got, Decimal):
        return got == Decimal(want)
    if name == "attributes":
        return all(got.get(k) == v for k, v in want.items())
    return bool(got == want)


def _check_expected_adds_up(case: str, entry: dict[str, Any]) -> None:
    """The case's own numbers meet its total: lines − line discounts + excluded taxes −
    transaction discounts = total (rounding lines are lines), and paid = total."""
    total = Decimal(entry["total"]) - Decimal(entry.get("imbalance", "0"))
    if "lines" in entry:
        expected = (
            Decimal(entry["lines"])
            - Decimal(entry.get("line_discounts", "0"))
            + Decimal(entry.get("tax_excluded", "0"))
            - Decimal(entry.get("discounts", "0"))
        )
        assert expected == total, f"{case} {entry['transaction_id']}: the case does not add up"
    if "paid" in entry and "tender_imbalance" not in entry:
        assert Decimal(entry["paid"]) == Decimal(entry["total"]), f"{case}: paid ≠ total"


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_realworld_case(case: Path) -> None:
    data = input_file(case).read_bytes()
    context, fmt = context_for(case, data)
    expected = json.loads((case / "expected.json").read_text())
    items = parse_bytes(data, fmt, context=context)

    skipped = Counter(item.reason for item in items if isinstance(item, Skipped))
    assert dict(skipped) == expected.get("skipped", {})

    refused = [item for item in items if isinstance(item, Refused)]
    assert len(refused) == len(expected.get("refused", []))
    for got_refusal, want_refusal in zip(refused, expected.get("refused", []), strict=True):
        assert got_refusal.transaction_id == want_refusal["transaction_id"]
        assert got_refusal.place == want_refusal["place"]
        assert want_refusal["reason"] in got_refusal.reason
        assert got_refusal.fragment

    records = [item for item in items if isinstance(item, Transaction)]
    wanted = expected["transactions"]
    assert [r.transaction_id for r in records] == [w["transaction_id"] for w in wanted]
    for record, want in zip(records, wanted, strict=True):
        _check_expected_adds_up(case.name, want)
        where = f"{case.name} transaction {record.transaction_id}"
        assert record.kind == want["kind"], where
        assert record.total == Decimal(want["total"]), where
        assert record.imbalance == Decimal(want.get("imbalance", "0")), where
        assert record.attributes.get("tender_imbalance") == want.get("tender_imbalance"), where
        facts = _facts(record)
        for name, value in want.items():
            if name in facts:
                assert _same(name, facts[name], value), f"{where}: {name} {facts[name]!r}"


def test_the_corpus_covers_the_producers_it_claims() -> None:
    producers = {json.loads((c / "expected.json").read_text())["producer"] for c in CASES}
    sources = (CORPUS / "SOURCES.md").read_text()
    for case in CASES:
        assert f"`{case.name}`" in sources, f"{case.name} is not in SOURCES.md"
    assert "NCR ACS" in producers
    # Exports other teams wrote (or minimal files of their shape), not hand-made semantics.
    real = {p for p in producers if not p.startswith("hand-written")}
    assert len(real) >= 8, sorted(real)
