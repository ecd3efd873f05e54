"""A store's seqs cannot make the relay's gap tracking work in their size: one record with
seq 2**63-1 is one receipt range and one gap, in milliseconds, on both backends."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from central.inbox import Inbox, IncomingRecord
from central.inbox._sql import holes, merge_ranges, runs
from tests.support.records import sale_body

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
TOP = 9_223_372_036_854_775_807


def incoming(seq: int, txn: str) -> IncomingRecord:
    body = sale_body("0042", txn)
    return IncomingRecord(
        seq=seq,
        key=str(body["key"]),
        kind="sale",
        correlation_id=f"c{seq}",
        occurred_at=T0,
        body=body,
    )


def test_ranges_are_computed_from_ranges_not_from_their_width() -> None:
    assert runs([5, 1, 2, 3, 9, 8]) == [(1, 3), (5, 5), (8, 9)]
    assert merge_ranges([(10, 20), (1, 4), (5, 7), (15, 30)]) == [(1, 7), (10, 30)]
    started = time.perf_counter()
    assert holes(0, [(TOP, TOP)]) == [(1, TOP - 1)]
    assert holes(3, [(6, 7), (10, 10)]) == [(4, 5), (8, 9)]
    assert time.perf_counter() - started < 0.01


async def test_the_largest_seq_is_one_gap_in_milliseconds(inbox: Inbox) -> None:
    await inbox.insert_batch("0042", [incoming(1, "T1")], now=T0)
    started = time.perf_counter()
    await inbox.insert_batch("0042", [incoming(TOP, "T2")], now=T0)
    assert time.perf_counter() - started < 2
    gaps = await inbox.gaps("0042")
    assert [(g.from_seq, g.to_seq) for g in gaps] == [(2, TOP - 1)]
    (store,) = await inbox.stores()
    assert (store.contiguous_seq, store.max_seq) == (1, TOP)
    # The counts still add up (no integer overflow in the sum of the missing seqs).
    stats = await inbox.stats()
    assert stats["gaps"] == 1
    assert stats["missing"] >= TOP - 3
    # The stream goes on: the next seqs fill the gap from below and stay a few rows.
    await inbox.insert_batch("0042", [incoming(s, f"T{s + 10}") for s in range(2, 500)], now=T0)
    gaps = await inbox.gaps("0042")
    assert [(g.from_seq, g.to_seq) for g in gaps] == [(500, TOP - 1)]
    (store,) = await inbox.stores()
    assert store.contiguous_seq == 499


async def test_a_stream_behind_one_missing_seq_closes_when_it_comes(inbox: Inbox) -> None:
    # seq 1 never comes: every later batch lands above the watermark.
    for start in range(2, 2002, 200):
        batch = [incoming(s, f"T{s}") for s in range(start, start + 200)]
        await inbox.insert_batch("0042", batch, now=T0)
    gaps = await inbox.gaps("0042")
    assert [(g.from_seq, g.to_seq) for g in gaps] == [(1, 1)]
    await inbox.insert_batch("0042", [incoming(1, "T1")], now=T0)
    assert await inbox.gaps("0042") == []
    (store,) = await inbox.stores()
    assert (store.contiguous_seq, store.max_seq) == (2001, 2001)
