"""The `magestore` parser: web POS orders and credit memos, JSON and CSV: golden cases,
keys across files and shapes, the UTC rule, places in refusals, detection and fuzzed input."""

from __future__ import annotations

import hashlib
import json
import zoneinfo
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given

from agent.parsers import REGISTRY, ParseContext, Parsed, ParseError, Skipped, parse_bytes
from contract import Refused, Transaction

from .golden import TESTDATA, cases, check_case, input_file
from .test_micros import FUZZ, micros_mutations, parse_or_refuse

CASES = cases("magestore_")
GOOD = [c for c in CASES if (c / "expected.json").exists()]
# Cases that name their format leave it to no detection (a column-mapped CSV, for one).
AUTO = [c for c in GOOD if "format" not in json.loads((c / "context.json").read_text())]
OTHERS = [c for c in TESTDATA.iterdir() if c.is_dir() and not c.name.startswith("magestore_")]
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Path) -> None:
    check_case(case)


def _parse(data: bytes, name: str = "orders.json", **kw: Any) -> list[Transaction]:
    sha = hashlib.sha256(data).hexdigest()
    context = ParseContext(file_name=name, sha256=sha, store="0042", timezone=BERLIN, **kw)
    records = parse_bytes(data, "magestore", context=context)
    assert all(isinstance(r, Transaction) for r in records)
    return records  # type: ignore[return-value]


def _parse_all(data: bytes) -> list[Parsed]:
    """Everything a file gives, refused orders included."""
    sha = hashlib.sha256(data).hexdigest()
    context = ParseContext(file_name="orders.json", sha256=sha, store="0042", timezone=BERLIN)
    return parse_bytes(data, "magestore", context=context)


def _json(case: str) -> Any:
    return json.loads(input_file(TESTDATA / case).read_text())


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc).encode()


# Keys: the same order or memo gives the same key in every file and shape.


def test_a_credit_memo_returns_against_the_order_it_refunds() -> None:
    sale, refund = _parse(input_file(TESTDATA / "magestore_creditmemo_return").read_bytes())
    assert refund.kind == "return"
    assert refund.links[0].key == sale.key
    assert refund.lines[0].link is not None
    assert refund.lines[0].link.key == sale.key
    assert refund.lines[0].link.line == sale.lines[0].number
    assert refund.total == -sum(t.amount for t in sale.tenders) / 2
    assert sum(t.amount for t in refund.tenders) == refund.total


def test_a_credit_memo_has_one_key_inside_its_order_or_exported_alone() -> None:
    order = _json("magestore_creditmemo_return")[0]
    memo = {**order["creditmemos"][0], "order_increment_id": order["increment_id"]}
    _, inside = _parse(_bytes([order]))
    (alone,) = _parse(_bytes([memo]), "memos.json")
    assert inside.key == alone.key == "return:0042:-:2024-05-03:CM000005"
    assert alone.links[0].transaction_id == "POS000103"


def test_the_search_result_list_and_single_order_shapes_agree() -> None:
    doc = _json("magestore_search_result_shape")
    (order,) = doc["items"]
    shapes = [_bytes(doc), _bytes([order]), _bytes(order)]
    assert len({tuple(r.key for r in _parse(s)) for s in shapes}) == 1


def test_csv_and_json_give_the_same_key() -> None:
    (from_csv, _) = _parse(input_file(TESTDATA / "magestore_csv").read_bytes(), "orders.csv")
    order = {
        "increment_id": "POS000201",
        "created_at": "2024-05-01 09:00:00",
        "grand_total": "23.80",
        "pos_id": "2",
        "items": [{"sku": "MB-01", "qty_ordered": "1", "row_total": "23.80"}],
        "pos_location_id": "1",
    }
    (from_json,) = _parse(_bytes([order]))
    assert from_csv.key == from_json.key == "sale:0042:2:2024-05-01:POS000201"


# Times: Magento's created_at is UTC without an offset.


def test_created_at_is_utc_and_the_business_day_is_local() -> None:
    (record,) = _parse(input_file(TESTDATA / "magestore_tax_included").read_bytes())
    assert record.occurred_at.isoformat() == "2024-05-02T00:15:30+02:00"
    assert str(record.business_date) == "2024-05-02"
    explicit = _json("magestore_tax_included")
    explicit[0]["created_at"] = "2024-05-01T22:15:30+00:00"
    (same,) = _parse(_bytes(explicit))
    assert same.occurred_at == record.occurred_at


# Money: exact, and what does not add up is the imbalance, never a rewritten total.


def test_an_order_that_does_not_add_up_keeps_its_total() -> None:
    doc = _json("magestore_order_basic")
    doc[0]["grand_total"] = "41.00"
    (record,) = _parse(_bytes(doc))
    assert str(record.total) == "41.00"
    assert str(record.imbalance) == "0.54"


def test_amounts_no_till_can_hold_are_refused() -> None:
    doc = _json("magestore_order_basic")
    doc[0]["items"][0]["row_total"] = "1" + "0" * 30  # 1e30 written out (E notation has a rule)
    (item,) = _parse_all(_bytes(doc))
    assert isinstance(item, Refused)
    assert "out of range" in item.reason
    assert item.place == "[0].items[0].row_total"


def test_one_unreadable_order_never_holds_back_the_others() -> None:
    doc = _json("magestore_order_basic")
    broken = dict(
        doc[0],
        increment_id="POS-BROKEN",
        grand_total="twelve",
        customer_email="erika@example.com",
        billing_address={"firstname": "Erika", "street": ["Heidestrasse 1"]},
    )
    doc.insert(0, broken)
    items = _parse_all(_bytes(doc))
    assert [item.kind for item in items if not isinstance(item, Skipped)] == ["refused", "sale"]
    item = items[0]
    assert isinstance(item, Refused)
    assert item.transaction_id == "POS-BROKEN"
    assert item.place.startswith("[0]")
    fragment = json.loads(item.fragment)
    assert fragment["increment_id"] == "POS-BROKEN"
    # Contact details never reach a kept fragment.
    assert fragment["customer_email"] == fragment["billing_address"] == "(blanked)"
    assert "Erika" not in item.fragment


def test_csv_refusals_name_line_and_column() -> None:
    data = (
        input_file(TESTDATA / "magestore_csv")
        .read_bytes()
        .replace(b",10.00,10.00,", b",10.00,x,", 1)
    )
    with pytest.raises(ParseError) as caught:
        _parse(data, "orders.csv")
    assert caught.value.place == 'line 2, column "row_total"'


def test_payments_map_to_tender_types() -> None:
    doc = _json("magestore_split_payment")
    doc[0]["payments"][0].update(method="cp1forpos", title="Custom Payment 1")
    (plain,) = _parse(_bytes(doc))
    (mapped,) = _parse(_bytes(doc), columns={"payment.cp1forpos": "voucher"})
    assert [t.type for t in plain.tenders] == ["other", "card"]
    assert [t.type for t in mapped.tenders] == ["voucher", "card"]


def test_refund_payments_are_not_sale_tenders() -> None:
    doc = _json("magestore_creditmemo_return")
    memo = doc[0]["creditmemos"][0]
    doc[0]["payments"] += memo.pop("payments")
    sale, refund = _parse(_bytes(doc))
    assert [str(t.amount) for t in sale.tenders] == ["23.80"]
    assert [str(t.amount) for t in refund.tenders] == ["-11.90"]


# Detection: auto picks `magestore` for its files and leaves other formats' files alone.


@pytest.mark.parametrize("case", AUTO, ids=[c.name for c in AUTO])
def test_sniff_takes_every_magestore_input(case: Path) -> None:
    head = input_file(case).read_bytes()[: 64 * 1024]
    assert REGISTRY["magestore"].sniff(head)
    taken = [
        n for n, p in REGISTRY.items() if n not in ("magestore", "inventory") and p.sniff(head)
    ]
    assert taken == []


@pytest.mark.parametrize("case", OTHERS, ids=[c.name for c in OTHERS])
def test_sniff_leaves_other_formats_alone(case: Path) -> None:
    assert not REGISTRY["magestore"].sniff(input_file(case).read_bytes()[: 64 * 1024])


# Fuzz: mutated golden inputs; the parser lets nothing but ParseError escape.


@FUZZ
@given(micros_mutations([(c, input_file(c).read_bytes()) for c in GOOD]))
def test_fuzz_only_parse_errors_escape(sample: tuple[Path, bytes]) -> None:
    parse_or_refuse("magestore", *sample)
