"""End-of-day summaries reconcile what the till did."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from agent.eod import DayCounts, summarise_day
from contract import SourceRef, Tax, Tender, TenderType, Transaction, TransactionLine

DAY = date(2026, 11, 23)


def _txn(txn_id: str, kind: str, total: str, tenders: list[Tender], currency: str = "EUR"):  # type: ignore[no-untyped-def]
    return Transaction(
        kind=kind,  # type: ignore[arg-type]
        key=f"{kind}:1:1:{DAY}:{txn_id}",
        store="0042",
        register="1",
        business_date=DAY,
        occurred_at=datetime(2026, 11, 23, 18, tzinfo=UTC),
        source=SourceRef(file="a.xml"),
        transaction_id=txn_id,
        currency=currency,
        total=Decimal(total),
        lines=[
            TransactionLine(
                number="1",
                amount=Decimal(total),
                taxes=[
                    Tax(
                        code="VAT19",
                        amount=(Decimal(total) * Decimal("0.19") / Decimal("1.19")).quantize(
                            Decimal(1) if currency == "JPY" else Decimal("0.01")
                        ),
                        included=True,
                    )
                ],
            )
        ],
        tenders=tenders,
    )


def test_summary_by_kind_tender_and_tax() -> None:
    cash = Tender(type=TenderType.CASH, amount=Decimal("50.00"), change=Decimal("2.40"))
    card = Tender(type=TenderType.CARD, amount=Decimal("11.90"))
    refund = Tender(type=TenderType.CARD, amount=Decimal("-11.90"))
    txns = [
        _txn("1", "sale", "47.60", [cash]),
        _txn("2", "sale", "11.90", [card]),
        _txn("3", "return", "-11.90", [refund]),
        _txn("4", "cancel", "5.95", []),
    ]
    (eod,) = summarise_day(
        store="0042",
        business_date=DAY,
        transactions=txns,
        counts=DayCounts(training=2, control=3, suspended=1),
        default_currency="EUR",
        closed_at=datetime(2026, 11, 24, 3, tzinfo=UTC),
    )
    doc = eod.model_dump(mode="json")
    assert doc["by_kind"] == {
        "cancel": {"count": 1, "amount": "5.95"},
        "return": {"count": 1, "amount": "-11.90"},
        "sale": {"count": 2, "amount": "59.50"},
    }
    assert doc["by_tender"] == {
        "card": {"count": 2, "amount": "0.00"},
        "cash": {"count": 1, "amount": "47.60"},
    }
    assert doc["by_tax"]["VAT19"]["count"] == 3  # the cancel adds none
    assert (doc["training"], doc["control"], doc["suspended"]) == (2, 3, 1)
    assert eod.key == "end_of_day:0042:-:2026-11-23:summary"


def test_one_summary_per_currency_and_revisions_get_new_keys() -> None:
    txns = [_txn("1", "sale", "10.00", []), _txn("2", "sale", "1000", [], currency="JPY")]
    summaries = summarise_day(
        store="0042",
        business_date=DAY,
        transactions=txns,
        counts=DayCounts(training=1),
        default_currency="EUR",
        closed_at=datetime(2026, 11, 24, 3, tzinfo=UTC),
        revision=2,
    )
    assert [s.currency for s in summaries] == ["EUR", "JPY"]
    assert [s.key for s in summaries] == [
        "end_of_day:0042:-:2026-11-23:summary-EUR-r2",
        "end_of_day:0042:-:2026-11-23:summary-JPY-r2",
    ]
    assert [s.training for s in summaries] == [1, 0]


def test_a_day_of_only_training_still_closes() -> None:
    (eod,) = summarise_day(
        store="0042",
        business_date=DAY,
        transactions=[],
        counts=DayCounts(training=4),
        default_currency="GBP",
        closed_at=datetime(2026, 11, 24, 3, tzinfo=UTC),
    )
    assert eod.currency == "GBP"
    assert eod.by_kind == {}
    assert eod.training == 4


def test_the_covered_seq_keeps_keys_apart_after_an_outbox_rebuild() -> None:
    before, after = (
        summarise_day(
            store="0042",
            business_date=date(2026, 11, 23),
            transactions=[],
            counts=DayCounts(),
            default_currency="EUR",
            closed_at=datetime(2026, 11, 24, 4, tzinfo=UTC),
            covered=covered,
        )[0].key
        for covered in (812, 57)
    )
    assert before == "end_of_day:0042:-:2026-11-23:summary-s812"
    assert after != before
