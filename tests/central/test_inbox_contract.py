"""One contract suite, run against every inbox backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from central.inbox import Inbox, IncomingRecord, InvalidRecord, RecordState, open_inbox
from contract import AgentInfo, Heartbeat, Release
from tests.support.online_orders import cancel, order, queued
from tests.support.records import return_body, sale_body

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def incoming(seq: int, body: dict[str, object], link: str | None = None) -> IncomingRecord:
    return IncomingRecord(
        seq=seq,
        key=str(body["key"]),
        kind=str(body["kind"]),
        correlation_id=f"c{seq}",
        occurred_at=T0,
        body=body,
        link_key=link,
    )


def sales(store: str, seqs: range) -> list[IncomingRecord]:
    return [incoming(s, sale_body(store, f"T{s}")) for s in seqs]


async def test_a_new_inbox_is_empty_and_stats_have_their_shape(inbox: Inbox) -> None:
    stats = await inbox.stats()
    assert list(stats)[:5] == ["records", "by_state", "stores", "exceptions", "duplicates"]
    assert stats["records"] == 0
    assert stats["by_state"] == {s.value: 0 for s in RecordState}
    assert (stats["stores"], stats["exceptions"], stats["duplicates"]) == (0, 0, 0)


async def test_reopening_applies_no_migration_twice(inbox_url: str) -> None:
    first = await open_inbox(inbox_url)
    await first.insert_batch("0042", sales("0042", range(1, 3)))
    await first.close()
    second = await open_inbox(inbox_url)
    try:
        assert (await second.stats())["records"] == 2
    finally:
        await second.close()


async def test_duplicates_never_create_a_second_record(inbox: Inbox) -> None:
    committed, duplicates = await inbox.insert_batch("0042", sales("0042", range(1, 4)))
    assert (committed, duplicates) == ([1, 2, 3], [])
    again = await inbox.insert_batch("0042", sales("0042", range(1, 5)))
    assert again.committed == [4]
    assert again.duplicates == [1, 2, 3]
    # The same POS transaction under a new seq (another file) is still one record.
    same_txn = incoming(5, sale_body("0042", "T1"))
    assert await inbox.insert_batch("0042", [same_txn]) == ([], [5])
    stats = await inbox.stats()
    assert stats["records"] == 4
    assert stats["by_state"]["received"] == 4
    assert stats["duplicates"] == 4
    assert stats["stores"] == 1


async def test_a_batch_repeating_a_key_commits_it_once(inbox: Inbox) -> None:
    body = sale_body("0042", "T1")
    result = await inbox.insert_batch("0042", [incoming(1, body), incoming(2, body)])
    assert result == ([1], [2])
    assert (await inbox.stats())["records"] == 1


async def test_every_record_starts_a_state_history(inbox: Inbox) -> None:
    await inbox.insert_batch("0042", sales("0042", range(1, 2)), now=T0)
    record = await inbox.record_by_key(str(sale_body("0042", "T1")["key"]))
    assert record is not None
    assert record.state is RecordState.RECEIVED
    assert record.body["transaction_id"] == "T1"
    claimed = await inbox.claim(10, "relay-a", LEASE, now=T0)
    await inbox.transition([claimed[0].id], RecordState.ROUTED, relay_id="relay-a", now=T0)
    await inbox.transition([claimed[0].id], RecordState.POSTED, relay_id="relay-a", now=T0)
    history = await inbox.history(record.id)
    assert [h[0] for h in history] == ["received", "routed", "posted"]
    assert all(h[1] == T0 for h in history)


async def test_claims_hand_each_record_to_one_relay(inbox: Inbox) -> None:
    await inbox.insert_batch("0042", sales("0042", range(1, 6)), now=T0)
    first = await inbox.claim(3, "relay-a", LEASE, now=T0)
    second = await inbox.claim(10, "relay-b", LEASE, now=T0)
    assert [r.seq for r in first] == [1, 2, 3]
    assert [r.seq for r in second] == [4, 5]
    assert await inbox.claim(10, "relay-c", LEASE, now=T0) == []
    # Another relay's live lease keeps its records from being moved by anyone else.
    moved = await inbox.transition([first[0].id], RecordState.POSTED, relay_id="relay-b", now=T0)
    assert moved == []
    # After the lease runs out, the work can be claimed again.
    later = T0 + LEASE + timedelta(seconds=1)
    again = await inbox.claim(10, "relay-c", LEASE, now=later)
    assert sorted(r.seq for r in again) == [1, 2, 3, 4, 5]


async def test_retrying_records_wait_for_their_time(inbox: Inbox) -> None:
    await inbox.insert_batch("0042", sales("0042", range(1, 2)), now=T0)
    (claimed,) = await inbox.claim(1, "relay-a", LEASE, now=T0)
    retry_at = T0 + timedelta(minutes=1)
    moved = await inbox.transition(
        [claimed.id], RecordState.RETRYING, relay_id="relay-a", retry_at=retry_at, now=T0
    )
    assert moved == [claimed.id]
    assert await inbox.claim(1, "relay-a", LEASE, now=T0 + timedelta(seconds=30)) == []
    (again,) = await inbox.claim(1, "relay-a", LEASE, now=retry_at)
    assert (again.state, again.attempts) == (RecordState.RETRYING, 1)


async def test_posted_is_final(inbox: Inbox) -> None:
    await inbox.insert_batch("0042", sales("0042", range(1, 2)), now=T0)
    (claimed,) = await inbox.claim(1, "relay-a", LEASE, now=T0)
    await inbox.transition([claimed.id], RecordState.POSTED, relay_id="relay-a")
    assert await inbox.transition([claimed.id], RecordState.RETRYING, relay_id="relay-a") == []
    assert await inbox.claim(1, "relay-a", LEASE) == []


async def test_concurrent_claims_from_two_connections_never_overlap(inbox_url: str) -> None:
    one = await open_inbox(inbox_url, relay_id="relay-a")
    two = await open_inbox(inbox_url, relay_id="relay-b")
    try:
        for start in range(1, 201, 50):
            await one.insert_batch("0042", sales("0042", range(start, start + 50)))

        async def drain(inbox: Inbox, relay: str) -> list[int]:
            taken: list[int] = []
            while batch := await inbox.claim(7, relay, LEASE):
                taken += [r.id for r in batch]
                await asyncio.sleep(0)
            return taken

        a, b = await asyncio.gather(drain(one, "relay-a"), drain(two, "relay-b"))
        assert not set(a) & set(b)
        assert len(a) + len(b) == 200
        assert len(set(a) | set(b)) == 200
    finally:
        await one.close()
        await two.close()


async def test_a_return_is_parked_until_its_sale_is_posted(inbox: Inbox) -> None:
    sale = sale_body("0042", "T1")
    ret = return_body("0042", "R1", original="T1")
    link = str(sale["key"])
    result = await inbox.insert_batch(
        "0042", [incoming(1, ret, link=link), incoming(2, sale)], now=T0
    )
    assert result.committed == [1, 2]
    parked = await inbox.record_by_key(str(ret["key"]))
    assert parked is not None
    assert parked.state is RecordState.PARKED
    claimed = await inbox.claim(10, "relay-a", LEASE, now=T0)
    assert [r.key for r in claimed] == [link]  # a parked record is not handed out
    await inbox.transition([claimed[0].id], RecordState.POSTED, relay_id="relay-a", now=T0)
    released = await inbox.record_by_key(str(ret["key"]))
    assert released is not None
    assert released.state is RecordState.RECEIVED
    assert [h[0] for h in await inbox.history(released.id)] == ["parked", "received"]
    (work,) = await inbox.claim(10, "relay-a", LEASE, now=T0)
    assert work.key == ret["key"]


async def test_a_return_whose_sale_is_posted_is_not_parked(inbox: Inbox) -> None:
    sale = sale_body("0042", "T1")
    await inbox.insert_batch("0042", [incoming(1, sale)], now=T0)
    (claimed,) = await inbox.claim(1, "relay-a", LEASE, now=T0)
    await inbox.transition([claimed.id], RecordState.POSTED, relay_id="relay-a", now=T0)
    ret = return_body("0042", "R1", original="T1")
    await inbox.insert_batch("0042", [incoming(2, ret, link=str(sale["key"]))], now=T0)
    record = await inbox.record_by_key(str(ret["key"]))
    assert record is not None
    assert record.state is RecordState.RECEIVED


async def test_a_return_parked_while_its_sale_was_being_posted_is_swept_free(
    inbox: Inbox,
) -> None:
    sale = sale_body("0042", "T1")
    ret = return_body("0042", "R1", original="T1")
    link = str(sale["key"])
    await inbox.insert_batch("0042", [incoming(1, sale)], now=T0)
    await inbox.insert_batch("0042", [incoming(2, ret, link=link)], now=T0)
    # What two relays committing at once leave behind on PostgreSQL: the sale's posting
    # did not see the return yet, the return's insert did not see the sale posted yet.
    # (Written directly: no single call of the contract can interleave the two.)
    await inbox._run(  # type: ignore[attr-defined]
        lambda c: c.run("UPDATE records SET state = 'posted' WHERE key = ?", (link,))
    )
    assert await inbox.sweep_parked(now=T0) == 1
    record = await inbox.record_by_key(str(ret["key"]))
    assert record is not None
    assert record.state is RecordState.RECEIVED
    assert await inbox.sweep_parked(now=T0) == 0
    waiting = return_body("0042", "R2", original="T9")  # its sale never came: stays parked
    await inbox.insert_batch("0042", [incoming(3, waiting, link="sale:0042:1:2024-05-01:T9")])
    assert await inbox.sweep_parked(now=T0) == 0


async def test_a_parked_record_becomes_an_exception_after_the_wait(inbox: Inbox) -> None:
    ret = return_body("0042", "R1", original="T9")
    await inbox.insert_batch("0042", [incoming(1, ret, link="sale:0042:1:2024-05-01:T9")], now=T0)
    assert await inbox.expire_parked(timedelta(hours=72), now=T0 + timedelta(hours=71)) == []
    expired = await inbox.expire_parked(timedelta(hours=72), now=T0 + timedelta(hours=73))
    assert len(expired) == 1
    record = await inbox.record_by_key(str(ret["key"]))
    assert record is not None
    assert record.state is RecordState.EXCEPTION
    (item,) = await inbox.exceptions()
    assert item.record_id == record.id
    assert "72 hours" in item.reason
    stats = await inbox.stats()
    assert (stats["exceptions"], stats["by_state"]["exception"]) == (1, 1)


async def test_invalid_records_land_in_the_exception_queue_once(inbox: Inbox) -> None:
    bad = InvalidRecord(
        seq=2, key="sale:0042:1:2024-05-01:T2", reason="total: bad", payload={"x": 1}
    )
    result = await inbox.insert_batch("0042", sales("0042", range(1, 2)), rejected=[bad], now=T0)
    assert result == ([1], [])
    await inbox.insert_batch("0042", sales("0042", range(1, 2)), rejected=[bad], now=T0)
    (item,) = await inbox.exceptions()
    assert (item.store, item.seq, item.key, item.reason) == ("0042", 2, bad.key, "total: bad")
    assert item.payload == {"x": 1}
    assert item.record_id is None
    stats = await inbox.stats()
    assert stats["exceptions"] == 1
    assert stats["records"] == 1
    # A rejected seq was received: it leaves no gap.
    assert await inbox.gaps() == []


async def test_delivery_can_send_a_record_to_the_exception_queue(inbox: Inbox) -> None:
    await inbox.insert_batch("0042", sales("0042", range(1, 2)), now=T0)
    (claimed,) = await inbox.claim(1, "relay-a", LEASE, now=T0)
    reason = "unmapped SKU SKU-1"
    moved = await inbox.transition([claimed.id], RecordState.EXCEPTION, relay_id="a", detail=reason)
    assert moved == [claimed.id]
    (item,) = await inbox.exceptions()
    assert (item.record_id, item.reason) == (claimed.id, reason)


async def test_gap_ranges_and_the_gap_free_watermark(inbox: Inbox) -> None:
    await inbox.insert_batch("0042", sales("0042", range(1, 4)), now=T0)
    await inbox.insert_batch("0042", sales("0042", range(6, 8)), now=T0)
    await inbox.insert_batch("0042", sales("0042", range(10, 11)), now=T0 + timedelta(seconds=5))
    gaps = await inbox.gaps("0042")
    assert [(g.from_seq, g.to_seq) for g in gaps] == [(4, 5), (8, 9)]
    assert gaps[0].first_seen == T0
    assert gaps[1].first_seen == T0 + timedelta(seconds=5)
    (store,) = await inbox.stores()
    assert (store.contiguous_seq, store.max_seq) == (3, 10)
    stats = await inbox.stats()
    assert (stats["gaps"], stats["missing"]) == (2, 4)
    # Filling part of a gap splits it and keeps its first-seen time.
    await inbox.insert_batch("0042", sales("0042", range(8, 9)), now=T0 + timedelta(seconds=9))
    gaps = await inbox.gaps("0042")
    assert [(g.from_seq, g.to_seq, g.first_seen) for g in gaps] == [
        (4, 5, T0),
        (9, 9, T0 + timedelta(seconds=5)),
    ]
    await inbox.insert_batch("0042", sales("0042", [4, 5, 9]), now=T0)
    assert await inbox.gaps() == []
    (store,) = await inbox.stores()
    assert (store.contiguous_seq, store.max_seq) == (10, 10)


async def test_due_gaps_are_asked_for_after_a_doubling_wait_then_given_to_a_person(
    inbox: Inbox,
) -> None:
    await inbox.insert_batch("0042", sales("0042", [1, 5]), now=T0)
    grace = timedelta(seconds=60)
    assert await inbox.due_gaps(grace, now=T0 + timedelta(seconds=30)) == []
    (gap,) = await inbox.due_gaps(grace, max_requests=3, now=T0 + timedelta(seconds=61))
    assert (gap.store, gap.from_seq, gap.to_seq, gap.requests) == ("0042", 2, 4, 1)
    # The next request waits twice the grace period, the one after four times.
    assert await inbox.due_gaps(grace, max_requests=3, now=T0 + timedelta(seconds=180)) == []
    (again,) = await inbox.due_gaps(grace, max_requests=3, now=T0 + timedelta(seconds=181))
    assert again.requests == 2
    assert await inbox.due_gaps(grace, max_requests=3, now=T0 + timedelta(seconds=420)) == []
    assert (await inbox.stats())["exceptions"] == 0
    (last,) = await inbox.due_gaps(grace, max_requests=3, now=T0 + timedelta(seconds=421))
    assert last.requests == 3
    # Asked for as often as allowed: a person looks now, the relay stops asking.
    (item,) = await inbox.exceptions(10)
    assert (item.store, item.seq) == ("0042", 2)
    assert "seqs 2-4 still missing after 3 requests" in item.reason
    later = T0 + timedelta(days=30)
    assert await inbox.due_gaps(grace, max_requests=3, now=later) == []
    assert len(await inbox.exceptions(10)) == 1


async def test_a_gap_counts_no_requests_while_its_store_is_away_or_still_draining(
    inbox: Inbox,
) -> None:
    """A store that is offline, or still sending a long backlog, has not failed to answer:
    its gap is asked for again but never handed to a person for that."""
    await inbox.insert_batch("0042", sales("0042", [1, 5]), now=T0)
    grace = timedelta(seconds=60)

    async def beat(state: str, backlog: int, at: datetime) -> None:
        await inbox.record_heartbeat(
            Heartbeat(store="0042", state=state, backlog_rows=backlog), now=at
        )

    moment = T0 + timedelta(seconds=61)
    await beat("online", 5000, moment)
    for _ in range(5):  # draining: asked each grace period, never counted
        (gap,) = await inbox.due_gaps(grace, max_requests=3, now=moment)
        assert gap.requests == 0
        moment += grace
    await beat("offline", 0, moment)  # the last will: no backlog said
    for _ in range(3):  # away: the same
        (gap,) = await inbox.due_gaps(grace, max_requests=3, now=moment)
        assert gap.requests == 0
        moment += grace
    assert await inbox.exceptions(10) == []
    # Back, with nothing left to send: now each request counts, and the third hands it on.
    await beat("online", 0, moment)
    counted = []
    for _ in range(3):
        (gap,) = await inbox.due_gaps(grace, max_requests=3, now=moment)
        counted.append(gap.requests)
        moment += grace * 2**gap.requests
    assert counted == [1, 2, 3]
    (item,) = await inbox.exceptions(10)
    assert "seqs 2-4 still missing after 3 requests" in item.reason


async def test_released_seqs_close_their_gap_and_are_kept_as_the_stores_audit(
    inbox: Inbox,
) -> None:
    # The store's outbox was rebuilt: central never got 1-84, the re-read came as 85-90.
    await inbox.insert_batch("0042", sales("0042", range(85, 91)), now=T0)
    assert [(g.from_seq, g.to_seq) for g in await inbox.gaps("0042")] == [(1, 84)]
    rebuilt = Release(from_seq=1, to_seq=84, cause="rebuilt", reason="outbox rebuilt")
    assert await inbox.insert_batch("0042", [], released=[rebuilt], now=T0) == ([], [])
    assert await inbox.gaps("0042") == []
    (store,) = await inbox.stores()
    assert (store.contiguous_seq, store.max_seq) == (90, 90)
    assert store.last_release is not None
    assert (store.last_release.from_seq, store.last_release.cause) == (1, "rebuilt")
    assert (await inbox.stats())["exceptions"] == 0  # nothing is missing: re-read
    # Seqs the store acknowledged and purged, yet central lacks: a person must look.
    await inbox.insert_batch("0042", sales("0042", [95]), now=T0)
    purged = Release(from_seq=91, to_seq=94, cause="purged", reason="purged at the store")
    beyond = Release(from_seq=96, to_seq=10**12, cause="purged", reason="never seen")
    await inbox.insert_batch("0042", [], released=[purged, beyond], now=T0)
    await inbox.insert_batch("0042", [], released=[purged], now=T0)  # said again: once
    assert await inbox.gaps("0042") == []
    (store,) = await inbox.stores()
    assert store.max_seq == 95  # a release never reaches past what central has seen
    (item,) = await inbox.exceptions(10)
    assert "seqs 91-94 never arrived and the store no longer holds them" in item.reason
    assert [(r.from_seq, r.to_seq, r.cause) for r in await inbox.releases("0042")] == [
        (91, 94, "purged"),
        (1, 84, "rebuilt"),
    ]


async def test_heartbeats_feed_the_store_registry(inbox: Inbox) -> None:
    online = Heartbeat(
        store="0042",
        state="online",
        agent=AgentInfo(id="bo-pc-1", version="0.1.0"),
        backlog_rows=17,
        oldest_unacked_seconds=4.5,
    )
    await inbox.record_heartbeat(online, now=T0)
    await inbox.record_heartbeat(
        Heartbeat(store="0042", state="offline"), now=T0 + timedelta(minutes=1)
    )
    (store,) = await inbox.stores()
    assert store.state == "offline"
    assert store.last_seen == T0
    assert (store.agent_id, store.agent_version) == ("bo-pc-1", "0.1.0")
    # The last will says nothing of the backlog: the last reported one stays, shown
    # while the store is away.
    assert (store.backlog_rows, store.oldest_unacked_seconds) == (17, 4.5)
    await inbox.record_heartbeat(online, now=T0 + timedelta(minutes=2))
    stats = await inbox.stats()
    assert (stats["stores"], stats["online"]) == (1, 1)


async def test_the_orders_a_store_has_not_written_to_the_pos_are_kept(inbox: Inbox) -> None:
    await inbox.record_heartbeat(Heartbeat(store="0042", state="online"), now=T0)
    (store,) = await inbox.stores()
    assert (store.orders_waiting, store.orders_alert) == (0, 0)
    holding = Heartbeat(store="0042", state="online", orders_waiting=4, orders_alert=1)
    await inbox.record_heartbeat(holding, now=T0 + timedelta(minutes=1))
    (store,) = await inbox.stores()
    assert (store.orders_waiting, store.orders_alert) == (4, 1)
    # The last will knows nothing of the orders: the last reported figures stay.
    await inbox.record_heartbeat(
        Heartbeat(store="0042", state="offline"), now=T0 + timedelta(minutes=2)
    )
    (store,) = await inbox.stores()
    assert (store.state, store.orders_waiting, store.orders_alert) == ("offline", 4, 1)
    # A store first heard of by its last will has reported no figure.
    await inbox.record_heartbeat(Heartbeat(store="0043", state="offline"), now=T0)
    assert [(s.store, s.orders_waiting) for s in await inbox.stores()] == [
        ("0042", 4),
        ("0043", None),
    ]
    await inbox.record_heartbeat(
        Heartbeat(store="0042", state="online"), now=T0 + timedelta(minutes=3)
    )
    (store, _) = await inbox.stores()
    assert (store.orders_waiting, store.orders_alert) == (0, 0)


async def test_refusals_are_counted(inbox: Inbox) -> None:
    await inbox.record_refusal("spoofed", "0042", "0043", "b1", "envelope store differs")
    await inbox.record_refusal("invalid", "0042", None, None, "not gzip")
    stats = await inbox.stats()
    assert (stats["refused"], stats["spoofed"], stats["records"]) == (2, 1, 0)


async def test_a_claim_walks_the_delivery_queue_index(inbox: Inbox) -> None:
    """A worker's claim is served by the index of due deliveries in seq order, so a backlog
    of a million pending deliveries costs a claim the first rows of an index, not a sort
    of them all. (The planner is told to avoid a full scan, as it would with a big table.)"""
    from typing import cast

    from central.inbox._deliveries import CLAIM_DUE
    from central.inbox._inbox_sql import InboxSql

    sql = cast(InboxSql, inbox)
    postgres = bool(sql.for_update)

    async def plan(c: Any) -> str:
        if postgres:
            await c.run("SET LOCAL enable_seqscan = off")
            rows = await c.fetch("EXPLAIN " + CLAIM_DUE, ("recorder", T0, T0, 10))
        else:
            rows = await c.fetch("EXPLAIN QUERY PLAN " + CLAIM_DUE, ("recorder", T0, T0, 10))
        return "\n".join(" ".join(str(v) for v in row) for row in rows)

    shown = await sql._run(plan)
    assert "deliveries_queue" in shown, shown


# -- the way down -------------------------------------------------------------------------


async def test_enqueue_numbers_each_stores_downlink_without_gaps_and_once_per_key(
    inbox: Inbox,
) -> None:
    assert await inbox.enqueue(*queued(order("0042", "A1"))) == (1, True)
    assert await inbox.enqueue(*queued(order("0042", "A2"))) == (2, True)
    assert await inbox.enqueue(*queued(order("0043", "B1"))) == (1, True)
    # The same order read again is the message already queued; a new version queues again.
    assert await inbox.enqueue(*queued(order("0042", "A1"))) == (1, False)
    assert await inbox.enqueue(*queued(order("0042", "A1", version=2))) == (3, True)
    assert await inbox.enqueue(*queued(cancel("0042", "A2"))) == (4, True)
    assert [r.seq for r in await inbox.pending_down("0042")] == [1, 2, 3, 4]
    first = (await inbox.pending_down("0042"))[0]
    assert (first.kind, first.key, first.sends, first.sent_at) == (
        "order",
        "order:shop:id-A1:1",
        0,
        None,
    )
    assert order("0042", "A1").model_validate_json(first.body) == order("0042", "A1")


async def test_enqueue_refuses_a_body_that_is_not_the_message_it_claims(inbox: Inbox) -> None:
    store, kind, key, body = queued(order("0042", "A1"))
    with pytest.raises(ValueError, match="for 0042, not a order for 0043"):
        await inbox.enqueue("0043", kind, key, body)
    with pytest.raises(ValueError, match="not a order_cancel"):
        await inbox.enqueue(store, "order_cancel", key, body)
    with pytest.raises(ValueError, match="invalid"):
        await inbox.enqueue(store, kind, key, '{"kind": "order"}')
    # Nothing refused used a seq.
    assert await inbox.enqueue(store, kind, key, body) == (1, True)


async def test_due_messages_are_the_unsent_and_those_sent_longer_ago_than_the_interval(
    inbox: Inbox,
) -> None:
    wait = timedelta(seconds=30)
    for number in ("A1", "A2", "A3"):
        await inbox.enqueue(*queued(order("0042", number)))
    await inbox.enqueue(*queued(order("0043", "B1")))
    due = await inbox.due_down(resend_after=wait, now=T0)
    assert {store: [r.seq for r in rows] for store, rows in due.items()} == {
        "0042": [1, 2, 3],
        "0043": [1],
    }
    assert [r.seq for r in (await inbox.due_down(resend_after=wait, limit=2, now=T0))["0042"]] == [
        1,
        2,
    ]
    await inbox.mark_down_sent("0042", [1, 2], now=T0)
    await inbox.mark_down_sent("0043", [1], now=T0)
    later = await inbox.due_down(resend_after=wait, now=T0 + timedelta(seconds=10))
    assert {store: [r.seq for r in rows] for store, rows in later.items()} == {"0042": [3]}
    again = await inbox.due_down(resend_after=wait, now=T0 + wait)
    assert [r.seq for r in again["0042"]] == [1, 2, 3]
    await inbox.mark_down_sent("0042", [1], now=T0 + wait)
    (one,) = [r for r in await inbox.pending_down("0042") if r.seq == 1]
    assert (one.sends, one.sent_at) == (2, T0 + wait)
    # A store back online gets everything unanswered, sent lately or not.
    assert [r.seq for r in await inbox.pending_down("0042", limit=2)] == [1, 2]


async def test_a_stores_answer_settles_its_listed_seqs_and_everything_through(
    inbox: Inbox,
) -> None:
    for number in ("A1", "A2", "A3", "A4", "A5"):
        await inbox.enqueue(*queued(order("0042", number)))
    await inbox.enqueue(*queued(order("0043", "B1")))
    assert await inbox.settle_down("0042", [4], 2, now=T0) == 3
    assert [r.seq for r in await inbox.pending_down("0042")] == [3, 5]
    # Seqs already answered, and seqs that were never queued, change nothing.
    assert await inbox.settle_down("0042", [1, 4, 99], 0, now=T0) == 0
    # One store's answer never settles another store's messages.
    assert await inbox.settle_down("0043", [], 0, now=T0) == 0
    assert [r.seq for r in await inbox.pending_down("0043")] == [1]
    assert await inbox.settle_down("0042", [], 5, now=T0) == 2
    assert await inbox.pending_down("0042") == []
    assert await inbox.due_down(resend_after=timedelta(0), now=T0) == {
        "0043": await inbox.pending_down("0043")
    }


async def test_an_order_is_found_by_number_and_late_orders_are_counted(inbox: Inbox) -> None:
    early = T0 - timedelta(hours=1)
    await inbox.enqueue(*queued(order("0042", "A1", promised_by=early)))
    await inbox.enqueue(*queued(order("0042", "A1", version=2, promised_by=early)))
    await inbox.enqueue(*queued(order("0042", "A2", promised_by=early)))
    await inbox.enqueue(*queued(order("0042", "A3", promised_by=T0 + timedelta(hours=1))))
    await inbox.enqueue(*queued(order("0042", "A4", promised_by=early)))
    await inbox.enqueue(*queued(order("0042", "A5", promised_by=None)))
    await inbox.enqueue(*queued(cancel("0042", "A4")))
    await inbox.enqueue(*queued(order("0043", "A1", promised_by=early)))
    found = await inbox.down_order("0042", "A1")
    assert found is not None
    assert (found.seq, found.key) == (2, "order:shop:id-A1:2")
    assert await inbox.down_order("0042", "nope") is None
    assert (await inbox.down_order("0043", "A1") or found).store == "0043"

    (summary, _) = await inbox.downlink_summary(now=T0)
    assert (summary.store, summary.pending, summary.delivered, summary.past_promise) == (
        "0042",
        7,
        0,
        0,  # an order the store does not hold yet is not late at the store
    )
    await inbox.settle_down("0042", [], 7, now=T0)
    await inbox.mark_fulfilled("0042", "A2", "partially_picked_up")
    (summary, other) = await inbox.downlink_summary(now=T0)
    # A1 (newest version) and A2 (partly picked up): late. A3 is not due, A4 was
    # cancelled, A5 has no promise.
    assert (summary.pending, summary.delivered, summary.past_promise) == (0, 7, 2)
    assert (summary.oldest_waiting, summary.last_settled) == (None, T0)
    assert (other.store, other.pending, other.past_promise) == ("0043", 1, 0)
    assert other.oldest_waiting is not None
    await inbox.mark_fulfilled("0042", "A1", "picked_up")
    await inbox.mark_fulfilled("0042", "A2", "picked_up")
    (summary, _) = await inbox.downlink_summary(now=T0)
    assert summary.past_promise == 0
    stats = await inbox.stats()
    assert stats["downlink"]["0042"]["delivered"] == 7
    assert stats["downlink"]["0043"]["pending"] == 1


async def test_a_days_online_orders_count_each_order_once_in_its_newest_state(
    inbox: Inbox,
) -> None:
    day = T0.date()
    before, after = T0 - timedelta(days=1), T0 + timedelta(days=1)
    # Queued the day before at 23:59:59 UTC, then amended on the day: yesterday's order.
    late = datetime.combine(day, datetime.min.time(), tzinfo=UTC) - timedelta(seconds=1)
    await inbox.enqueue(*queued(order("0042", "A0")), now=late)
    await inbox.enqueue(*queued(order("0042", "A0", version=2)), now=T0)
    # The day's orders: A1 in two versions, A2 to A6 once.
    for number in ("A1", "A2", "A3", "A4", "A5", "A6"):
        await inbox.enqueue(*queued(order("0042", number)), now=T0)
    await inbox.enqueue(*queued(order("0042", "A1", version=2)), now=T0 + timedelta(hours=1))
    await inbox.enqueue(*queued(cancel("0042", "A6")), now=T0 + timedelta(hours=2))
    # The next day's order, another store's order, and an order placed at midnight.
    await inbox.enqueue(*queued(order("0042", "B1")), now=after)
    await inbox.enqueue(*queued(order("0043", "A1")), now=T0)
    midnight = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    await inbox.enqueue(*queued(order("0042", "A7")), now=midnight)
    # Seqs: A0 1 and 2, A1 to A6 3 to 8, A1 v2 9, A6's cancellation 10, B1 11, A7 12.
    # The store holds 1 to 8: A1's first version, not its newest.
    await inbox.settle_down("0042", [], 8, now=T0)
    await inbox.mark_fulfilled("0042", "A2", "picked_up")
    await inbox.mark_fulfilled("0042", "A3", "partially_picked_up")
    await inbox.mark_fulfilled("0042", "A4", "shipped")
    await inbox.mark_fulfilled("0042", "A5", "picked_up")
    await inbox.mark_fulfilled("0042", "A0", "picked_up")

    counted = await inbox.order_day("0042", day)
    assert (counted.store, counted.day) == ("0042", day)
    # A1 to A7 (A1 once, though two versions), not A0 (yesterday's) nor B1 (tomorrow's).
    assert counted.received == 7
    # A2 to A6. A1's newest version has not been answered (the store lacks the current
    # order), nor has A7.
    assert counted.handed == 5
    assert counted.fulfilled == {"picked_up": 2, "partially_picked_up": 1, "shipped": 1}
    assert counted.fulfilled_total == 4
    assert counted.cancelled_online == 1
    await inbox.settle_down("0042", [9, 12], 8, now=T0)
    assert (await inbox.order_day("0042", day)).handed == 7

    yesterday = await inbox.order_day("0042", before.date())
    assert (yesterday.received, yesterday.handed, yesterday.fulfilled) == (1, 1, {"picked_up": 1})
    assert (await inbox.order_day("0042", after.date())).received == 1
    other = await inbox.order_day("0043", day)
    assert (other.received, other.handed, other.fulfilled_total) == (1, 0, 0)
    empty = await inbox.order_day("0099", day)
    assert (empty.received, empty.handed, empty.fulfilled, empty.cancelled_online) == (0, 0, {}, 0)


async def test_a_source_cursor_moves_only_from_where_it_was(inbox: Inbox) -> None:
    assert await inbox.source_cursor("ct-orders") is None
    assert await inbox.advance_cursor("ct-orders", None, "2024-05-01T10:00:00Z")
    assert not await inbox.advance_cursor("ct-orders", None, "2024-05-01T11:00:00Z")
    assert not await inbox.advance_cursor("ct-orders", "stale", "2024-05-01T11:00:00Z")
    assert await inbox.advance_cursor("ct-orders", "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z")
    assert await inbox.source_cursor("ct-orders") == "2024-05-01T11:00:00Z"
    assert await inbox.source_cursor("adobe-orders") is None


async def test_two_relays_enqueueing_at_once_leave_no_gap_and_no_second_copy(
    inbox_url: str,
) -> None:
    one = await open_inbox(inbox_url, relay_id="relay-a")
    two = await open_inbox(inbox_url, relay_id="relay-b")
    try:
        # Each relay reads the same 40 orders at the same time, and 20 of its own.
        shared = [queued(order("0042", f"S{n}")) for n in range(40)]
        own = {
            name: [queued(order("0042", f"{name}{n}")) for n in range(20)] for name in ("a", "b")
        }

        async def source(inbox: Inbox, name: str) -> list[tuple[int, bool]]:
            messages = shared + own[name]
            return list(await asyncio.gather(*(inbox.enqueue(*m) for m in messages)))

        a, b = await asyncio.gather(source(one, "a"), source(two, "b"))
        new = sorted(seq for seq, fresh in a + b if fresh)
        assert new == list(range(1, 81))
        # Each shared order was queued by exactly one relay; the other got its seq back.
        assert [s for s, _ in a[:40]] == [s for s, _ in b[:40]]
        assert sum(fresh for _, fresh in a[:40] + b[:40]) == 40
        pending = await one.pending_down("0042", limit=1000)
        assert [r.seq for r in pending] == list(range(1, 81))
        assert len({r.key for r in pending}) == 80
        assert await one.enqueue(*queued(order("0042", "next"))) == (81, True)
    finally:
        await one.close()
        await two.close()
