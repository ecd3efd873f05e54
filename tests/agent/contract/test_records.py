"""The record contract: round trips, money as decimal strings, deterministic keys."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contract import (
    SourceRef,
    Transaction,
    TransactionLine,
    currency_exponent,
    key_digest,
    make_key,
    record_adapter,
)
from tests.support.strategies import ids, inventories, transactions


def _floats_in(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats_in(v)]
    if isinstance(value, list):
        return [f for v in value for f in _floats_in(v)]
    return []


@settings(max_examples=150, deadline=None)
@given(st.one_of(transactions(), inventories()))
def test_record_round_trips_through_json(record: object) -> None:
    text = record_adapter.dump_json(record)  # type: ignore[arg-type]
    again = record_adapter.validate_json(text)
    assert again == record
    assert record_adapter.dump_json(again) == text


@settings(max_examples=150, deadline=None)
@given(transactions())
def test_no_float_ever_appears_in_serialised_money(record: Transaction) -> None:
    doc = json.loads(record.model_dump_json(), parse_float=lambda s: float(s))
    assert _floats_in(doc) == []
    assert isinstance(doc["total"], str)
    exp = currency_exponent(record.currency)
    # The total carries exactly the currency's exponent.
    assert len(doc["total"].partition(".")[2]) == exp


def _sale(**overrides: object) -> Transaction:
    base: dict[str, object] = {
        "kind": "sale",
        "key": "sale:1:1:2026-01-01:1",
        "store": "1",
        "business_date": "2026-01-01",
        "occurred_at": "2026-01-01T10:00:00+01:00",
        "source": SourceRef(file="a.xml"),
        "transaction_id": "1",
        "currency": "EUR",
        "total": "10",
    }
    base.update(overrides)
    return Transaction.model_validate(base)


def test_amounts_take_the_currency_exponent() -> None:
    sale = _sale(total="12.3", lines=[{"number": "1", "amount": "12.3", "unit_price": "4.1005"}])
    assert sale.model_dump(mode="json")["total"] == "12.30"
    assert sale.model_dump(mode="json")["lines"][0]["amount"] == "12.30"
    # Unit prices keep the POS's precision.
    assert sale.model_dump(mode="json")["lines"][0]["unit_price"] == "4.1005"
    yen = _sale(currency="JPY", total="1200")
    assert yen.model_dump(mode="json")["total"] == "1200"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("total", 12.3, "never floats"),
        ("total", "12.345", "more decimals than EUR"),
        ("total", "NaN", "not a finite number"),
        ("total", "twelve", "not a decimal number"),
        ("currency", "eur", "String should match pattern"),
        ("occurred_at", "2026-01-01T10:00:00", "timezone"),
    ],
)
def test_bad_money_and_times_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _sale(**{field: value})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        _sale(totl="1.00")


def test_imbalance_says_by_how_much_lines_do_not_reconcile() -> None:
    lines = [
        TransactionLine(number="1", amount=Decimal("10.00")),
        TransactionLine(number="2", amount=Decimal("5.00"), voided=True),
        TransactionLine(number="3", amount=Decimal("2.50")),
    ]
    assert Transaction.compute_imbalance(Decimal("12.50"), lines, [], [], "EUR") == Decimal("0")
    assert Transaction.compute_imbalance(Decimal("12.51"), lines, [], [], "EUR") == Decimal("0.01")


@given(ids, ids, st.dates(), ids)
def test_same_pos_transaction_always_gives_the_same_key(
    store: str, register: str, day: date, txn: str
) -> None:
    first = make_key("sale", store, register, day, txn)
    assert first == make_key("sale", store.strip(), register, day.isoformat(), txn)
    assert first.count(":") == 4  # separators are never ambiguous
    assert make_key("return", store, register, day, txn) != first
    assert key_digest(first) == key_digest(make_key("sale", store, register, day, txn))


def test_keys_differ_across_registers_and_days() -> None:
    a = make_key("sale", "0042", "1", date(2026, 1, 1), "100")
    assert a == "sale:0042:1:2026-01-01:100"
    assert make_key("sale", "0042", "2", date(2026, 1, 1), "100") != a
    assert make_key("sale", "0042", "1", date(2026, 1, 2), "100") != a
    assert make_key("sale", "0042", None, date(2026, 1, 1), "100") == "sale:0042:-:2026-01-01:100"
    assert make_key("sale", "a:b", "1", "2026-01-01", "x y") == "sale:a%3Ab:1:2026-01-01:x%20y"
    with pytest.raises(ValueError, match="empty"):
        make_key("sale", "0042", "1", "2026-01-01", " ")
