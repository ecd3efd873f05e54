"""The outbox on real SQLite files: gap-free seqs, one commit per file, dedupe by key,
pending → sent → acked, budgets that pause intake, sealing, recovery from damage."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from agent.config import OutboxSettings
from agent.outbox import Outbox
from agent.parsers import Parsed, ParseError, Skipped
from agent.sources import BudgetReached, IngestFile
from contract import (
    Customer,
    CustomerRecord,
    Inventory,
    SourceRef,
    Transaction,
    inventory_key,
    make_key,
)
from tests.support.damage import wreck_pages

DAY = date(2024, 5, 1)
WHEN = "2024-05-01T10:15:00+02:00"


def sale(txn: str, total: str = "10.00", day: date = DAY) -> Transaction:
    return Transaction.model_validate(
        {
            "kind": "sale",
            "key": make_key("sale", "0042", "1", day, txn),
            "store": "0042",
            "business_date": day.isoformat(),
            "occurred_at": WHEN,
            "source": {"file": "f.xml", "position": txn},
            "register": "1",
            "transaction_id": txn,
            "currency": "EUR",
            "total": total,
            "lines": [{"number": "1", "sku": "A", "amount": total}],
            "tenders": [{"type": "cash", "amount": total}],
        }
    )


def level(sku: str, qty: str, ref: str) -> Inventory:
    return Inventory(
        kind="inventory",
        key=inventory_key("0042", "L1", sku, ref),
        store="0042",
        business_date=DAY,
        occurred_at=WHEN,  # type: ignore[arg-type]
        source=SourceRef(file="counts.csv"),
        location="L1",
        sku=sku,
        quantity=Decimal(qty),
    )


def file(name: str) -> IngestFile:
    return IngestFile(source="pos", path=f"/in/{name}", name=name, sha256=name * 4, size=1)


async def open_outbox(tmp_path: Path, **settings: Any) -> Outbox:
    return await Outbox.open(
        tmp_path / "outbox.db", OutboxSettings(**settings), key_file=tmp_path / "outbox.key"
    )


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await open_outbox(tmp_path)
    try:
        yield box
    finally:
        await box.close()


def failing_after(items: list[Parsed], n: int) -> Iterator[Parsed]:
    yield from items[:n]
    raise ParseError("unexpected end of file", "line 3")


async def test_seqs_are_gap_free_and_a_file_commits_with_its_mark(outbox: Outbox) -> None:
    first = await outbox.ingest(file("a"), iter([sale("1"), sale("2"), sale("3")]))
    assert (first.inserted, first.duplicates) == (3, 0)
    assert await outbox.is_ingested("a" * 4)
    with pytest.raises(ParseError):
        await outbox.ingest(file("b"), failing_after([sale("4"), sale("5")], 2))
    assert not await outbox.is_ingested("b" * 4)  # nothing of a refused file
    await outbox.ingest(file("c"), iter([sale("6")]))
    rows = await outbox.claim_pending(100)
    assert [r.seq for r in rows] == [1, 2, 3, 4]
    assert [r.key.rsplit(":", 1)[1] for r in rows] == ["1", "2", "3", "6"]


async def test_a_key_already_present_is_not_inserted_again(outbox: Outbox) -> None:
    await outbox.ingest(file("a"), iter([sale("1"), sale("2")]))
    outcome = await outbox.ingest(file("b"), iter([sale("2"), sale("3"), sale("3")]))
    assert (outcome.inserted, outcome.duplicates) == (1, 2)
    again = await outbox.ingest(file("a"), iter([sale("9")]))
    assert again.already_ingested
    assert again.inserted == 0
    assert [r.seq for r in await outbox.claim_pending(10)] == [1, 2, 3]


async def test_skipped_transactions_are_counted_not_queued(outbox: Outbox) -> None:
    items: list[Parsed] = [
        sale("1"),
        Skipped("training", "0042", DAY, "2"),
        Skipped("training", "0042", DAY, "3"),
        Skipped("control", "0042", DAY, "4"),
    ]
    outcome = await outbox.ingest(file("a"), iter(items))
    assert (outcome.inserted, outcome.skipped) == (1, 3)
    assert await outbox.day_skipped(DAY.isoformat()) == {"training": 2, "control": 1}


async def test_rows_go_pending_sent_acked_and_are_purged_after_the_window(outbox: Outbox) -> None:
    await outbox.ingest(file("a"), iter([sale(str(i)) for i in range(1, 6)]))
    sent = await outbox.claim_pending(3)
    assert [r.attempts for r in sent] == [1, 1, 1]
    stats = await outbox.stats()
    assert (stats.pending, stats.sent, stats.acked) == (2, 3, 0)
    assert await outbox.acknowledge([1, 2], {3: "unmapped SKU"}) == 3
    assert await outbox.acknowledge([1, 2], {}) == 0  # an ack that comes twice changes nothing
    stats = await outbox.stats()
    assert (stats.pending, stats.sent, stats.acked, stats.rejected) == (2, 0, 3, 1)
    assert outbox.unacked_rows == 2
    assert await outbox.purge() == 0  # inside the audit window
    assert await outbox.purge(now=10**11) == 3
    assert (await outbox.stats()).acked == 0


async def test_unacknowledged_rows_are_sent_again_with_attempts_counted(outbox: Outbox) -> None:
    await outbox.ingest(file("a"), iter([sale("1"), sale("2")]))
    await outbox.claim_pending(10)
    assert await outbox.claim_pending(10) == []
    assert await outbox.requeue([2]) == 1
    again = await outbox.claim_pending(10)
    assert [(r.seq, r.attempts) for r in again] == [(2, 2)]
    queued, missing = await outbox.resend(1, 2)  # central asks for both
    assert (queued, missing) == (2, 0)
    assert [r.seq for r in await outbox.claim_pending(10)] == [1, 2]


async def test_rows_put_back_go_out_first_even_in_the_middle_of_a_drain(outbox: Outbox) -> None:
    # Full batches: `take` starts where the last one ended instead of walking past the rows
    # in flight, and whatever puts a row back to pending moves that start back.
    await outbox.ingest(file("a"), iter([sale(str(i)) for i in range(1, 13)]))
    assert [r.seq for r in await outbox.claim_pending(3)] == [1, 2, 3]
    assert [r.seq for r in await outbox.claim_pending(3)] == [4, 5, 6]
    assert await outbox.requeue([2]) == 1
    assert [r.seq for r in await outbox.claim_pending(3)] == [2, 7, 8]
    await outbox.acknowledge([1, 2, 3], {})
    assert await outbox.resend(1, 1) == (1, 0)
    assert [r.seq for r in await outbox.claim_pending(3)] == [1, 9, 10]
    assert await outbox.requeue(None) == 8  # a reconnect: everything in flight goes again
    assert [r.seq for r in await outbox.claim_pending(3)] == [1, 4, 5]
    assert [r.seq for r in await outbox.claim_pending(20)] == [6, 7, 8, 9, 10, 11, 12]
    # Nothing left to send: an idle agent looking again costs no database work...
    jobs = outbox._writer.jobs
    assert await outbox.claim_pending(20) == []
    assert outbox._writer.jobs == jobs
    # ...until a row is added or put back.
    await outbox.ingest(file("b"), iter([sale("13")]))
    assert [r.seq for r in await outbox.claim_pending(20)] == [13]
    assert await outbox.requeue([12]) == 1
    assert [r.seq for r in await outbox.claim_pending(20)] == [12]


async def test_resend_of_purged_rows_says_how_many_are_gone(outbox: Outbox) -> None:
    await outbox.ingest(file("a"), iter([sale("1"), sale("2")]))
    await outbox.acknowledge([1, 2], {})
    await outbox.purge(now=10**11)
    queued, missing = await outbox.resend(1, 3)
    assert (queued, missing) == (0, 3)


async def test_reopen_continues_the_sequence_and_resends_what_was_in_flight(
    tmp_path: Path,
) -> None:
    box = await open_outbox(tmp_path)
    await box.ingest(file("a"), iter([sale("1"), sale("2")]))
    await box.claim_pending(10)
    await box.acknowledge([1, 2], {})
    await box.purge(now=10**11)  # no row left to show the last seq
    await box.ingest(file("b"), iter([sale("3")]))
    await box.claim_pending(10)  # seq 3 sent, never acknowledged
    await box.close()

    box = await open_outbox(tmp_path)
    try:
        await box.ingest(file("c"), iter([sale("4")]))
        rows = await box.claim_pending(10)
        assert [r.seq for r in rows] == [3, 4]
        assert rows[0].attempts == 2
    finally:
        await box.close()


async def test_concurrent_writes_share_commits(outbox: Outbox) -> None:
    await asyncio.gather(*(outbox.ingest(file(f"f{i}"), iter([sale(f"{i}")])) for i in range(50)))
    writer = outbox._writer
    assert writer.jobs >= 50
    assert writer.commits < writer.jobs
    assert sorted(r.seq for r in await outbox.claim_pending(100)) == list(range(1, 51))


async def test_budget_pauses_intake_and_resumes_by_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = await open_outbox(tmp_path, max_rows=3)
    try:
        caplog.set_level(logging.INFO, "tillbridge.agent.outbox")
        await box.ingest(file("a"), iter([sale("1"), sale("2")]))
        assert box.accepting()
        # Two more would make four: the file waits whole (never cut), nothing of it is kept.
        with pytest.raises(BudgetReached) as caught:
            await box.ingest(file("b"), iter([sale("3"), sale("4")]))
        assert caught.value.records == 2
        assert (await box.stats()).pending == 2
        assert not await box.is_ingested(file("b").sha256)
        assert not box.accepting()
        assert box.budget == "blocked: buffer full (a file of 2+ records waits for room)"
        await box.refresh_budget()
        assert not box.accepting()  # one record of room is not enough for it
        await box.acknowledge([1], {})
        assert box.accepting()  # one held and two to come make the three allowed
        await box.ingest(file("b"), iter([sale("3"), sale("4")]))
        assert (await box.stats()).pending == 3
        assert box.budget == "blocked: buffer full (3 unacknowledged records)"
        paused = [r for r in caplog.records if r.getMessage().startswith("Intake paused")]
        resumed = [r for r in caplog.records if r.getMessage().startswith("Intake resumed")]
        assert (len(paused), len(resumed)) == (2, 1)  # once per change of state
    finally:
        await box.close()


async def test_a_file_larger_than_the_budget_goes_in_whole_when_nothing_waits(
    tmp_path: Path,
) -> None:
    box = await open_outbox(tmp_path, max_rows=3)
    try:
        # Nothing unacknowledged would ever drain to make room for it: it goes in whole.
        await box.ingest(file("a"), iter([sale(str(n)) for n in range(1, 11)]))
        assert (await box.stats()).pending == 10
        assert not box.accepting()
        # The archive's re-read after a rebuild is never held back by the budget.
        await box.ingest(file("b"), iter([sale("11")]), budget=False)
        assert (await box.stats()).pending == 11
    finally:
        await box.close()


async def test_low_disk_pauses_intake(tmp_path: Path) -> None:
    box = await open_outbox(tmp_path, min_free_disk_mb=10**9)  # more than any disk has
    try:
        assert not box.accepting()
        assert box.budget.startswith("blocked: disk low")
    finally:
        await box.close()


async def test_customer_contact_is_sealed_at_rest(tmp_path: Path) -> None:
    box = await open_outbox(tmp_path)
    record = CustomerRecord(
        kind="customer",
        key="customer:0042:C7",
        store="0042",
        business_date=DAY,
        occurred_at=WHEN,  # type: ignore[arg-type]
        source=SourceRef(file="c.json"),
        customer=Customer(pos_customer_id="C7", email="ann@example.com", phone="+491701234567"),
    )
    try:
        await box.ingest(file("a"), iter([record, sale("1")]))
        rows = await box.claim_pending(10)
        assert b"ann@example.com" in rows[0].wire  # the uplink gets it back
    finally:
        await box.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("outbox.db*"))
    assert b"ann@example.com" not in raw
    assert b"+491701234567" not in raw
    assert b'"transaction_id":"1"' in raw  # other records stay plain JSON
    assert (tmp_path / "outbox.key").stat().st_mode & 0o077 == 0


async def test_unchanged_inventory_levels_are_not_sent_again(outbox: Outbox) -> None:
    first = await outbox.ingest(file("a"), iter([level("A", "5", "r1"), level("B", "2", "r1")]))
    second = await outbox.ingest(file("b"), iter([level("A", "5", "r2"), level("B", "1", "r2")]))
    third = await outbox.ingest(file("c"), iter([level("A", "5", "r3"), level("B", "2", "r3")]))
    assert (first.inserted, second.inserted, third.inserted) == (2, 1, 1)
    rows = await outbox.claim_pending(10)
    assert [r.key for r in rows] == [
        inventory_key("0042", "L1", "A", "r1"),
        inventory_key("0042", "L1", "B", "r1"),
        inventory_key("0042", "L1", "B", "r2"),
        inventory_key("0042", "L1", "B", "r3"),
    ]


async def test_a_damaged_database_is_moved_aside_and_rebuilt(tmp_path: Path) -> None:
    box = await open_outbox(tmp_path)
    await box.ingest(file("a"), iter([sale(str(i)) for i in range(1, 200)]))
    await box.close()
    db = tmp_path / "outbox.db"
    wreck_pages(db, 1)  # pages in the middle

    box = await open_outbox(tmp_path)
    try:
        assert box.recovery is not None
        assert box.recovery.moved_to.exists()  # kept, never deleted
        stats = await box.stats()
        assert stats.recovered is not None
        assert "rebuilt" in stats.recovered
        await box.ingest(file("b"), iter([sale("500")]))
        rows = await box.claim_pending(10)
        assert rows[0].seq > box.recovery.last_seq
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    finally:
        await box.close()


async def test_day_summaries_are_due_once_and_again_after_late_records(outbox: Outbox) -> None:
    await outbox.ingest(file("a"), iter([sale("1"), sale("2", day=date(2024, 5, 2))]))
    due = await outbox.days_to_summarise(closed_before="2024-05-02")
    assert due == [("2024-05-01", 1)]
    transactions, covered = await outbox.day_transactions("2024-05-01")
    assert (len(transactions), covered) == (1, 1)
    await outbox.add_day_summary("2024-05-01", 1, [], covered)
    assert await outbox.days_to_summarise(closed_before="2024-05-02") == []
    await outbox.ingest(file("b"), iter([sale("3")]))  # late record of a closed day
    assert await outbox.days_to_summarise(closed_before="2024-05-02") == [("2024-05-01", 2)]
    transactions, covered = await outbox.day_transactions("2024-05-01")
    assert (len(transactions), covered) == (2, 3)


async def test_the_byte_budget_pauses_intake(tmp_path: Path) -> None:
    box = await open_outbox(tmp_path, max_bytes=1500)
    try:
        await box.ingest(file("a"), iter([sale("1")]))
        assert box.accepting()
        with pytest.raises(BudgetReached):
            await box.ingest(file("b"), iter([sale("2"), sale("3")]))
        assert box.unacked_bytes < 1500
        assert not box.accepting()
        assert box.budget.startswith("blocked: buffer full")
        await box.acknowledge([1], {})
        assert box.accepting()
        await box.ingest(file("b"), iter([sale("2"), sale("3")]))
        assert box.unacked_bytes >= 1024
        assert not box.accepting()
        assert "bytes unacknowledged" in box.budget
    finally:
        await box.close()


async def test_the_age_budget_pauses_intake_until_the_old_record_is_acknowledged(
    tmp_path: Path,
) -> None:
    box = await open_outbox(tmp_path, max_age_days=0.2 / 86400)  # 0.2 s
    try:
        await box.ingest(file("a"), iter([sale("1")]))
        await box.refresh_budget()
        assert box.accepting()
        await asyncio.sleep(0.4)
        assert await box.refresh_budget() == (
            "blocked: buffer full (oldest unacknowledged record is too old)"
        )
        assert not box.accepting()
        await box.acknowledge([1], {})
        assert await box.refresh_budget() == "ok"
    finally:
        await box.close()


async def test_a_new_outbox_marks_its_re_read_from_the_archives_first_day(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    for day in ("2024-03-17", "2024-03-16", "not-a-day"):
        (archive / day).mkdir(parents=True)
    box = await Outbox.open(
        tmp_path / "outbox.db", OutboxSettings(), key_file=tmp_path / "k", archive_dir=archive
    )
    try:
        assert box.reread is not None
        assert (box.reread["since"], box.reread["reason"]) == ("2024-03-16", "new outbox")
        await box.finish_reread()
    finally:
        await box.close()
    again = await Outbox.open(
        tmp_path / "outbox.db", OutboxSettings(), key_file=tmp_path / "k", archive_dir=archive
    )
    try:
        assert again.reread is None  # finished: the next start reads nothing again
    finally:
        await again.close()
